"""Children on ipyparallel engines (``%%spawn --engines``) as rows of the ``%procs`` dashboard
and of a ``--bg`` remote spawn's panel: engine id, host, pid, state, runtime, CPU, peak RSS and
exit status, with INT / TERM / KILL buttons that signal that child through its engine (never
the engine itself).

The rows read ``procmagic.engines`` only once it was loaded (someone used ``--engines``): a
dashboard of a notebook without engines imports nothing of it, and ipyparallel never.
"""

from __future__ import annotations

import signal as _signal
import sys
from typing import Any, Callable

from .controls import RowPool
from .facts import fmt_bytes, fmt_runtime
from .render import MONO, _cell, _esc, badge

__all__ = ["RemoteRowPool", "remote_children", "remote_row_html"]


def remote_children() -> list[Any]:
    """Every remote child procmagic knows of (the last 100 remote spawns): running ones first,
    then the newest; [] until ``--engines`` was used."""
    engines = sys.modules.get("procmagic.engines")
    if engines is None:
        return []
    children = [c for spawn in reversed(engines.remote_spawns()) for c in spawn.children]
    return [c for c in children if c.live] + [c for c in children if not c.live]


def remote_row_html(child: Any) -> str:
    """One remote child on one line (the same cells as a local row, plus its engine and host)."""
    state = child.shown_state
    parts = [
        _cell(_esc(child.name), 140, "pm-name", f"{child.name} (id {child.key})"),
        _cell(f"engine <b class='pm-engine'>{child.engine}</b>", 72),
        _cell(_esc(child.host), 110, "pm-host", f"host {child.host}"),
        _cell(f"pid <b class='pm-pid'>{child.pid}</b>", 88),
        badge("killed" if state == "exited" and child.how.startswith("killed") else state),
        _cell(fmt_runtime(child.runtime), 64, "pm-runtime", "runtime"),
        _cell("cpu -" if child.cpu is None else f"cpu {child.cpu:.2f} s", 96, "", "CPU seconds (as the engine last said)"),
        _cell(f"peak {fmt_bytes(child.peak) if child.peak else '-'}", 104, "", "peak resident memory"),
        _cell(f'<b class="pm-exit">{_esc(child.how or "-")}</b>', 150, "", child.how or "still running"),
    ]
    return f'<div class="pm-row pm-remote-row" style="{MONO}">{"".join(parts)}</div>'


class RemoteRowPool(RowPool):
    """A page of remote children; each row's buttons signal its child through its engine.

    A click runs on the kernel's main thread: it sends the request to the engine and returns
    at once; the engine's answer (sent, or already ended) comes back on ipyparallel's thread
    and replaces the note."""

    def __init__(self, size: int, on_note: Callable[[str], None], on_page: Callable[[], None]) -> None:
        super().__init__(size, on_note, on_page)

    def render(self, facts: Any) -> str:
        return remote_row_html(facts)

    def act(self, item: Any, sig: int) -> str:
        name = _signal.Signals(sig).name
        who = f"{item.name} (engine {item.engine} on {item.host}, pid {item.pid})"
        if not item.live:
            return f"nothing to signal: {who} {'is lost with its engine' if item.state == 'lost' else 'has already ended'}"

        def answered(sent: dict[str, bool]) -> None:  # ipyparallel's thread
            if item.key not in sent:
                self.on_note(f"{name} to {who}: its engine did not answer")
            else:
                self.on_note(f"sent {name} to {who}" if sent[item.key] else f"{name} not sent to {who}: it had already ended")

        item.spawn.signal([item], sig, wait=None, then=answered)
        return f"asked engine {item.engine} to send {name} to {item.name} (pid {item.pid})"
