"""A signal sent the moment start() returns reaches the child's own handler (Process(signals=)),
never the default action (swoole's bug) nor the parent's handler copied into the child."""

from __future__ import annotations

import os
import signal

import pytest

from procmagic import Process


def test_a_signal_sent_right_after_start_reaches_the_declared_handler():
    for _ in range(20):
        def child(proc):
            import time
            deadline = time.monotonic() + 20
            while not seen and time.monotonic() < deadline:
                time.sleep(0.001)
            proc.write(b"handled" if seen else b"missed")

        seen: list[int] = []
        p = Process(child, signals={signal.SIGUSR1: lambda signo: seen.append(signo)})
        p.start()
        p.kill(signal.SIGUSR1, group=False)  # at once: the child may not have run a bytecode yet
        assert p.read(timeout=30) == b"handled"
        status = p.join(timeout=30)
        assert status.code == 0 and status.signal is None
        p.close()


def test_the_parents_handler_never_runs_in_the_child():
    calls = []
    old = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(os.getpid()))
    try:
        p = Process(lambda proc: __import__("time").sleep(30), pipe=None)
        p.start()
        p.kill(signal.SIGUSR2, group=False)
        status = p.join(timeout=30)
        assert status.signal == signal.SIGUSR2  # the default action, not the parent's handler
    finally:
        signal.signal(signal.SIGUSR2, old)


@pytest.mark.parametrize("signals, error, text", [
    ({signal.SIGKILL: print}, ValueError, "cannot have a handler"),
    ({signal.SIGUSR1: 42}, TypeError, "must be callable"),
    ([signal.SIGUSR1], TypeError, "must be a mapping"),
    ({"SIGNOPE": print}, ValueError, "unknown signal name"),
])
def test_bad_signals_are_refused_before_forking(signals, error, text):
    with pytest.raises(error, match=text):
        Process(lambda proc: None, signals=signals)
