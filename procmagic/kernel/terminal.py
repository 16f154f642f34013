"""Background spawns in terminal IPython, which has no event loop running while its prompt
waits: their output is drained before and after every cell, and by ``%wait`` and ``%procs``.
"""

from __future__ import annotations

import select
from typing import Any

from ..core.process import Process
from ..core.reaper import registry
from .spawn import Spawn

__all__ = ["TerminalBackground", "drain_terminal"]


class TerminalBackground:
    """The driver of one ``--bg`` spawn in a terminal: reads what is ready, never waits."""

    active: list["TerminalBackground"] = []

    def __init__(self, spawn: Spawn) -> None:
        self.spawn = spawn
        self.reaped: set[int] = set()
        TerminalBackground.active.append(self)

    def child_reaped(self, proc: Process, status: Any) -> None:
        if proc.id not in self.reaped:
            self.reaped.add(proc.id)
            self.spawn.record(proc, status)

    def drain(self) -> None:
        """Publish whatever the children wrote so far; finish the spawn once all were reaped."""
        router = self.spawn.router
        for fd in list(router.sources):
            while fd in router.sources:
                if not select.select([fd], [], [], 0)[0]:
                    break
                if not router.on_readable(fd):
                    router.close_source(fd)
        router.flush()
        registry.reap_ready()
        if len(self.reaped) == len(self.spawn.procs):
            self.spawn.finish()
            if self in TerminalBackground.active:
                TerminalBackground.active.remove(self)


def drain_terminal() -> None:
    """Drain every terminal background spawn (around each cell, and in ``%wait``/``%procs``)."""
    for driver in list(TerminalBackground.active):
        driver.drain()
