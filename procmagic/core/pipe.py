"""The pipe between a parent and its child: a Unix socketpair, stream or message-preserving.

``"dgram"`` is a ``SOCK_SEQPACKET`` pair, not ``SOCK_DGRAM`` as in swoole: both keep message
boundaries, but a ``SOCK_DGRAM`` pair never reports end-of-file when the peer dies, so a read
after the child's death blocks forever (swoole's bug). ``SOCK_SEQPACKET`` reports it.
"""

from __future__ import annotations

import errno
import numbers
import os
import select
import socket
import time
from typing import Any

from . import timing
from .errors import NoPipe

__all__ = ["PIPE_TYPES", "pipe_kind", "make_pair", "recv", "send", "receive", "too_big", "ExitWatch", "MAX_READ", "NOW"]

PIPE_TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_SEQPACKET}
_SWOOLE_NUMBERS = {0: None, 1: "stream", 2: "dgram"}

#: read() never asks for more than this in one call (swoole caps at 64 KiB).
MAX_READ = 1 << 20

_PEEK_SIZE = int(socket.MSG_PEEK | socket.MSG_TRUNC)  # a plain int: enum arithmetic costs ~1 us a call
_NOW = NOW = int(socket.MSG_DONTWAIT)
_PEEK_BUFFER = bytearray(1)  # MSG_TRUNC reports the whole length; the byte itself is never used


def pipe_kind(pipe: Any) -> str | None:
    """Normalise the ``pipe`` argument: "stream", "dgram" or None (swoole's 1, 2, 0 accepted)."""
    if pipe is None:
        return None
    if isinstance(pipe, str):
        key = pipe.strip().lower()
        if key in ("none", ""):
            return None
        if key in PIPE_TYPES:
            return key
    elif isinstance(pipe, numbers.Integral) and not isinstance(pipe, bool) and int(pipe) in _SWOOLE_NUMBERS:
        return _SWOOLE_NUMBERS[int(pipe)]
    raise ValueError(
        f"unknown pipe type {pipe!r}: use 'stream' (a byte stream), 'dgram' (messages keep their "
        "boundaries) or None (no pipe)"
    )


def make_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    """(parent end, child end). Both are close-on-exec; the child's end is dup2'd when redirecting."""
    return socket.socketpair(socket.AF_UNIX, PIPE_TYPES[kind])


def _wait(fd: int, events: int, deadline: float | None, also: int | None = None) -> tuple[bool, bool]:
    """Wait until ``fd`` is ready; returns (fd ready, ``also`` ready)."""
    poller = select.poll()
    poller.register(fd, events)
    if also is not None:
        poller.register(also, select.POLLIN)
    while True:
        ms = timing.poll_ms(deadline)
        ready = dict(poller.poll(ms))
        if ready or ms == 0:
            return fd in ready, also is not None and also in ready
        if deadline is not None and time.monotonic() >= deadline:
            return False, False


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def recv(
    sock: socket.socket | None,
    size: Any,
    timeout: float | None,
    blocking: bool,
    message: bool,
    exit_fd: int | None = None,
    exited: bool = False,
) -> bytes:
    """One receive of at most ``size`` bytes; b"" at end of file.

    ``exit_fd`` is the child's pidfd, watched while waiting: once the child has exited and no
    data is left, the read answers b"" rather than waiting on a descendant that kept the pipe.
    ``exited`` says the child was reaped already (its pidfd is closed): only what is in the
    pipe now is read, else b"".
    """
    if sock is None or sock.fileno() < 0:
        raise NoPipe("no pipe to read from: this Process has pipe=None, or its pipe was closed")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"size must be an int number of bytes, not {size!r}")
    if size <= 0:
        raise ValueError(f"size must be at least 1 byte, got {size}")
    size = min(int(size), MAX_READ)
    try:
        if blocking and timeout is None and exit_fd is None and not exited and sock.getblocking():
            # Nothing but the pipe bounds the wait (in the child, say): the receive is the wait.
            return receive(sock, size, message, 0)
        # Something else bounds it (a time-out, the child's exit); data already in the pipe
        # needs no poll, so try first and poll only when the pipe is empty.
        return receive(sock, size, message, _NOW)
    except BlockingIOError:
        pass
    except ConnectionResetError:
        return b""
    deadline = time.monotonic() if not blocking or exited else _deadline(timeout)
    ready, exit_seen = _wait(sock.fileno(), select.POLLIN, deadline, exit_fd)
    if not ready:
        if exited:
            return b""
        if exit_seen:
            ready, _ = _wait(sock.fileno(), select.POLLIN, time.monotonic())
            if not ready:
                return b""
        elif not blocking:
            raise BlockingIOError(errno.EAGAIN, "no data in the pipe yet (the pipe is non-blocking)")
        else:
            raise TimeoutError(f"no data arrived in the pipe within {timeout} s")
    try:
        return receive(sock, size, message, 0)
    except ConnectionResetError:
        return b""


def receive(sock: socket.socket, size: int, message: bool, flags: int) -> bytes:
    """One ``recv`` of at most ``size`` bytes with ``flags``; on a message pipe (``message``),
    a peek at the next message's length first, so one larger than ``size`` stays in the pipe
    whole (ValueError) instead of being cut."""
    if message:  # a message larger than size stays in the pipe, whole
        whole = sock.recv_into(_PEEK_BUFFER, 1, _PEEK_SIZE | flags)
        if whole > size:
            raise too_big(whole, size)
    return sock.recv(size, flags)


def send(sock: socket.socket | None, data: Any, timeout: float | None, blocking: bool, message: bool,
         sent: int = 0) -> int:
    """Write all of ``data`` (one message on a dgram pipe); returns the bytes written.

    ``sent``: bytes of ``data`` (a non-empty bytes) already written by the caller's own first
    non-blocking send (``Process.write``'s fast path); the rest goes out here."""
    if sock is None or (not sent and sock.fileno() < 0):
        raise NoPipe("no pipe to write to: this Process has pipe=None, or its pipe was closed")
    if sent and message:
        return sent  # a message goes whole or not at all
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
    view = memoryview(data).cast("B")
    if not len(view):
        raise ValueError("data to write is empty: an empty write would read as end-of-file")
    deadline = time.monotonic() if not blocking else _deadline(timeout)
    fd = sock.fileno()
    try:
        while sent < len(view):
            try:  # send first: a pipe with room needs no poll
                n = sock.send(view[sent:], _NOW)
            except BlockingIOError:
                ready, _ = _wait(fd, select.POLLOUT, deadline)
                if not ready:
                    if sent or not blocking:
                        if not blocking and not sent:
                            raise BlockingIOError(errno.EAGAIN, "the pipe is full (the pipe is non-blocking)") from None
                        return sent
                    raise TimeoutError(f"the pipe stayed full for {timeout} s: the other side is not reading") from None
                continue
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise ValueError(
                        f"a {len(view)}-byte message does not fit a dgram pipe (its buffer is "
                        f"{sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)} bytes); send smaller "
                        "messages or use pipe='stream'"
                    ) from None
                raise
            sent += n
            if message:
                break
    except BrokenPipeError:
        raise BrokenPipeError(
            errno.EPIPE, "the other end of the pipe is closed (the process exited or closed its pipe)"
        ) from None
    return sent


class ExitWatch:
    """The parent's blocking reads of one running child's pipe, at close to the cost of the
    system calls they need.

    A read must end when the child has exited even if a descendant still holds the child's end
    (no end of file comes then), so the parent cannot simply block in ``recv``: it waits in
    ``poll`` on the pipe and the child's pidfd, then receives. Built once per child, this keeps
    what every such read would otherwise redo: the ``poll`` object with both fds registered, and
    a copy of the pidfd of its own (``dup``), so no read needs the registry's lock to keep the
    pidfd's number from being reused under its poll (the registry closes its own copy at the
    reap). The copy is closed when this object goes (``Process.close()``, a new start, garbage
    collection: never under a read that uses it) and in forked children.

    Whether to try a non-blocking receive before polling is learnt: a failed try costs an
    exception (~1.3 us here), a poll of a pipe with data waiting ~0.5 us. After a failed try the
    next ``_RETRY`` (64) reads poll first (a ping-pong: the reader is usually there before the data);
    a try that finds data keeps trying first (a reader catching up on a full pipe).
    """

    __slots__ = ("record", "sock", "message", "pidfd", "poll", "polls_ahead", "_recv", "_peek")

    def __init__(self, record: Any, sock: socket.socket, pidfd: int | None, message: bool) -> None:
        self.record = record  # whose child: a new start() needs a new watch
        self.sock = sock
        self.message = message
        self.pidfd = -1  # without a pidfd (the child's own timed reads), only the pipe is watched
        if pidfd is not None:
            fd = os.dup(pidfd)  # the caller holds the registry's pidfd while we copy it
            self.pidfd = fd
            _watch_fds[fd] = id(self)
        self.poll = self._poller().poll
        self.polls_ahead = 0  # reads left that poll before trying to receive
        self._recv = sock.recv
        self._peek = sock.recv_into

    def _poller(self) -> Any:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        if self.pidfd >= 0:
            poller.register(self.pidfd, select.POLLIN)
        return poller

    def read(self, size: int) -> bytes:
        """One receive of at most ``size`` bytes, waiting for data or the child's exit; b"" at
        end of file or once the child has exited with nothing left in the pipe."""
        if self.polls_ahead:
            self.polls_ahead -= 1
        else:
            data = self._take(size)
            if data is not None:
                return data
            self.polls_ahead = _RETRY
        while True:
            try:
                ready = self.poll()
            except RuntimeError:  # another thread waits on this poll object now: a poll of our own
                ready = self._poller().poll()
            data = self._take(size)
            if data is not None:
                return data
            if any(fd == self.pidfd for fd, _ in ready):
                return b""  # the child has exited and nothing is left: a descendant holds its end
            # Another reader took the data first: wait again.

    def read_within(self, size: int, timeout: float) -> bytes:
        """:meth:`read` bounded by ``timeout`` seconds: TimeoutError past it, as ``recv`` says."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.polls_ahead:
            self.polls_ahead -= 1
        else:
            data = self._take(size)
            if data is not None:
                return data
            self.polls_ahead = _RETRY
        while True:
            ms = timing.poll_ms(deadline)
            try:
                ready = self.poll(ms)
            except RuntimeError:  # another thread waits on this poll object now: a poll of our own
                ready = self._poller().poll(ms)
            data = self._take(size)
            if data is not None:
                return data
            if any(fd == self.pidfd for fd, _ in ready):
                return b""  # the child has exited and nothing is left
            if not ready and (ms == 0 or time.monotonic() >= deadline):
                raise TimeoutError(f"no data arrived in the pipe within {timeout} s")

    def _take(self, size: int) -> bytes | None:
        """What the pipe holds now (b"" at end of file), or None when it is empty."""
        try:
            if self.message:
                whole = self._peek(_PEEK_BUFFER, 1, _PEEK_NOW)
                if whole > size:
                    raise too_big(whole, size)
            return self._recv(size, _NOW)  # type: ignore[no-any-return]
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return b""

    def __del__(self) -> None:
        fd = self.pidfd
        try:
            # Only our own copy: inherited at a fork, it was closed there, and its number may
            # belong to another watch since.
            if _watch_fds.get(fd) == id(self):
                del _watch_fds[fd]
                os.close(fd)
        except Exception:  # interpreter shutdown: the module's globals may be gone
            pass


_RETRY = 64
_PEEK_NOW = _PEEK_SIZE | _NOW
_watch_fds: dict[int, int] = {}  # the pidfd copies ExitWatch objects hold open here: fd -> id(watch)


def too_big(whole: int, size: int) -> ValueError:
    """The error of a read whose ``size`` is smaller than the next message (left in the pipe)."""
    return ValueError(
        f"the next message is {whole} bytes, larger than size={size}; it is still in "
        f"the pipe: read it with size>={whole}"
    )


def _close_watch_fds_in_child() -> None:
    # A child does not watch its siblings: close the copies, and forget them, so the objects
    # (inherited as they were) never close those numbers again once something else has them.
    # Nothing to do, nothing touched: every page a child writes is a copy-on-write fault.
    if not _watch_fds:
        return
    for fd in _watch_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _watch_fds.clear()


os.register_at_fork(after_in_child=_close_watch_fds_in_child)
