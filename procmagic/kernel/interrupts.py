"""The notebook's interrupt while a spawn starts and runs in the foreground: counted, never raised.

A ``KeyboardInterrupt`` can be raised between any two bytecodes of the main thread. Raised while
``%%spawn`` forks its children, or between the fork and the loop that waits for them, it would
leave children nobody waits for; raised inside the code that handles the previous one, it would
escape the handler. So while a spawn starts and runs in the foreground, SIGINT only counts and
writes a byte to a pipe that the foreground loop polls with the children's exit fds; the loop
forwards each interrupt to the children (the stop ladder), and the cell raises
``KeyboardInterrupt`` once the children are reaped and their output published.
"""

from __future__ import annotations

import os
import signal as _signal
import threading
from typing import Any

__all__ = ["InterruptLatch"]


class InterruptLatch:
    """``with InterruptLatch() as latch:`` SIGINT increments ``latch.count`` and makes ``latch.fd``
    readable; ``take()`` returns the interrupts not yet taken. The previous handler is back after
    the block. Off the main thread (where no signal handler can be set) it counts nothing."""

    def __init__(self) -> None:
        self.count = 0
        self.taken = 0
        self.fd: int | None = None
        self._write_fd: int | None = None
        self._saved: Any = None
        self._active = False

    def __enter__(self) -> "InterruptLatch":
        if threading.current_thread() is not threading.main_thread():
            return self
        self.fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._saved = _signal.signal(_signal.SIGINT, self._on_sigint)
        self._active = True
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self._write_fd is not None:
            try:
                os.write(self._write_fd, b"!")
            except OSError:  # full: the loop is behind anyway, and the count is kept
                pass

    def take(self) -> int:
        """Interrupts since the last ``take()`` (and the pipe emptied)."""
        if self.fd is not None:
            try:
                while os.read(self.fd, 512):
                    pass
            except OSError:
                pass
        new, self.taken = self.count - self.taken, self.count
        return new

    def __exit__(self, *exc: object) -> None:
        if self._active:
            _signal.signal(_signal.SIGINT, self._saved if self._saved is not None else _signal.default_int_handler)
            self._active = False
        for fd in (self.fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self._write_fd = None
