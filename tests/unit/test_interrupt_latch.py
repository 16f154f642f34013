"""The foreground spawn's interrupt latch (procmagic.kernel.interrupts), without a kernel: SIGINT
only counts while it is in place, the previous handler is back after it, and after a spawn an
interrupt ended, more presses within ECHO seconds are dropped before SIGINT is handed back."""

from __future__ import annotations

import os
import signal

import pytest

from procmagic.kernel import interrupts
from procmagic.kernel.interrupts import InterruptLatch

from .helpers import wait_until


def _interrupt_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # Python runs the handler at a bytecode boundary of this thread
        pass


@pytest.fixture(autouse=True)
def _default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_only_counts_while_the_latch_is_in_place_and_the_handler_is_back_after_it():
    with InterruptLatch() as latch:
        _interrupt_self()
        _interrupt_self()
        wait_until(lambda: latch.count == 2, what="two interrupts counted")
        assert latch.take() == 2 and latch.take() == 0
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # the echo, for a moment
    with InterruptLatch():
        pass  # not interrupted: the handler it found is put back as it was
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_after_an_interrupted_spawn_the_echo_drops_more_presses_then_hands_sigint_back(monkeypatch):
    monkeypatch.setattr(interrupts, "ECHO", 600.0)  # no race with the clock on a loaded machine
    with InterruptLatch() as latch:
        _interrupt_self()
        wait_until(lambda: latch.count == 1, what="the interrupt counted")
    echo = signal.getsignal(signal.SIGINT)
    for _ in range(3):
        _interrupt_self()  # the same request again: dropped, no KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is echo
    echo.until = 0.0  # the echo's time is over
    with pytest.raises(KeyboardInterrupt):
        _interrupt_self()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_latch_over_an_ignored_sigint_leaves_it_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with InterruptLatch() as latch:
        _interrupt_self()
        wait_until(lambda: latch.count == 1, what="the interrupt counted")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_handler_of_the_users_own_is_put_back_as_it_was_even_after_an_interrupt():
    heard: list[int] = []

    def mine(signum, frame):
        heard.append(signum)

    signal.signal(signal.SIGINT, mine)
    with InterruptLatch() as latch:
        _interrupt_self()
        wait_until(lambda: latch.count == 1, what="the interrupt counted")
    assert signal.getsignal(signal.SIGINT) is mine
    _interrupt_self()
    wait_until(lambda: heard == [signal.SIGINT], what="the user's handler called")
