"""The stop ladder: signal, wait a grace, escalate to SIGKILL, reap; blocking and stepped."""

from __future__ import annotations

import signal
import time

import pytest

from procmagic import Process
from procmagic.core import ladder, timing

from .helpers import WAIT, wait_until


def stubborn(proc: Process) -> None:
    """Ignores SIGTERM and SIGINT, says it is ready, then waits to be killed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc.write(b"ready")
    time.sleep(WAIT * 3)


def polite(proc: Process) -> None:
    proc.write(b"ready")
    time.sleep(WAIT * 3)


def test_stop_escalates_to_sigkill_after_the_grace(spawn):
    p = spawn(stubborn)
    p.start()
    assert p.read(timeout=WAIT) == b"ready"
    [status] = ladder.stop([p], ladder.TERMINATE(0.2), reason="shutdown")
    assert status.signal == signal.SIGKILL and status.stop_reason == "shutdown"
    assert p.exitstatus is status


def test_stop_ends_at_the_first_step_when_it_is_enough(spawn):
    procs = [spawn(polite) for _ in range(3)]
    for p in procs:
        p.start()
        assert p.read(timeout=WAIT) == b"ready"
    statuses = ladder.stop(procs, ladder.TERMINATE(WAIT))
    assert [s.signal for s in statuses] == [signal.SIGTERM] * 3


def test_the_stepper_escalates_on_its_deadlines(spawn):
    p = spawn(stubborn)
    p.start()
    assert p.read(timeout=WAIT) == b"ready"
    steps = ladder.Ladder([p], ladder.INTERRUPT(signal.SIGINT, 0.05, 0.05), reason="interrupt")
    assert steps.advance() == signal.SIGINT and steps.deadline is not None
    assert not steps.tick(steps.deadline - 0.01)  # not yet: no escalation before the deadline
    assert steps.signal == signal.SIGINT
    steps.tick(steps.deadline)  # the grace is over: SIGTERM
    assert steps.signal == signal.SIGTERM
    assert steps.advance() == signal.SIGKILL  # a second interrupt: the next step now
    assert steps.deadline is None
    wait_until(lambda: steps.tick(), what="the ladder to finish after SIGKILL")
    assert p.exitstatus is not None and p.exitstatus.signal == signal.SIGKILL
    assert p.exitstatus.stop_reason == "interrupt"
    assert steps.advance() is None  # nothing left to send


def test_a_ladder_always_ends_with_sigkill():
    steps = ladder.Ladder([], [(signal.SIGTERM, 1.0)])
    assert [s for s, _ in steps.steps] == [signal.SIGTERM, signal.SIGKILL]
    with pytest.raises(ValueError, match="grace must be >= 0"):
        ladder.Ladder([], [(signal.SIGTERM, -1)])


@pytest.mark.parametrize("procs, steps, exc, match", [
    (None, None, TypeError, "procs must be an iterable of procmagic Process objects, not None"),
    ([1234], None, TypeError, r"procs must be procmagic Process objects \(a bare pid: procmagic.kill\(pid, sig\)\), not 1234"),
    ([], [(signal.SIGTERM, 1, 2)], ValueError, r"each step must be a \(signal, grace in seconds\) pair"),
    ([], [signal.SIGTERM], ValueError, r"each step must be a \(signal, grace in seconds\) pair"),
    ([], [(signal.SIGTERM, -1)], ValueError, "grace must be >= 0 seconds"),
])
def test_the_ladder_refuses_bad_arguments(procs, steps, exc, match):
    with pytest.raises(exc, match=match):
        ladder.stop(procs, steps)


def test_poll_ms_rounds_up_and_never_goes_negative():
    now = 100.0
    assert timing.poll_ms(None, now) is None
    assert timing.poll_ms(now + 0.0001, now) == 1  # a hair early would spin on poll(0)
    assert timing.poll_ms(now + 1.5, now) == 1500
    assert timing.poll_ms(now - 5, now) == 0
    assert timing.earliest([None, 3.0, 2.0]) == 2.0 and timing.earliest([None]) is None
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds"):
        timing.seconds(float("nan"))
    with pytest.raises(TypeError, match="a number of seconds or None"):
        timing.seconds("3")
