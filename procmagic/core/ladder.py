"""The stop ladder: signal, wait a grace period, escalate, reap. One of it, for everyone.

A ladder is a list of steps ``(signal, grace)``: send the signal to every child still running
(to its whole process group, and to descendants that left the group but are still below it),
wait up to ``grace`` seconds for them to end, then take the next step. The last step is
SIGKILL. Two forms:

- :func:`stop` blocks until every child is reaped (``Process.stop``, ``Pool`` shutdown, the
  kernel's shutdown);
- :class:`Ladder` is a stepper for event-loop drivers: ``advance()`` takes the next step now
  (a second interrupt), ``deadline`` says when ``tick()`` should be called next, ``tick()``
  escalates once the grace is over, ``finished`` says when nothing is left.

What is left of a child's process group after the child itself has been reaped (a grandchild
started in the background) gets the same signal at each step: a process group's id cannot be
taken by a new group while it still has members, so signalling it cannot hit a stranger.
"""

from __future__ import annotations

import os
import select
import signal as _signal
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from . import timing
from .reaper import group_alive, registry
from .signals import SignalLike, signal_number
from .status import ExitStatus

if TYPE_CHECKING:
    from .process import Process

__all__ = ["Ladder", "stop", "stop_all", "group_alive", "signal_group", "descendants", "TERMINATE", "INTERRUPT"]

Step = tuple[SignalLike, "float | None"]


def TERMINATE(grace: float) -> list[Step]:
    """SIGTERM, then SIGKILL after ``grace`` seconds (--timeout, %kill, shutdown, stop())."""
    return [(_signal.SIGTERM, grace), (_signal.SIGKILL, None)]


def INTERRUPT(sig: SignalLike, interrupt_grace: float, term_grace: float) -> list[Step]:
    """``sig`` (SIGINT), then SIGTERM, then SIGKILL (the notebook's interrupt button)."""
    return [(sig, interrupt_grace), (_signal.SIGTERM, term_grace), (_signal.SIGKILL, None)]


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from ``/proc/PID/task/TID/children`` (children
    re-parented to ``pid`` as a subreaper included). Empty when /proc cannot tell."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 100_000:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _checked_step(step: Any) -> tuple[int, float | None]:
    sig: Any
    grace: Any
    try:
        sig, grace = step
    except (TypeError, ValueError):
        raise ValueError(f"each step must be a (signal, grace in seconds) pair, like (signal.SIGTERM, 2.0) "
                         f"(None: wait forever), not {step!r}") from None
    return signal_number(sig), timing.seconds(grace, "grace")


def _checked_procs(procs: Iterable["Process"]) -> list["Process"]:
    from .process import Process  # (process.py imports this module)

    try:
        found = list(procs)
    except TypeError:
        raise TypeError(f"procs must be an iterable of procmagic Process objects, not {procs!r}") from None
    strangers = [p for p in found if not isinstance(p, Process)]
    if strangers:
        raise TypeError(f"procs must be procmagic Process objects (a bare pid: procmagic.kill(pid, sig)), not "
                        f"{strangers[0]!r}")
    return found


class Ladder:
    """Stop ``procs`` step by step without blocking (see the module docs).

    ``reason`` is marked on each child (``Process.mark_stop_reason``) at the first step.
    ``groups`` adds process groups to stop whose leader was reaped already.
    """

    def __init__(self, procs: Iterable["Process"], steps: Sequence[Step], reason: str | None = None,
                 groups: Iterable[int] = ()) -> None:
        self.steps = [_checked_step(step) for step in steps]
        if not self.steps or self.steps[-1][0] != _signal.SIGKILL:
            self.steps.append((int(_signal.SIGKILL), None))
        self.procs = [p for p in _checked_procs(procs) if p.pid is not None]
        # pgid == pid: each child leads its own; plus groups whose leader is long gone
        self.groups = sorted({p.pid for p in self.procs if p.pid is not None} | set(groups))
        self.reason = reason
        self.step = 0  # steps taken so far
        self.deadline: float | None = None  # when tick() escalates; None: nothing to wait for

    @property
    def signal(self) -> int | None:
        """The signal of the last step taken (None before the first)."""
        return self.steps[self.step - 1][0] if self.step else None

    def live(self) -> list["Process"]:
        """Children not yet reaped (each polled, never blocking)."""
        return [p for p in self.procs if p.exitstatus is None and p.poll() is None]

    def live_groups(self) -> list[int]:
        return [pgid for pgid in self.groups if group_alive(pgid)]

    @property
    def finished(self) -> bool:
        """Every child reaped and, once SIGKILL was sent, their groups signalled for the last time."""
        if self.live():
            return False
        return self.signal == _signal.SIGKILL or not self.live_groups()

    def advance(self, now: float | None = None) -> int | None:
        """Take the next step now; returns the signal sent (None when nothing was left)."""
        if self.step >= len(self.steps):
            self.deadline = None
            return None
        sig, grace = self.steps[self.step]
        self.step += 1
        live = self.live()
        if self.reason is not None and self.step == 1:
            for proc in live:
                proc.mark_stop_reason(self.reason)
        for proc in live:
            _signal_tree(proc, sig)
        leaders = {p.pid for p in live}
        for pgid in self.groups:
            if pgid not in leaders:
                signal_group(pgid, sig)  # what a reaped child left behind in its group
        now = time.monotonic() if now is None else now
        self.deadline = None if sig == _signal.SIGKILL or grace is None else now + grace
        return sig

    def tick(self, now: float | None = None) -> bool:
        """Escalate if the grace is over; True once finished."""
        if self.finished:
            self.deadline = None
            return True
        now = time.monotonic() if now is None else now
        if self.deadline is not None and now >= self.deadline:
            self.advance(now)
        return False


def _signal_tree(proc: "Process", sig: int) -> None:
    """``sig`` to ``proc``'s group, and to its descendants that left the group (setsid)."""
    pid = proc.pid
    assert pid is not None
    strays = [d for d in descendants(pid) if _pgid(d) not in (pid, None)]
    if not proc.kill(sig, group=True):
        return
    for d in strays:
        try:
            os.kill(d, sig)
        except OSError:
            pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def stop(procs: Iterable["Process"], steps: Sequence[Step] | None = None, reason: str | None = None,
         grace: float = 2.0, groups: Iterable[int] = ()) -> list[ExitStatus]:
    """Stop ``procs`` and reap them, blocking: each step's signal, then wait up to its grace for
    the children (and what is left of their groups) before the next step. Returns their
    statuses, in order. ``steps`` defaults to ``TERMINATE(grace)``."""
    ladder = Ladder(procs, steps if steps is not None else TERMINATE(grace), reason, groups)
    while not ladder.finished:
        if ladder.advance() is None:
            break
        _wait_until(ladder, ladder.deadline)
    for proc in ladder.procs:  # after SIGKILL: each ends at once
        record = proc._record
        if record is not None:
            registry.reap(record, None)
    return [p.exitstatus for p in ladder.procs if p.exitstatus is not None]


def stop_all(grace: float = 2.0, reason: str = "shutdown") -> list[ExitStatus]:
    """Stop every live child of this process and what reaped ones left in their process
    groups (SIGTERM, ``grace``, SIGKILL), blocking: a kernel's shutdown."""
    return stop(registry.live(), TERMINATE(grace), reason, groups=registry.leftover_groups())


def _wait_until(ladder: Ladder, deadline: float | None) -> None:
    """Wait for the ladder's children to end, until ``deadline`` (None: until they end)."""
    while not ladder.finished:
        left = timing.remaining(deadline)
        if left == 0:
            return
        live = ladder.live()
        held = [(p._record, registry.hold(p._record)) for p in live if p._record is not None]
        try:
            fds = [fd for _, fd in held if fd is not None]
            if live and len(fds) == len(live):
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                poller.poll(timing.poll_ms(deadline))
            else:  # no pidfd here, or only the groups' leftovers to watch: short pauses
                time.sleep(0.01 if left is None else min(0.01, left))
        finally:
            for record, held_fd in held:
                if held_fd is not None:
                    registry.release(record)
        if deadline is None and not live and ladder.signal == _signal.SIGKILL:
            return
