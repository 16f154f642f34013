"""Running a ``--bg`` spawn: an asyncio loop (the IOPub thread's, in a kernel) reads its output
while other cells run, and publishes the exit statuses once the children are reaped and their
output has drained. ``--timeout`` goes through the core's stop ladder, stepped on that loop.
"""

from __future__ import annotations

import time
from typing import Any

from ..core import ladder as core_ladder
from ..core.process import Process
from . import router as _router
from .spawn import Spawn

__all__ = ["BackgroundDriver"]


class BackgroundDriver:
    """Drives a ``--bg`` spawn from an asyncio loop (the IOPub thread's, in a kernel).

    Every method but ``start`` and ``child_reaped`` runs on the loop's thread; those two hand
    over with ``call_soon_threadsafe``. The spawn subscribed to its children's ends before
    starting them (``Process.add_done_callback``) and hands every exit to ``child_reaped``,
    whichever thread reaped it; the exit statuses are shown once the output has drained.
    """

    def __init__(self, spawn: Spawn, loop: Any) -> None:
        self.spawn = spawn
        self.loop = loop
        spawn.router.budget = _router.BACKGROUND_BUDGET  # the IOPub thread carries the kernel's own messages too
        spawn.router.tokens = _router.BACKGROUND_TOKENS  # and one rate of immediate messages for all of them
        spawn.router.read_gap = _router.BACKGROUND_READ_GAP
        self.watched: set[int] = set()
        self.flush_handle: Any = None
        self.drain_handle: Any = None
        self.kill_handle: Any = None
        self.ladder: core_ladder.Ladder | None = None  # --timeout's
        self.resume_handles: dict[int, Any] = {}  # paced reads (router.read_delay)
        self.reaped: set[int] = set()

    def start(self) -> None:
        self.loop.call_soon_threadsafe(self._attach)

    def child_reaped(self, proc: Process, status: Any) -> None:
        self.loop.call_soon_threadsafe(self._on_reaped, proc, status)

    # -- on the loop ---------------------------------------------------------------------------
    def _attach(self) -> None:
        self._watch_all()
        if self.spawn.options.timeout:
            self.kill_handle = self.loop.call_later(self.spawn.options.timeout, self._on_timeout)
        self._check_done()

    def _watch_all(self) -> None:
        for fd in list(self.spawn.router.sources):
            if fd not in self.watched and fd not in self.resume_handles:
                self.loop.add_reader(fd, self._readable, fd)
                self.watched.add(fd)

    def _resume(self, fd: int) -> None:
        self.resume_handles.pop(fd, None)
        if fd in self.spawn.router.sources and fd not in self.watched and not self.spawn.router.paused:
            self.loop.add_reader(fd, self._readable, fd)
            self.watched.add(fd)

    def _unwatch(self, fd: int) -> None:
        if fd in self.watched:
            self.loop.remove_reader(fd)
            self.watched.discard(fd)

    def _readable(self, fd: int) -> None:
        router = self.spawn.router
        if not router.on_readable(fd):
            self._unwatch(fd)
            router.close_source(fd)
        else:
            delay = router.read_delay(fd)
            if delay > 0 and fd in self.watched:
                self._unwatch(fd)
                self.resume_handles[fd] = self.loop.call_later(delay, self._resume, fd)
        if router.paused:  # let the frontend catch up: the child blocks on a full pipe meanwhile
            for watched in list(self.watched):
                self._unwatch(watched)
            router.flush()
            self.loop.call_soon(self._watch_all)
        self._schedule_flush()
        self._check_done()

    def _schedule_flush(self) -> None:
        due = self.spawn.router.due()
        if due is not None and self.flush_handle is None:
            self.flush_handle = self.loop.call_later(max(0.0, due - time.monotonic()), self._flush)

    def _flush(self) -> None:
        self.flush_handle = None
        self.spawn.router.flush_due()
        self._schedule_flush()

    def _on_reaped(self, proc: Process, status: Any) -> None:
        if proc.id in self.reaped:
            return
        self.reaped.add(proc.id)
        self.spawn.record(proc, status)
        self._check_done()

    def _check_done(self) -> None:
        if len(self.reaped) < len(self.spawn.procs):
            return
        if not self.spawn.router.open:
            self._finish()
        elif self.drain_handle is None:
            self.drain_handle = self.loop.call_later(self.spawn.settings.drain_timeout, self._drain_expired)

    def _drain_expired(self) -> None:
        if self.spawn.router.open:
            self.spawn.router.add_notice("[procmagic] stopped reading output: a descendant of the child "
                                         "still holds its output pipe open\n")
        self._finish()

    def _on_timeout(self) -> None:
        self.kill_handle = None
        live = [p for p in self.spawn.procs if p.id not in self.reaped and p.exitstatus is None]
        if not live:
            return
        self.spawn.timed_out = True
        self.spawn.router.add_notice(f"[procmagic] time-out after {self.spawn.options.timeout} s: sending SIGTERM\n")
        self.ladder = core_ladder.Ladder(live, core_ladder.TERMINATE(self.spawn.settings.term_grace), reason="timeout")
        self.ladder.advance()
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        deadline = self.ladder.deadline if self.ladder is not None else None
        if deadline is not None:
            self.kill_handle = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._tick)

    def _tick(self) -> None:
        self.kill_handle = None
        if self.ladder is not None and not self.ladder.tick():
            self._schedule_tick()

    def _finish(self) -> None:
        for fd in list(self.watched):
            self._unwatch(fd)
        for handle in list(self.resume_handles.values()):
            handle.cancel()
        self.resume_handles.clear()
        for handle in (self.flush_handle, self.drain_handle, self.kill_handle):
            if handle is not None:
                handle.cancel()
        self.flush_handle = self.drain_handle = self.kill_handle = None
        self.spawn.finish()
