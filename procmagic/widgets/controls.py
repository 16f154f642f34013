"""Widget pieces shared by the panels and the dashboard: rows of children with their actions,
a pager, signals sent by buttons, and layouts shared between widgets (one model each, not one
per widget: every model costs a comm message and frontend memory)."""

from __future__ import annotations

import signal as _signal
import time
from typing import Any, Callable

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle

from ..core.process import Process
from .facts import signal_name
from .render import row_html

__all__ = ["ACTIONS", "shared", "send_signal", "RowPool", "action_buttons", "html", "button"]

#: (label, short label, signal, tooltip, button_style, dom class)
ACTIONS = (
    ("interrupt", "INT", _signal.SIGINT, "SIGINT to the child's process group (KeyboardInterrupt in Python)", "",
     "pm-interrupt"),
    ("terminate", "TERM", _signal.SIGTERM, "SIGTERM to the child's process group", "warning", "pm-terminate"),
    ("kill", "KILL", _signal.SIGKILL, "SIGKILL to the child's process group", "danger", "pm-kill"),
)
#: A row that showed one child and now shows another (after paging, or when the list moved up
#: as a child ended) ignores clicks this soon after the change: such a click was most likely
#: aimed at the child the row showed before. A row's first child is no change: clicks count.
REASSIGN_GUARD = 1.0

_shared: dict[str, Any] = {}


def shared(name: str) -> Any:
    """Layouts and styles every panel reuses (created once per kernel, never closed)."""
    if not _shared:
        _shared.update(
            html_style=HTMLStyle(),
            button_style=w.ButtonStyle(),
            small_style=w.ButtonStyle(font_size="11px"),
            auto=w.Layout(width="auto"),
            # HTML beside buttons in a row: takes the room left, may shrink and wrap its text
            facts=w.Layout(width="auto", flex="1 1 auto", min_width="0"),
            # buttons never shrink, whatever the text beside them (flex-shrink 0, a minimum width)
            button=w.Layout(width="auto", min_width="fit-content", height="26px", margin="2px 4px 2px 0",
                            flex="0 0 auto"),
            small=w.Layout(width="auto", min_width="fit-content", height="24px", padding="0 6px", margin="1px 2px",
                           flex="0 0 auto"),
            row=w.Layout(align_items="center", margin="0", flex_flow="row wrap"),  # wraps under the buttons
            line=w.Layout(align_items="center", margin="0", flex_flow="row nowrap"),  # a child's row
            text=w.Layout(width="320px", max_width="100%", height="26px", flex="0 1 auto"),
        )
    return _shared[name]


def html(value: str = "", owned: list[Any] | None = None, cls: str = "", layout: str = "auto") -> w.HTML:
    widget = w.HTML(value=value, layout=shared(layout), style=shared("html_style"), _dom_classes=(cls,) if cls else ())
    if owned is not None:
        owned.append(widget)
    return widget


def button(description: str, tooltip: str, owned: list[Any], cls: str, style: str = "", small: bool = False) -> w.Button:
    widget = w.Button(description=description, tooltip=tooltip, button_style=style,
                      layout=shared("small" if small else "button"), style=shared("small_style" if small else "button_style"),
                      _dom_classes=(cls,))
    owned.append(widget)
    return widget


def send_signal(procs: list[Process], sig: int) -> str:
    """Signal each live child's process group; a sentence saying what was done."""
    done: list[Process] = []
    gone: list[Process] = []
    for proc in procs:
        if proc.pid is None or proc.exitstatus is not None:
            gone.append(proc)
            continue
        try:
            (done if proc.kill(sig) else gone).append(proc)
        except Exception as exc:  # permission, or a race with the reaper
            return f"could not send {signal_name(sig)} to {proc.name}: {exc}"
    if not done:
        return "nothing to signal: already ended"
    who = ", ".join(f"{p.name} (pid {p.pid})" for p in done[:4]) + (f" and {len(done) - 4} more" if len(done) > 4 else "")
    return f"sent {signal_name(sig)} to {who}"


def action_buttons(owned: list[Any], on_action: Callable[[int], None], small: bool = False) -> list[w.Button]:
    out = []
    for label, short, sig, tip, style, cls in ACTIONS:
        b = button(short if small else label, tip, owned, cls, style, small)
        b.on_click(lambda _b, sig=sig: on_action(sig))
        out.append(b)
    return out


class _Row:
    def __init__(self, pool: "RowPool") -> None:
        self.proc: Any = None  # a Process, or a remote child
        self.changed = float("-inf")  # when the row last switched from one child to another
        self.html = html(owned=pool.owned, cls="pm-row-facts", layout="facts")
        self.buttons = action_buttons(pool.owned, self._act, small=True)
        # the buttons first: they line up whatever the facts' width
        self.box = w.HBox([*self.buttons, self.html], layout=shared("line"), _dom_classes=("pm-row",))
        pool.owned.append(self.box)
        self.pool = pool

    def _act(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        if time.monotonic() - self.changed < REASSIGN_GUARD:
            self.pool.on_note(f"this row now shows {proc.name}: click again to signal it")
            return
        self.pool.on_note(self.pool.act(proc, sig))


class RowPool:
    """A page of children, one row each (facts and the three actions), and a pager.

    Rows are reused: a page of ``size`` rows costs the same for 8 children or 1000. Runs on the
    hub's loop, except the click handlers (the kernel's main thread), which only signal.
    """

    def __init__(self, size: int, on_note: Callable[[str], None], on_page: Callable[[], None], name_width: int = 120) -> None:
        self.size = size
        self.owned: list[Any] = []
        self.on_note = on_note
        self.on_page = on_page
        self.name_width = name_width
        self.page = 0
        self.rows: list[_Row] = []
        self.prev = button("◀", "previous page", self.owned, "pm-prev", small=True)
        self.next = button("▶", "next page", self.owned, "pm-next", small=True)
        self.label = html(owned=self.owned, cls="pm-page")
        self.prev.on_click(lambda _b: self._turn(-1))
        self.next.on_click(lambda _b: self._turn(+1))
        self.pager = w.HBox([self.prev, self.label, self.next], layout=w.Layout(display="none", align_items="center"))
        self.owned.append(self.pager)
        self.box = w.VBox([self.pager], layout=w.Layout(margin="0"))
        self.owned.append(self.box)
        self.count = 0

    # -- what a row shows and what its buttons do (a pool of remote children overrides both) ----
    def render(self, facts: Any) -> str:
        return row_html(facts, self.name_width)

    def act(self, item: Any, sig: int) -> str:
        """A click on a row's button (the kernel's main thread); the note to show."""
        return send_signal([item], sig)

    def _turn(self, step: int) -> None:  # main thread: only the page number, the hub redraws
        pages = max(1, -(-self.count // self.size))
        self.page = min(max(0, self.page + step), pages - 1)
        self.on_page()

    def page_items(self, items: list[Any]) -> list[Any]:
        self.count = len(items)
        pages = max(1, -(-self.count // self.size))
        self.page = min(self.page, pages - 1)
        start = self.page * self.size
        return items[start:start + self.size]

    def show(self, facts: list[Any], procs: list[Any], now: float, enabled: bool = True) -> int:
        """Draw the page (``facts`` and ``procs`` of the current page; for remote children both
        are the children); returns messages sent."""
        sent = 0
        while len(self.rows) < len(procs):
            self.rows.append(_Row(self))
        for row, f, proc in zip(self.rows, facts, procs):
            if row.proc is not proc:
                if row.proc is not None:  # it showed another child a moment ago: guard it
                    row.changed = time.monotonic()
                row.proc = proc
            value = self.render(f)
            if row.html.value != value:
                row.html.value = value
                sent += 1
            for b in row.buttons:
                disabled = not (enabled and f.live)
                if b.disabled != disabled:
                    b.disabled = disabled
                    sent += 1
        for row in self.rows[len(procs):]:
            row.proc = None
        wanted = tuple(r.box for r in self.rows[: len(procs)]) + (self.pager,)
        if self.box.children != wanted:
            self.box.children = wanted
            sent += 1
        paged = self.count > self.size
        display = "flex" if paged else "none"
        if self.pager.layout.display != display:
            self.pager.layout.display = display
            sent += 1
        if paged:
            start = self.page * self.size
            text = f"<span style='font-size:12px'>{start + 1}&ndash;{min(start + self.size, self.count)} of {self.count}</span>"
            if self.label.value != text:
                self.label.value = text
                sent += 1
        return sent

    def close(self) -> None:
        for widget in self.owned:
            widget.close()
        self.owned.clear()
        self.rows.clear()
