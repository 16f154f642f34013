"""The panel above a ``%%spawn`` cell's output.

It starts as a small display (one message, published before the fork, so it sits above the
children's output), which is then updated in place:

- a foreground spawn: the kernel runs the cell, so it cannot read a click until the cell ends
  (buttons would act too late). Its panel is live HTML, re-rendered in place by the hub; the
  notebook's interrupt (■) stops the children (procmagic forwards SIGINT, then SIGTERM, SIGKILL).
- a ``--bg`` spawn: a widget, built on the hub's loop after the fork (so the cell does not pay
  for it), with interrupt / terminate / kill, a row per worker with ``-n``, and for
  ``--redirect`` a line input for the child's stdin and a button that closes it.

When the spawn ends the panel becomes a static snapshot (HTML and a text table, which a saved
notebook keeps) and its widgets are closed, so finished spawns hold no widget models.
"""

from __future__ import annotations

import html as _html
import threading
import time
import uuid
from typing import Any

from ..core.process import Process
from .facts import ProcFacts, fmt_bytes, proc_facts
from .hub import DONE, LIVE, Hub, View
from .render import header_html, panel_html, rows_html
from .tables import spawn_text

__all__ = ["PanelView", "show_panel"]

_escape = _html.escape

_FG_HINT = ("foreground: the kernel reads clicks only after this cell; stop it with the notebook's "
            "interrupt (&#9632;): SIGINT, then SIGTERM, SIGKILL")
_ROWS_SHOWN = 24  # rows of a static or foreground panel; more are summed up in one line


class PanelView(View):
    kind = "panel"

    def __init__(self, hub: Hub, spawn: Any) -> None:
        self.hub = hub
        self.spawn = spawn
        self.display_id = f"procmagic-panel-{uuid.uuid4().hex}"
        self.started = False
        self.final = False
        self.widget: Any = None
        self.note = ""
        self.created = time.monotonic()
        self.last_html: str | None = None
        self.lock = threading.Lock()  # final snapshot vs. a live update from the other thread
        self.period = hub.TICK

    # -- facts and HTML -----------------------------------------------------------------------
    def facts(self, procs: list[Process], now: float, sample: bool = True) -> list[ProcFacts]:
        return [proc_facts(p, self.hub.sampler if sample else None, now) for p in procs]

    def header(self, now: float, sample: bool = True) -> str:
        spawn, opts = self.spawn, self.spawn.options
        counts: dict[str, int] = {}
        for proc in spawn.procs:
            status = proc.exitstatus
            if proc.pid is None:
                key = "starting"
            elif status is None:
                key = "running"
            elif status.timed_out:
                key = "timed out"
            elif status.signal is not None:
                key = "killed"
            else:
                key = "exited" if status.ok else "failed"
            counts[key] = counts.get(key, 0) + 1
        if not spawn.procs:
            counts["starting"] = opts.n
        tags = ["bg" if opts.bg else "foreground"]
        if opts.redirect:
            tags.append("redirect")
        if opts.timeout:
            tags.append(f"timeout {opts.timeout:g} s")
        extra = ""
        if spawn.queue is not None:
            depth: Any = None
            if sample:
                found = next((q for q in self.hub.queue_watch.sample(now) if q.id == spawn.queue.id), None)
                depth = None if found is None else (f"? ({_escape(found.error)})" if found.error else found.messages)
            extra += f" &middot; queue id {spawn.queue.id}: <b class='pm-depth'>{'-' if depth is None else depth}</b> waiting"
        router = spawn.router
        if router.published:
            extra += f" &middot; output {fmt_bytes(router.published)}"
        if spawn.timed_out:
            extra += " &middot; <span style='color:#8250df'>timed out</span>"
        n = len(spawn.procs) or opts.n
        title = f"{spawn.name}"
        return header_html(title, spawn.number, tags + [f"{n} {'child' if n == 1 else 'children'}"], counts, extra)

    def html(self, now: float, final: bool = False, sample: bool = True) -> str:
        """The panel as HTML. ``sample=False`` (off the hub's loop): no psutil, no queue stat."""
        procs = self.spawn.procs[:_ROWS_SHOWN]
        rows = rows_html(self.facts(procs, now, sample=sample and not final), _ROWS_SHOWN) if procs else ""
        if len(self.spawn.procs) > _ROWS_SHOWN:
            rest = self.spawn.procs[_ROWS_SHOWN:]
            live = sum(1 for p in rest if p.exitstatus is None)
            rows += f'<div style="color:#888">&hellip; and {len(rest)} more ({live} running)</div>'
        hint = ""
        if final:
            notes = [_escape(self.note)] if self.note else []
            if self.spawn.log_path:
                notes.append(f"output past the cap is in {_escape(self.spawn.log_path)}")
            hint = " &middot; ".join(notes)
        elif not final and not self.spawn.options.bg and self.started:
            hint = _FG_HINT
        return panel_html(self.header(now, sample=sample and not final), rows, hint, final=final)

    # -- display ------------------------------------------------------------------------------
    def _display(self, data: dict[str, Any], update: bool = True) -> None:
        self.spawn.publish("update_display_data" if update else "display_data",
                           {"data": data, "metadata": {}, "transient": {"display_id": self.display_id}})
        self.hub.sent()

    def show(self) -> None:
        """Publish the placeholder (main thread, before the fork)."""
        now = time.monotonic()
        self._display({"text/plain": spawn_text(self.spawn), "text/html": self.html(now, sample=False)}, update=False)
        self.hub.add(self)

    def on_started(self) -> None:
        """A --bg cell returns at once: leave its pids in the cell's own output (nbclient keeps
        what arrives before the cell ends), then let the hub build the widget."""
        if self.spawn.options.bg:
            with self.lock:
                now = time.monotonic()
                self._display({"text/plain": spawn_text(self.spawn), "text/html": self.html(now, sample=False)})

    def fail(self, error: BaseException) -> None:
        """The spawn never started (the guard refused, a fork failed): say so at once."""
        with self.lock:
            if self.final:
                return
            self.final = True
            first = (str(error).splitlines() or [""])[0]
            text = f"{self.spawn.name}: did not start ({type(error).__name__}: {first})"
            self._display({"text/plain": text, "text/html": f"<div>{_escape(text)}</div>"})

    def finalize(self) -> None:
        """The spawn ended: a static snapshot replaces the live panel; widgets are closed."""
        with self.lock:
            if self.final:
                return
            self.final = True
            now = time.monotonic()
            self._display({"text/plain": spawn_text(self.spawn), "text/html": self.html(now, final=True)})
        widget, self.widget = self.widget, None
        if widget is not None:
            self.hub.call(widget.close)

    # -- on the hub's loop --------------------------------------------------------------------
    def refresh(self, hub: Hub, now: float) -> str:
        spawn = self.spawn
        if self.final:
            return DONE
        if spawn.done:
            self.finalize()
            return DONE
        if not self.started:
            if now - self.created > 10 and all(p.pid is None or p.exitstatus is not None for p in spawn.procs):
                self._display({"text/plain": f"{spawn.name}: did not start",
                               "text/html": f"<div>{spawn.name}: did not start</div>"})
                self.final = True
                return DONE
            return LIVE
        if spawn.options.bg:
            with self.lock:
                if self.final:
                    return DONE
                if self.widget is None:
                    from .panel_widget import PanelWidget

                    self.widget = PanelWidget(self)
                    self._display(self.widget.bundle(self.html(now)))
                hub.sent(self.widget.refresh(now))
            return LIVE
        value = self.html(now)
        with self.lock:
            if self.final:
                return DONE
            if value != self.last_html:
                self.last_html = value
                self._display({"text/plain": spawn_text(self.spawn), "text/html": value})
        return LIVE

    def retire(self, hub: Hub) -> None:
        self.finalize()


def show_panel(spawn: Any) -> PanelView | None:
    """Show the panel of ``spawn`` (called by ``%%spawn`` before it forks)."""
    from .hub import hub_for

    ctx = spawn.ctx
    if ctx.terminal:
        return None
    if spawn.options.bg:
        from . import panel_widget  # noqa: F401  (ipywidgets loads here, once, not on the hub's loop)
    hub = hub_for(ctx)
    view = PanelView(hub, spawn)
    view.show()
    return view
