"""Module functions kill(), signal() and alarm(), with swoole_process's semantics.

Alarms are only ever armed in children: pytest-timeout owns the test process's SIGALRM timer.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from typing import Any

import pytest

import procmagic
from procmagic import Process, alarm, kill
from procmagic.core.signals import reserve_signal

from .helpers import WAIT, run, wait_until


def noop(proc: Process) -> None:
    pass


def sleeper(proc: Process) -> None:
    time.sleep(WAIT * 3)


def _missing_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())  # pids are below pid_max: this one never exists


# -- kill() ------------------------------------------------------------------------------------
def test_kill_signal_0_probes():
    assert kill(os.getpid(), 0) is True
    assert kill(_missing_pid(), 0) is False  # quietly
    assert kill(1, 0) is True  # exists; if it is not ours, EPERM still means it exists


def test_kill_a_missing_pid_raises_process_lookup_error():
    missing = _missing_pid()
    with pytest.raises(ProcessLookupError, match=rf"no process {missing} to send SIGTERM to") as info:
        kill(missing)
    assert info.value.errno == errno.ESRCH


@pytest.mark.skipif(os.geteuid() == 0, reason="root may signal any process")
def test_kill_without_permission_raises_permission_error():
    with pytest.raises(PermissionError, match="not allowed to send SIGCONT to pid 1"):
        kill(1, signal.SIGCONT)


@pytest.mark.parametrize("pid", [0, -1, -1234])
def test_kill_refuses_process_groups(pid):
    with pytest.raises(ValueError, match=rf"pid must be a positive process id, got {pid}"):
        kill(pid, 0)


@pytest.mark.parametrize("pid", ["123", 1.5, True, None])
def test_kill_refuses_a_non_int_pid(pid):
    with pytest.raises(TypeError, match="pid must be an int"):
        kill(pid, 0)


@pytest.mark.parametrize("sig, exc, message", [
    (999, ValueError, "signal number must be from 1 to"),
    (-1, ValueError, "signal number must be from 1 to"),
    ("SIGNOPE", ValueError, "unknown signal name 'SIGNOPE'; use a name such as 'SIGTERM'"),
    (1.5, TypeError, "signal must be a signal number or name, not float 1.5"),
    (True, TypeError, "signal must be a signal number or name, not True"),
])
def test_kill_refuses_a_bad_signal(sig, exc, message):
    with pytest.raises(exc, match=message):
        kill(os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, int(signal.SIGTERM), "SIGTERM", "term", " sigterm ", "15"])
def test_kill_takes_signals_by_number_or_name(spawn, sig):
    p = spawn(sleeper, pipe=None)
    pid = p.start()
    assert kill(pid, sig) is True
    assert p.join(timeout=WAIT).signal == signal.SIGTERM


def test_kill_of_a_process_object_signals_its_group(spawn):
    p = spawn(sleeper, pipe=None)
    p.start()
    assert kill(p, "SIGKILL") is True
    assert p.join(timeout=WAIT).signal == signal.SIGKILL
    assert kill(p) is False  # reaped: never signalled again


# -- signal() ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, reason", [
    (signal.SIGKILL, "cannot install a handler for SIGKILL: SIGKILL can never be caught"),
    ("SIGSTOP", "cannot install a handler for SIGSTOP: SIGSTOP can never be caught"),
    (signal.SIGCHLD, "cannot install a handler for SIGCHLD: procmagic reaps its children by pid"),
])
def test_signal_refuses_reserved_signals_with_the_reason(sig, reason):
    with pytest.raises(ValueError, match=reason):
        procmagic.signal(sig, lambda signo: None)
    with pytest.raises(ValueError, match=reason):
        procmagic.signal(sig, signal.SIG_IGN)


def test_reserve_signal_adds_a_refusal_that_can_be_lifted():
    lift = reserve_signal(signal.SIGUSR2, "the test uses SIGUSR2")
    try:
        with pytest.raises(ValueError, match="cannot install a handler for SIGUSR2: the test uses SIGUSR2"):
            procmagic.signal(signal.SIGUSR2, None)
    finally:
        lift()
    procmagic.signal(signal.SIGUSR2, None)


@pytest.mark.parametrize("sig, handler, exc, message", [
    (0, lambda s: None, ValueError, "signal 0 is a probe for kill"),
    (999, lambda s: None, ValueError, "signal number must be from 1 to"),
    ("SIGNOPE", lambda s: None, ValueError, "unknown signal name 'SIGNOPE'"),
    (1.5, lambda s: None, TypeError, "signal must be a signal number or name"),
    (signal.SIGUSR1, "not callable", TypeError, "handler must be callable, None .* or signal.SIG_IGN"),
    (signal.SIGUSR1, 5, TypeError, "handler must be callable"),
])
def test_signal_refuses_bad_arguments(sig, handler, exc, message):
    with pytest.raises(exc, match=message):
        procmagic.signal(sig, handler)


def _deliver(sig: int, seen: list[Any]) -> None:
    signal.raise_signal(sig)
    wait_until(lambda: seen, what=f"the handler of {sig}")


def test_signal_handlers_with_one_or_two_arguments():
    one: list[Any] = []
    two: list[Any] = []
    procmagic.signal(signal.SIGUSR1, lambda signo: one.append(signo))
    _deliver(signal.SIGUSR1, one)
    assert one == [signal.SIGUSR1]
    procmagic.signal("SIGUSR1", lambda signo, frame: two.append((signo, frame is not None)))
    _deliver(signal.SIGUSR1, two)
    assert two == [(signal.SIGUSR1, True)]

    class Handler:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_signal(self, signo: int) -> None:
            self.seen.append(signo)

    h = Handler()
    procmagic.signal(signal.SIGUSR1, h.on_signal)  # a bound method takes one argument here
    _deliver(signal.SIGUSR1, h.seen)
    assert h.seen == [signal.SIGUSR1]


def test_a_second_registration_replaces_the_first():
    first: list[int] = []
    second: list[int] = []

    def handle_first(signo: int) -> None:
        first.append(signo)

    procmagic.signal(signal.SIGUSR1, handle_first)
    previous = procmagic.signal(signal.SIGUSR1, lambda signo: second.append(signo))
    assert previous is handle_first  # the user's handler, not procmagic's wrapper
    _deliver(signal.SIGUSR1, second)
    assert first == []


def test_none_restores_the_default():
    def handler(signo: int) -> None:
        pass

    procmagic.signal(signal.SIGUSR1, handler)
    assert procmagic.signal(signal.SIGUSR1, None) is handler
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    procmagic.signal(signal.SIGINT, handler)
    procmagic.signal(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # KeyboardInterrupt again


def test_sig_ign_ignores_the_signal():
    procmagic.signal(signal.SIGUSR1, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    signal.raise_signal(signal.SIGUSR1)  # would terminate the test process at its default
    procmagic.signal(signal.SIGUSR1, 0)  # SIG_DFL as a plain int, as swoole takes it
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_signal_from_a_non_main_thread_is_refused():
    box: dict[str, BaseException] = {}

    def install() -> None:
        try:
            procmagic.signal(signal.SIGUSR1, lambda signo: None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["exc"] = exc

    thread = threading.Thread(target=install, name="pm-signal-thread")
    thread.start()
    thread.join(WAIT)
    assert isinstance(box["exc"], ValueError)
    assert "only be installed from the main thread; this is 'pm-signal-thread'" in str(box["exc"])


def test_a_handler_runs_in_the_child_when_the_parent_signals_it(spawn):
    def target(proc: Process) -> None:
        got: list[int] = []
        procmagic.signal(signal.SIGUSR1, lambda signo: got.append(signo))
        proc.write(b"ready")
        deadline = time.monotonic() + WAIT
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.write(f"got {got}")

    p = spawn(target)
    p.start()
    assert p.read(timeout=WAIT) == b"ready"
    p.kill(signal.SIGUSR1)
    assert p.read(timeout=WAIT) == f"got [{int(signal.SIGUSR1)}]".encode()
    assert p.join(timeout=WAIT).code == 0


# -- alarm() -----------------------------------------------------------------------------------
def test_alarm_ticks_are_counted_and_read_from_the_parent(spawn):
    def target(proc: Process) -> None:
        ticks: list[int] = []
        procmagic.signal(signal.SIGALRM, lambda signo: ticks.append(signo))
        alarm(10_000)  # every 10 ms
        proc.write(b"armed")
        proc.read(timeout=WAIT)
        alarm(0)
        proc.write(str(len(ticks)))

    p = spawn(target)
    assert p.counters["alarm_ticks"] == 0  # before start: all zeros
    p.start()
    assert p.read(timeout=WAIT) == b"armed"
    wait_until(lambda: p.counters["alarm_ticks"] >= 3, what="three alarm ticks")
    live = p.counters
    assert live["alarm_which"] == signal.ITIMER_REAL + 1
    assert live["alarm_interval_us"] == 10_000
    assert live["last_tick_ns"] > 0
    p.write(b"stop")
    handled = int(p.read(timeout=WAIT))
    assert p.join(timeout=WAIT).code == 0
    final = p.counters  # kept after the reap
    assert final["alarm_ticks"] == handled >= 3
    assert final["alarm_which"] == 0 and final["alarm_interval_us"] == 0


def test_alarm_without_a_handler_is_refused():
    """The child starts with SIGALRM at its default even though pytest-timeout set one here."""

    def target(proc: Process) -> None:
        try:
            alarm(1_000)
        except ValueError as exc:
            print(exc)
            return
        proc.exit(3)

    status, out = run(target)
    assert status.code == 0
    assert out.decode().strip() == (
        "no handler for SIGALRM: at its default action the first tick of this alarm would terminate "
        "the process. Install one first: procmagic.signal(SIGALRM, handler)"
    )


def test_alarm_zero_or_negative_clears_it():
    def target(proc: Process) -> None:
        ticks: list[int] = []
        procmagic.signal(signal.SIGALRM, lambda signo: ticks.append(signo))
        for clear in (0, -5):
            alarm(5_000)
            deadline = time.monotonic() + WAIT
            while len(ticks) < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            alarm(clear)
            print(len(ticks) >= 2, signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))
            ticks.clear()

    status, out = run(target)
    assert status.code == 0
    assert out == b"True True\nTrue True\n"


def test_alarm_virtual_and_prof_timers_are_accepted():
    def target(proc: Process) -> None:
        for which, sig in ((signal.ITIMER_VIRTUAL, signal.SIGVTALRM), (signal.ITIMER_PROF, signal.SIGPROF),
                           ("virtual", signal.SIGVTALRM), ("ITIMER_PROF", signal.SIGPROF)):
            got: list[int] = []
            procmagic.signal(sig, lambda signo: got.append(signo))
            alarm(2_000, which)
            which_field = proc.counters["alarm_which"]
            deadline = time.monotonic() + WAIT
            while not got and time.monotonic() < deadline:
                pass  # burn CPU: these timers count CPU time, not wall time
            alarm(0, which)
            print(which, bool(got), which_field)

    status, out = run(target)
    assert status.code == 0, out
    assert out.decode().splitlines() == [
        f"{signal.ITIMER_VIRTUAL} True {signal.ITIMER_VIRTUAL + 1}",
        f"{signal.ITIMER_PROF} True {signal.ITIMER_PROF + 1}",
        f"virtual True {signal.ITIMER_VIRTUAL + 1}",
        f"ITIMER_PROF True {signal.ITIMER_PROF + 1}",
    ]


@pytest.mark.parametrize("usec, which, exc, message", [
    (1000, 7, ValueError, "unknown alarm type 7: use signal.ITIMER_REAL"),
    (1000, "wall", ValueError, "unknown alarm type 'wall'"),
    (1000, True, ValueError, "unknown alarm type True"),
    ("1000", signal.ITIMER_REAL, TypeError, "usec must be a number of microseconds, not '1000'"),
    (True, signal.ITIMER_REAL, TypeError, "usec must be a number of microseconds, not True"),
])
def test_alarm_refuses_bad_arguments(usec, which, exc, message):
    # Each of these is refused before any timer is touched, so it is safe in the test process.
    with pytest.raises(exc, match=message):
        alarm(usec, which)
