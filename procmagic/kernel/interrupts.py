"""The notebook's interrupt while a spawn starts and runs in the foreground: counted, never raised.

A ``KeyboardInterrupt`` can be raised between any two bytecodes of the main thread. Raised while
``%%spawn`` forks its children, or between the fork and the loop that waits for them, it would
leave children nobody waits for; raised inside the code that handles the previous one, it would
escape the handler. So while a spawn starts and runs in the foreground, SIGINT only counts and
writes a byte to a pipe that the foreground loop polls with the children's exit fds; the loop
forwards each interrupt to the children (the stop ladder), and the cell raises
``KeyboardInterrupt`` once the children are reaped and their output published.

A spawn that an interrupt ended leaves an *echo* handler for ``ECHO`` seconds: more presses of
the button (a storm of clicks) are the same request, already served, and are dropped. Raised
instead just after the cell, they would land in the kernel's own code that finishes the
request (ipykernel 6 dies of a ``KeyboardInterrupt`` raised while it logs the previous one).
The echo then hands SIGINT back to the handler it replaced; the kernel's next request sets its
own in any case. Only Python's default handler (the one that raises ``KeyboardInterrupt``) gets
an echo: a handler of the user's own is put back as it was.
"""

from __future__ import annotations

import os
import signal as _signal
import threading
import time
from typing import Any, Callable

__all__ = ["InterruptLatch", "ECHO"]

ECHO = 0.25  # seconds after an interrupted spawn during which more SIGINTs are dropped


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
        if isinstance(self._saved, _Echo):  # a new spawn: the last one's echo is over
            self._saved = self._saved.handler
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
            saved = self._saved if self._saved is not None else _signal.default_int_handler
            if self.count and saved is _signal.default_int_handler:  # not a handler of the user's own
                saved = _Echo(saved, time.monotonic() + ECHO)
            _signal.signal(_signal.SIGINT, saved)
            self._active = False
        for fd in (self.fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self._write_fd = None


class _Echo:
    """SIGINT's handler just after a spawn an interrupt ended: drops what comes before
    ``until``, then puts ``handler`` back and lets it take the signal."""

    def __init__(self, handler: Callable[[int, Any], Any], until: float) -> None:
        self.handler = handler
        self.until = until

    def __call__(self, signum: int, frame: Any) -> Any:
        if time.monotonic() < self.until:
            return None
        handler = self.handler
        if _signal.getsignal(_signal.SIGINT) is self:
            _signal.signal(_signal.SIGINT, handler)
        return handler(signum, frame)
