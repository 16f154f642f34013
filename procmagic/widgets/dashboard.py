"""``%procs``: the live dashboard of processes, queue traffic, alarms and reaped exit statuses.

One dashboard is live at a time: showing a new one leaves the previous one as a static snapshot,
in its display and in its (kept) widget, so every view of the notebook shows the snapshot. In a
terminal, ``%procs`` prints the same four parts as text.
"""

from __future__ import annotations

import html as _html
import threading
import time
import uuid
from typing import Any

import ipywidgets as w

from ..core.reaper import registry
from .controls import RowPool, html, shared
from .facts import QueueWatch, Sampler, alarm_facts, is_failure, proc_facts, recent_procs
from .hub import IDLE, LIVE, Hub, View
from .remote_rows import RemoteRowPool, remote_children, remote_row_html
from .render import BORDER, BOX, MONO, MUTED, alarms_html, queues_html, reaped_html, section
from .tables import dashboard_text

__all__ = ["DashboardView", "show_dashboard"]

_PAGE = 12  # process rows per page


class DashboardView(View):
    kind = "dashboard"

    def __init__(self, hub: Hub, header: Any) -> None:
        self.hub = hub
        self.display_id = f"procmagic-dashboard-{uuid.uuid4().hex}"
        self.publish = hub.ctx.publisher(header)
        self.note = ""
        self.final = False
        self.lock = threading.Lock()
        self.period = hub.TICK
        self._reaped_key: Any = None
        self.owned: list[Any] = []
        self.title = html(owned=self.owned, cls="pm-title")
        self.procs_head = html(owned=self.owned, cls="pm-procs-head")
        self.pool = RowPool(_PAGE, self._note, self._redraw)
        # children on ipyparallel engines (%%spawn --engines), beside the local ones
        self.remote_head = html(owned=self.owned, cls="pm-remote-head")
        self.remote_pool = RemoteRowPool(_PAGE, self._note, self._redraw)
        self.queues = html(owned=self.owned, cls="pm-queues")
        self.alarms = html(owned=self.owned, cls="pm-alarms-part")
        self.failures = w.Checkbox(value=False, description="failures only", indent=False,
                                   layout=w.Layout(width="auto", margin="0 0 0 12px"), _dom_classes=("pm-failures",))
        self.failures.observe(lambda _c: self._redraw(), "value")
        self.owned.append(self.failures)
        self.reaped_head = html(owned=self.owned, cls="pm-reaped-head")
        self.reaped = html(owned=self.owned, cls="pm-reaped-part")
        reaped_bar = w.HBox([self.reaped_head, self.failures], layout=shared("row"))
        self.owned.append(reaped_bar)
        self.box = w.VBox([self.title, self.procs_head, self.pool.box, self.remote_head, self.remote_pool.box,
                           self.queues, self.alarms, reaped_bar, self.reaped],
                          layout=w.Layout(border=f"1px solid {BORDER}", padding="4px 10px"),
                          _dom_classes=("procmagic-dashboard",))
        self.owned.append(self.box)

    # -- any thread (handlers on the main thread) ---------------------------------------------
    def _note(self, text: str) -> None:
        self.note = text
        self._redraw()

    def _redraw(self) -> None:
        self.dirty = True
        self.hub.poke()

    # -- drawing ------------------------------------------------------------------------------
    def draw(self, now: float, sampler: Sampler, queue_watch: QueueWatch, alarm_counts: dict[int, tuple[float, int]] | None) -> tuple[int, bool]:
        """Set every part from the facts; returns (messages sent, anything live)."""
        sent = 0

        def put(widget: Any, value: str) -> None:
            nonlocal sent
            if widget.value != value:
                widget.value = value
                sent += 1

        live = registry.live()
        remote = remote_children()
        remote_live = sum(1 for c in remote if c.live)
        queues = queue_watch.sample(now)
        alarms = alarm_facts(recent_procs(live), alarm_counts, now)
        alarms.sort(key=lambda a: (a.state != "running", -a.id))
        reaped = registry.reaped()
        failed = sum(1 for s in reaped if is_failure(s))
        ticking = sum(1 for a in alarms if a.state == "running" and a.timer != "off")
        on_engines = f' &middot; <span class="pm-remote-live">{remote_live}</span> on engines' if remote else ""
        put(self.title, (f'<div style="{MONO}"><b>procmagic</b> &middot; <span class="pm-live">{len(live)}</span> live{on_engines} '
                         f"&middot; {len(queues)} {'queue' if len(queues) == 1 else 'queues'} &middot; {ticking} ticking "
                         f"&middot; {len(reaped)} reaped ({failed} failed)"
                         f' <span style="color:{MUTED}">&middot; {time.strftime("%H:%M:%S")}</span></div>'))
        note = f' <span style="color:{MUTED};font-weight:normal">{_html.escape(self.note)}</span>' if self.note else ""
        put(self.procs_head, section("Processes", "", f"{len(live)} live{note}"))
        page = self.pool.page_items(live)
        sent += self.pool.show([proc_facts(p, sampler, now) for p in page], page, now)
        put(self.remote_head, section("Processes on engines", "", _remote_note(remote, remote_live)) if remote else "")
        remote_page = self.remote_pool.page_items(remote)
        sent += self.remote_pool.show(remote_page, remote_page, now)
        put(self.queues, section("Queue traffic", queues_html(queues, now)))
        put(self.alarms, section("Alarms", alarms_html(alarms)))
        key = (len(reaped), reaped[-1].id if reaped else None, self.failures.value)
        if key != self._reaped_key:
            self._reaped_key = key
            put(self.reaped_head, section("Reaped exit statuses", "", f"newest first &middot; {failed} of {len(reaped)} failed"))
            put(self.reaped, reaped_html(reaped, self.failures.value))
        return sent, bool(live) or remote_live > 0 or bool(queues) or ticking > 0

    def refresh(self, hub: Hub, now: float) -> str:
        with self.lock:
            if self.final:
                return "done"
            sent, busy = self.draw(now, hub.sampler, hub.queue_watch, hub.alarm_counts)
        hub.sent(sent)
        self.period = hub.TICK if registry.live() or any(c.live for c in remote_children()) else 2.0  # only queues: slower
        return LIVE if busy else IDLE

    def snapshot_html(self) -> str:
        parts = [self.title.value, self.procs_head.value]
        live = registry.live()
        from .render import rows_html

        now = time.monotonic()
        parts.append(rows_html([proc_facts(p, None, now) for p in live], 24))
        remote = remote_children()
        if remote:
            parts.append(self.remote_head.value + "".join(remote_row_html(c) for c in remote[:24]))
        parts += [self.queues.value, self.alarms.value, self.reaped_head.value, self.reaped.value]
        return f'<div class="procmagic-dashboard" style="{BOX}">{"".join(parts)}</div>'

    def bundle(self) -> dict[str, Any]:
        data = dict(self.box._repr_mimebundle_() or {})
        data["text/plain"] = dashboard_text(failures_only=self.failures.value)
        data["text/html"] = self.snapshot_html()
        return data

    def retire(self, hub: Hub) -> None:
        """A newer dashboard took over: its display becomes a snapshot (marked as such), and the
        widget shows the same snapshot in every view restored from the kernel (hub's loop)."""
        with self.lock:
            if self.final:
                return
            self.final = True
            html_value = self.snapshot_html().replace(
                "</div>", f' <span style="color:{MUTED}">(snapshot: a newer %procs is live)</span></div>', 1)
            hub.update_publisher()("update_display_data", {
                "data": {"text/plain": dashboard_text(), "text/html": html_value}, "metadata": {},
                "transient": {"display_id": self.display_id}})
        hub.sent()
        snapshot = html(html_value, owned=self.owned, cls="pm-snapshot")
        with self.box.hold_sync():
            self.box.children = (snapshot,)
        self.box.layout.border = "0"
        hub.keep_finished(self)

    def close(self) -> None:
        """Close every widget model of this dashboard (an old snapshot the hub lets go)."""
        self.pool.close()
        self.remote_pool.close()
        for widget in self.owned:
            widget.close()
        self.owned.clear()


def _remote_note(remote: list[Any], live: int) -> str:
    ended = len(remote) - live
    return f"{live} running" + (f" &middot; {ended} ended or lost, newest first" if ended else "")


def show_dashboard(ctx: Any) -> DashboardView | None:
    """``%procs``: the live dashboard in a kernel, the four text tables in a terminal."""
    if ctx.terminal:
        print(dashboard_text())
        return None
    from IPython.display import display

    from .hub import hub_for

    hub = hub_for(ctx)
    view = DashboardView(hub, ctx.header())
    view.draw(time.monotonic(), Sampler(), QueueWatch(), None)  # complete before it shows
    display(view.bundle(), raw=True, display_id=view.display_id)
    hub.sent()
    hub.add(view)
    return view
