"""Running a spawn: in the foreground (the cell blocks, interrupts are forwarded), or in the
background (an event loop reads the output while other cells run).
"""

from __future__ import annotations

import os
import select
import signal as _signal
import time
from typing import Any

from ..core.process import Process
from ..core.reaper import registry
from ..core.status import ExitStatus
from .interrupts import InterruptLatch
from .router import BACKGROUND_BUDGET
from .spawn import Spawn

__all__ = ["run_foreground", "BackgroundDriver"]


def _signal_group(proc: Process, sig: int) -> None:
    if proc.exitstatus is None and proc.pid is not None:
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            try:
                os.kill(proc.pid, sig)
            except OSError:
                pass


def _status_of(proc: Process) -> ExitStatus:
    """The exit status of a child whose pidfd is ready; unlike ``join()``, a failed ``exec()``
    is not raised here: it is part of the status (``exited 127, exec failed: ...``)."""
    status = registry.reap(proc, None)
    assert status is not None  # reap(None) waits for the exit
    registry.claim(proc)
    return status


class _Escalation:
    """SIGINT (or --signal-on-interrupt), then SIGTERM, then SIGKILL, each after a grace period
    or at once on the next interrupt."""

    def __init__(self, spawn: Spawn) -> None:
        self.spawn = spawn
        self.step = 0
        self.deadline: float | None = None

    def next(self, live: list[Process]) -> None:
        """Send the next signal of the ladder to every live child's group."""
        sigs = [self.spawn.options.signal_on_interrupt, _signal.SIGTERM, _signal.SIGKILL]
        sig = sigs[min(self.step, len(sigs) - 1)]
        for proc in live:
            _signal_group(proc, sig)
        self.step += 1
        settings = self.spawn.settings
        grace = settings.interrupt_grace if self.step == 1 else settings.term_grace
        self.deadline = time.monotonic() + grace if sig != _signal.SIGKILL else None

    def terminate(self, live: list[Process]) -> None:
        """A time-out skips the interrupt: SIGTERM now, SIGKILL after term_grace."""
        self.step = max(self.step, 1)
        self.next(live)


def run_foreground(spawn: Spawn, latch: InterruptLatch | None = None) -> None:
    """Block until every child has exited and its output is published. The notebook's
    interrupts, counted by ``latch`` (or raised as KeyboardInterrupt without one), are forwarded
    to the children; the cell raises KeyboardInterrupt at the end."""
    router = spawn.router
    live = {p.exit_fd: p for p in spawn.procs if p.exit_fd is not None}
    polled = [p for p in spawn.procs if p.exit_fd is None]  # no pidfd here: poll with WNOHANG
    deadline = (time.monotonic() + spawn.options.timeout) if spawn.options.timeout else None
    escalation = _Escalation(spawn)
    drain_deadline: float | None = None
    poller = select.poll()
    for fd in live:
        poller.register(fd, select.POLLIN)
    if latch is not None and latch.fd is not None:
        poller.register(latch.fd, select.POLLIN)
    pending = latch.take() if latch is not None else 0  # interrupts while the spawn started
    watched: set[int] = set()
    resume_at: dict[int, float] = {}  # sources whose next read is paced (router.read_delay)
    while True:
        try:
            if pending:
                pending = 0
                spawn.interrupted = True
                procs = list(live.values()) + polled
                if procs:
                    escalation.next(procs)
                elif not router.open:
                    break
            for fd in list(router.sources):
                if fd in resume_at and resume_at[fd] > time.monotonic():
                    continue
                resume_at.pop(fd, None)
                if fd not in watched and not router.paused:
                    poller.register(fd, select.POLLIN)
                    watched.add(fd)
            if router.paused:
                for fd in watched:
                    poller.unregister(fd)
                watched.clear()
            remaining = list(live.values()) + polled
            if not remaining and not router.open:
                break
            now = time.monotonic()
            if not remaining and drain_deadline is None:
                drain_deadline = now + spawn.settings.drain_timeout
            if drain_deadline is not None and now >= drain_deadline:
                router.add_notice("[procmagic] stopped reading output: a descendant of the child still "
                                  "holds its output pipe open\n")
                break
            wakeups = [t for t in (router.due(), deadline, escalation.deadline, drain_deadline) if t is not None]
            if resume_at:
                wakeups.append(min(resume_at.values()))
            if polled:
                wakeups.append(now + 0.01)
            ms = None if not wakeups else max(0, int((min(wakeups) - now) * 1000) + 1)
            if router.paused:
                ms = 0
            events = poller.poll(ms)
            for fd, _ in sorted(events, key=lambda e: e[0] in router.sources and router.sources[e[0]].framed):
                if latch is not None and fd == latch.fd:
                    pending = latch.take()
                elif fd in live:
                    proc = live.pop(fd)
                    poller.unregister(fd)
                    spawn.record(proc, _status_of(proc))
                elif fd in router.sources:
                    if not router.on_readable(fd):
                        if fd in watched:
                            poller.unregister(fd)
                            watched.discard(fd)
                        router.close_source(fd)
                        resume_at.pop(fd, None)
                    else:
                        delay = router.read_delay(fd)
                        if delay > 0 and fd in watched:
                            poller.unregister(fd)
                            watched.discard(fd)
                            resume_at[fd] = time.monotonic() + delay
            for proc in list(polled):
                status = proc.poll()
                if status is not None:
                    polled.remove(proc)
                    registry.claim(proc)
                    spawn.record(proc, status)
            router.flush_due()
            if router.paused:
                router.flush()
            now = time.monotonic()
            if deadline is not None and now >= deadline and (live or polled):
                deadline = None
                spawn.timed_out = True
                procs = list(live.values()) + polled
                for proc in procs:
                    proc.mark_stop_reason("timeout")
                router.add_notice(f"[procmagic] time-out after {spawn.options.timeout} s: sending SIGTERM\n")
                escalation.terminate(procs)
            elif escalation.deadline is not None and now >= escalation.deadline and (live or polled):
                escalation.next(list(live.values()) + polled)
        except KeyboardInterrupt:
            spawn.interrupted = True
            procs = list(live.values()) + polled
            if procs:
                escalation.next(procs)
            else:
                break
    for fd in watched:
        try:
            poller.unregister(fd)
        except (KeyError, ValueError):
            pass
    spawn.finish()
    if spawn.interrupted:
        raise KeyboardInterrupt


class BackgroundDriver:
    """Drives a ``--bg`` spawn from an asyncio loop (the IOPub thread's, in a kernel).

    Every method but ``start`` and ``child_reaped`` runs on the loop's thread; those two hand
    over with ``call_soon_threadsafe``. Children are reaped on the main thread (the registry),
    which tells the driver; the exit statuses are shown once the output has drained.
    """

    def __init__(self, spawn: Spawn, loop: Any) -> None:
        self.spawn = spawn
        self.loop = loop
        spawn.router.budget = BACKGROUND_BUDGET  # the IOPub thread carries the kernel's own messages too
        self.watched: set[int] = set()
        self.flush_handle: Any = None
        self.drain_handle: Any = None
        self.kill_handle: Any = None
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
        for proc in live:
            proc.mark_stop_reason("timeout")
            _signal_group(proc, _signal.SIGTERM)
        self.spawn.router.add_notice(f"[procmagic] time-out after {self.spawn.options.timeout} s: sending SIGTERM\n")
        self.kill_handle = self.loop.call_later(self.spawn.settings.term_grace, self._kill_rest)

    def _kill_rest(self) -> None:
        self.kill_handle = None
        for proc in self.spawn.procs:
            if proc.id not in self.reaped:
                _signal_group(proc, _signal.SIGKILL)

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
