"""A live table above a remote spawn's output: one row per child on the engines (engine, host,
pid, state, runtime, CPU, peak RSS, exit), updated in place with ``update_display_data`` as
exit statuses and state answers arrive (at most once a second while nothing ends).

Plain display data (text and HTML), published under the spawning cell's header like the
output: it needs no widget manager, shows in every frontend and in saved notebooks. A ``--bg``
spawn also gets interrupt / terminate / kill buttons (ipywidgets) for all its running children;
``%kill`` picks single ones.
"""

from __future__ import annotations

import html
import signal as _signal
import time
import uuid
from typing import Any

__all__ = ["RemotePanel", "show_buttons"]

_COLUMNS = ["id", "name", "engine", "host", "pid", "state", "runtime", "cpu", "peak rss", "exit"]


class RemotePanel:
    def __init__(self, spawn: Any) -> None:
        self.spawn = spawn
        self.display_id = f"procmagic-remote-{uuid.uuid4().hex}"
        self._shown: dict[str, str] | None = None
        self._at = 0.0

    def _rows(self) -> list[list[str]]:
        rows = []
        for c in self.spawn.children:
            rows.append([c.key, c.name, str(c.engine), c.host, str(c.pid), c.state, f"{c.runtime:.1f} s",
                         "-" if c.cpu is None else f"{c.cpu:.2f} s", "-" if not c.peak else f"{c.peak / 1e6:.1f} MB",
                         c.how or "-"])
        return rows

    def _data(self) -> dict[str, str]:
        from ..text import table

        spawn = self.spawn
        states: dict[str, int] = {}
        for c in spawn.children:
            states[c.state] = states.get(c.state, 0) + 1
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
        data = self._data()
        if data == self._shown:
            return
        self._shown = data
        self._at = time.monotonic()
        self.spawn.publish("update_display_data", {"data": data, "metadata": {},
                                                   "transient": {"display_id": self.display_id}})


def show_buttons(spawn: Any) -> Any:
    """Interrupt / terminate / kill buttons under a ``--bg`` remote spawn's table: each signals
    its live children through their engines (never the engines). A foreground cell has none:
    the kernel reads a click only after the cell, so the notebook's interrupt is the button."""
    import ipywidgets as w

    from IPython.display import display

    buttons = []
    for label, sig, style, tip in (("interrupt", _signal.SIGINT, "", "SIGINT to every running child of this spawn"),
                                   ("terminate", _signal.SIGTERM, "warning", "SIGTERM to every running child"),
                                   ("kill", _signal.SIGKILL, "danger", "SIGKILL to every running child")):
        button = w.Button(description=label, button_style=style, tooltip=tip,
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b, sig=sig: spawn.signal([c for c in spawn.children if c.live], sig, wait=None))
        buttons.append(button)
    box = w.HBox(buttons)
    display(box)
    return box
