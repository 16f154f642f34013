"""Fixtures of the unit tests: a Process factory that cleans up, signal-state hygiene, a private
queue-record directory and a queue for children's reports."""

from __future__ import annotations

import signal
from typing import Any, Callable, Iterator

import pytest

import procmagic
from procmagic import Process
from procmagic.core import queue as pmq
from procmagic.core import queue_registry

from .helpers import _cleanup


@pytest.fixture
def spawn() -> Iterator[Callable[..., Process]]:
    """``spawn(target, **kwargs)`` makes a Process; at teardown any left running is killed and
    reaped, and every pipe closed (before the leak check runs)."""
    made: list[Process] = []

    def make(target: Callable[[Process], Any], *args: Any, **kwargs: Any) -> Process:
        proc = Process(target, *args, **kwargs)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        _cleanup(proc)


@pytest.fixture
def fresh_wait() -> Iterator[None]:
    """Drain statuses that earlier tests left unreported, so wait() sees only this test's."""
    while procmagic.wait(blocking=False) is not None:
        pass
    yield
    while procmagic.wait(blocking=False) is not None:
        pass


@pytest.fixture(autouse=True)
def restore_signal_handlers() -> Iterator[None]:
    """Tests that install handlers in the test process get the previous ones back."""
    saved = {}
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        saved[sig] = signal.getsignal(sig)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@pytest.fixture
def queue_records(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private queue-record directory for this test (children and subprocesses inherit it)."""
    path = tmp_path / "queues"
    path.mkdir(mode=0o700)
    monkeypatch.setenv(queue_registry.ENV, str(path))
    return str(path)


@pytest.fixture
def results(queue_records: str) -> Iterator[pmq.Queue]:
    """A queue the children (a pool's workers) push their reports to; freed at teardown."""
    queue = pmq.attach(None)
    yield queue
    queue.free()
