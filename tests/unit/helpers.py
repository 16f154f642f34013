"""Small helpers for the unit tests: bounded waits, reading a child to the end, running scripts.

Every wait here is bounded (10 to 30 s): generous enough for a noisy 2-core machine, short
enough that a hang fails the test instead of the whole run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Iterator

from procmagic import Process

#: The bound on every wait in the unit tests.
WAIT = 20.0


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} still false after {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def read_all(proc: Process, timeout: float = WAIT) -> bytes:
    """Read a child's pipe until end of file (each read bounded)."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        data = proc.read(65536, timeout=max(0.1, deadline - time.monotonic()))
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def run(target: Callable[[Process], Any], **kwargs: Any) -> tuple[Any, bytes]:
    """Start ``target`` with ``redirect=True``; return (its ExitStatus, everything it printed)."""
    proc = Process(target, redirect=True, **kwargs)
    try:
        proc.start()
        out = read_all(proc)
        return proc.join(timeout=WAIT), out
    finally:
        _cleanup(proc)


def _cleanup(proc: Process) -> None:
    """Kill and reap a Process a failing test left behind, and close its pipe."""
    if proc.pid is not None and proc.exitstatus is None:
        try:
            proc.kill("SIGKILL")
            proc.join(timeout=WAIT)
        except Exception:
            pass
    proc.close()


def python(code: str, timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter of this venv; return the completed process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        **kwargs,
    )


def pidfds() -> int:
    """How many pidfds this process has open."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[pidfd]"
        except OSError:
            pass
    return count


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (``Z`` for a zombie), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data.rpartition(")")[2].split()[0]


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie waiting for its parent)."""
    return proc_state(pid) in (None, "Z", "X")


@contextlib.contextmanager
def deadline(seconds: float = WAIT) -> Iterator[None]:
    """Raise TimeoutError in this process if the block takes longer than ``seconds``."""

    def expire(signo: int, frame: Any) -> None:
        raise TimeoutError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout's alarm, if any
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - started)))
