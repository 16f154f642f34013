"""Running a spawn in the foreground: the cell blocks until its children have exited and their
output is published, forwarding the notebook's interrupts and ``--timeout`` to the core's stop
ladder.

One ``poll()`` on the main thread watches the children's exit fds (held, so another thread
reaping a child never closes one under this poller), the spawn's output sockets and the
interrupt latch's pipe. A child's status comes from the core (``Process.poll()``), whoever
reaped it. Children that left something running in their process group (a
``subprocess.Popen`` without ``wait()``) have it stopped when the cell ends: the cell is the
spawn's whole life.
"""

from __future__ import annotations

import contextlib
import select
import time

from ..core import ladder as core_ladder
from ..core.process import Process
from ..core.reaper import registry
from .interrupts import InterruptLatch
from .spawn import Spawn

__all__ = ["run_foreground"]

_NO_PIDFD_POLL = 0.01  # seconds between two polls of children that have no pidfd


class _Stopping:
    """The spawn's stop ladder, started by the first interrupt or by the time-out."""

    def __init__(self, spawn: Spawn) -> None:
        self.spawn = spawn
        self.ladder: core_ladder.Ladder | None = None

    def interrupt(self, live: list[Process]) -> None:
        """The notebook's interrupt: the first starts --signal-on-interrupt, SIGTERM, SIGKILL;
        each next one takes the next step at once."""
        self.spawn.interrupted = True
        if self.ladder is None:
            s = self.spawn.settings
            steps = core_ladder.INTERRUPT(self.spawn.options.signal_on_interrupt, s.interrupt_grace, s.term_grace)
            self.ladder = core_ladder.Ladder(live, steps, reason="interrupt")
        self.ladder.advance()

    def time_out(self, live: list[Process]) -> None:
        self.spawn.timed_out = True
        self.spawn.router.add_notice(f"[procmagic] time-out after {self.spawn.options.timeout} s: sending SIGTERM\n")
        if self.ladder is None:
            self.ladder = core_ladder.Ladder(live, core_ladder.TERMINATE(self.spawn.settings.term_grace),
                                             reason="timeout")
            self.ladder.advance()

    @property
    def deadline(self) -> float | None:
        return self.ladder.deadline if self.ladder is not None else None

    def tick(self, now: float) -> None:
        if self.ladder is not None:
            self.ladder.tick(now)


def run_foreground(spawn: Spawn, latch: InterruptLatch | None = None) -> None:
    """Block until every child has exited and its output is published. The notebook's
    interrupts, counted by ``latch`` (or raised as KeyboardInterrupt without one), are forwarded
    to the children; the cell raises KeyboardInterrupt at the end."""
    with contextlib.ExitStack() as held:
        exit_fds: dict[int, Process] = {}
        polled: list[Process] = []  # no pidfd here: poll with WNOHANG
        for proc in spawn.procs:
            fd = held.enter_context(proc.hold_exit_fd())
            if fd is not None:
                exit_fds[fd] = proc
            elif proc.exitstatus is None:
                polled.append(proc)
            else:
                spawn.record(proc, proc.exitstatus)
        _wait(spawn, latch, exit_fds, polled)
    _stop_leftovers(spawn)
    spawn.finish()
    if spawn.interrupted:
        raise KeyboardInterrupt


def _wait(spawn: Spawn, latch: InterruptLatch | None, exit_fds: dict[int, Process], polled: list[Process]) -> None:
    router = spawn.router
    stopping = _Stopping(spawn)
    deadline = (time.monotonic() + spawn.options.timeout) if spawn.options.timeout else None
    drain_deadline: float | None = None
    poller = select.poll()
    for fd in exit_fds:
        poller.register(fd, select.POLLIN)
    if latch is not None and latch.fd is not None:
        poller.register(latch.fd, select.POLLIN)
    pending = latch.take() if latch is not None else 0  # interrupts while the spawn started
    watched: set[int] = set()
    resume_at: dict[int, float] = {}  # sources whose next read is paced (router.read_delay)

    def live() -> list[Process]:
        return list(exit_fds.values()) + polled

    def ended(proc: Process) -> None:
        status = proc.poll()
        if status is not None:
            registry.claim(proc)  # reported here: procmagic.wait() must not report it again
            spawn.record(proc, status)

    while True:
        try:
            if pending:
                pending = 0
                if live():
                    stopping.interrupt(live())
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
            if not live() and not router.open:
                break
            now = time.monotonic()
            if not live() and drain_deadline is None:
                drain_deadline = now + spawn.settings.drain_timeout
            if drain_deadline is not None and now >= drain_deadline:
                router.add_notice("[procmagic] stopped reading output: a descendant of the child still "
                                  "holds its output pipe open\n")
                break
            wakeups = [t for t in (router.due(), deadline, stopping.deadline, drain_deadline) if t is not None]
            if resume_at:
                wakeups.append(min(resume_at.values()))
            if polled:
                wakeups.append(now + _NO_PIDFD_POLL)
            ms = None if not wakeups else max(0, int((min(wakeups) - now) * 1000) + 1)
            if router.paused:
                ms = 0
            events = poller.poll(ms)
            for fd, _ in sorted(events, key=lambda e: e[0] in router.sources and router.sources[e[0]].framed):
                if latch is not None and fd == latch.fd:
                    pending += latch.take()
                elif fd in exit_fds:
                    proc = exit_fds.pop(fd)
                    poller.unregister(fd)
                    ended(proc)
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
                if proc.poll() is not None:
                    polled.remove(proc)
                    ended(proc)
            router.flush_due()
            if router.paused:
                router.flush()
            now = time.monotonic()
            if deadline is not None and now >= deadline and live():
                deadline = None
                stopping.time_out(live())
            stopping.tick(now)
        except KeyboardInterrupt:
            # raised without a latch, or while the stdin broker asked the frontend for a child's
            # input() (it lets SIGINT raise there: the kernel's raw_input waits until one does)
            pending += 1 + (latch.take() if latch is not None else 0)


def _stop_leftovers(spawn: Spawn) -> None:
    """What the children left running in their process groups ends with the cell: SIGTERM,
    then SIGKILL after ``term_grace`` (the latch still holds the interrupts meanwhile)."""
    groups = [p.pid for p in spawn.procs if p.pid is not None and core_ladder.group_alive(p.pid)]
    if not groups:
        return
    spawn.router.add_notice(f"[procmagic] stopping what the {'child' if len(spawn.procs) == 1 else 'children'} "
                            f"left running in {'its process group' if len(groups) == 1 else 'their process groups'} "
                            f"(SIGTERM, then SIGKILL after {spawn.settings.term_grace} s)\n")
    core_ladder.stop(spawn.procs, core_ladder.TERMINATE(spawn.settings.term_grace), reason="cell end")
