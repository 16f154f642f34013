"""A live table above a remote spawn's output: one row per child on the engines (engine, host,
pid, state, runtime, CPU, peak RSS, exit), updated in place with ``update_display_data`` as
exit statuses and state answers arrive (at most once a second while nothing ends).

Plain display data (text and HTML), published under the spawning cell's header like the
output: it needs no widget manager, shows in every frontend and in saved notebooks. A ``--bg``
spawn also gets interrupt / terminate / kill buttons (ipywidgets) for all its running children,
and a row per child with its own INT / TERM / KILL.
"""

from __future__ import annotations

import html
import signal as _signal
import time
import uuid
from typing import Any

__all__ = ["RemotePanel", "RemoteControls", "show_buttons"]

_COLUMNS = ["id", "name", "engine", "host", "pid", "state", "runtime", "cpu", "peak rss", "exit"]


class RemotePanel:
    def __init__(self, spawn: Any) -> None:
        self.spawn = spawn
        self.display_id = f"procmagic-remote-{uuid.uuid4().hex}"
        self._shown: dict[str, str] | None = None
        self._at = 0.0
        self.controls: RemoteControls | None = None  # a --bg spawn's buttons and rows

    def _rows(self) -> list[list[str]]:
        rows = []
        for c in self.spawn.children:
            rows.append([c.key, c.name, str(c.engine), c.host, str(c.pid), c.shown_state, f"{c.runtime:.1f} s",
                         "-" if c.cpu is None else f"{c.cpu:.2f} s", "-" if not c.peak else f"{c.peak / 1e6:.1f} MB",
                         c.how or "-"])
        return rows

    def _data(self) -> dict[str, str]:
        from ..text import table

        spawn = self.spawn
        states: dict[str, int] = {}
        for c in spawn.children:
            states[c.shown_state] = states.get(c.shown_state, 0) + 1
        title = (f"{spawn.name} on engines {', '.join(map(str, spawn.engines))}: "
                 + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
        rows = self._rows()
        head = "".join(f"<th style='text-align:left;padding:0 .6em'>{html.escape(h)}</th>" for h in _COLUMNS)
        body = "".join("<tr>" + "".join(f"<td style='padding:0 .6em'>{html.escape(v)}</td>" for v in r) + "</tr>"
                       for r in rows)
        return {"text/plain": f"{title}\n{table(_COLUMNS, rows)}",
                "text/html": f"<div><b>{html.escape(title)}</b><table><tr>{head}</tr>{body}</table></div>"}

    def show(self) -> None:
        self._shown = self._data()
        self._at = time.monotonic()
        self.spawn.publish("display_data", {"data": self._shown, "metadata": {},
                                            "transient": {"display_id": self.display_id}})

    def update(self, force: bool = False) -> None:
        """Redraw when something changed: at once when ``force`` (a child ended), else at most
        once a second (runtime and CPU move all the time)."""
        if self._shown is None or (not force and time.monotonic() - self._at < 1.0):
            return
        if self.controls is not None:
            self.controls.refresh()
        data = self._data()
        if data == self._shown:
            return
        self._shown = data
        self._at = time.monotonic()
        self.spawn.publish("update_display_data", {"data": data, "metadata": {},
                                                   "transient": {"display_id": self.display_id}})


class RemoteControls:
    """Under a ``--bg`` remote spawn's table: interrupt / terminate / kill for all its running
    children, and a row per child with its own INT / TERM / KILL (the ``%procs`` dashboard's
    rows), each signalling through the child's engine, never the engine. Widgets change only on
    the loop that publishes the spawn's output; clicks (the main thread) and engines' answers
    (ipyparallel's thread) hand over to it."""

    def __init__(self, spawn: Any) -> None:
        import ipywidgets as w

        from ..widgets.controls import action_buttons, html
        from ..widgets.remote_rows import RemoteRowPool

        self.spawn = spawn
        self.owned: list[Any] = []
        self.note = html(owned=self.owned, cls="pm-note")
        self.all = action_buttons(self.owned, self._act_all)
        self.pool = RemoteRowPool(12, self._note, self._on_loop_refresh)
        self.box = w.VBox([w.HBox([*self.all, self.note], layout=w.Layout(align_items="center")), self.pool.box],
                          _dom_classes=("procmagic-remote-controls",))
        self.owned.append(self.box)
        self._shown: tuple[Any, ...] = ()

    def show(self) -> None:
        from IPython.display import display

        self.refresh()
        display(self.box)

    def refresh(self) -> None:
        """Redraw the rows when a child's facts changed (the loop's thread)."""
        children = self.spawn.children
        key = tuple((c.key, c.shown_state, c.how, round(c.runtime), c.cpu, c.peak) for c in children)
        if key == self._shown:
            return
        self._shown = key
        page = self.pool.page_items(children)
        self.pool.show(page, page, time.monotonic())
        live = any(c.live for c in children)
        for b in self.all:
            b.disabled = not live

    def _on_loop(self, fn: Any) -> None:
        loop = self.spawn.loop
        if loop is None:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _on_loop_refresh(self) -> None:
        self._shown = ()
        self._on_loop(self.refresh)

    def _note(self, text: str) -> None:
        def put() -> None:
            self.note.value = f"<span style='font-size:12px'>{html.escape(text)}</span>"
        self._on_loop(put)

    def _act_all(self, sig: int) -> None:
        live = [c for c in self.spawn.children if c.live]
        name = _signal.Signals(sig).name
        if not live:
            self._note("nothing to signal: every child has ended")
            return

        def answered(sent: dict[str, bool]) -> None:
            n = sum(1 for v in sent.values() if v)
            self._note(f"sent {name} to {n} of {len(live)} children" + ("" if n == len(live) else
                       " (the others had ended, or their engines did not answer)"))

        self.spawn.signal(live, sig, wait=None, then=answered)
        self._note(f"asked the engines to send {name} to {len(live)} running children")


def show_buttons(spawn: Any) -> RemoteControls:
    """The controls of a ``--bg`` remote spawn (a foreground cell has none: the kernel reads a
    click only after the cell, so the notebook's interrupt is the button)."""
    controls = RemoteControls(spawn)
    controls.show()
    return controls
