"""The pipe between a parent and its child: a Unix socketpair, stream or message-preserving.

``"dgram"`` is a ``SOCK_SEQPACKET`` pair, not ``SOCK_DGRAM`` as in swoole: both keep message
boundaries, but a ``SOCK_DGRAM`` pair never reports end-of-file when the peer dies, so a read
after the child's death blocks forever (swoole's bug). ``SOCK_SEQPACKET`` reports it.
"""

from __future__ import annotations

import errno
import numbers
import select
import socket
import time
from typing import Any

from . import timing
from .errors import NoPipe

__all__ = ["PIPE_TYPES", "pipe_kind", "make_pair", "recv", "send", "MAX_READ"]

PIPE_TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_SEQPACKET}
_SWOOLE_NUMBERS = {0: None, 1: "stream", 2: "dgram"}

#: read() never asks for more than this in one call (swoole caps at 64 KiB).
MAX_READ = 1 << 20

_PEEK_SIZE = int(socket.MSG_PEEK | socket.MSG_TRUNC)  # a plain int: enum arithmetic costs ~1 us a call
_NOW = int(socket.MSG_DONTWAIT)
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
            return _receive(sock, size, message, 0)
        # Something else bounds it (a time-out, the child's exit); data already in the pipe
        # needs no poll, so try first and poll only when the pipe is empty.
        return _receive(sock, size, message, _NOW)
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
        return _receive(sock, size, message, 0)
    except ConnectionResetError:
        return b""


def _receive(sock: socket.socket, size: int, message: bool, flags: int) -> bytes:
    if message:  # a message larger than size stays in the pipe, whole
        whole = sock.recv_into(_PEEK_BUFFER, 1, _PEEK_SIZE | flags)
        if whole > size:
            raise ValueError(
                f"the next message is {whole} bytes, larger than size={size}; it is still in "
                f"the pipe: read it with size>={whole}"
            )
    return sock.recv(size, flags)


def send(sock: socket.socket | None, data: Any, timeout: float | None, blocking: bool, message: bool) -> int:
    """Write all of ``data`` (one message on a dgram pipe); returns the bytes written."""
    if sock is None or sock.fileno() < 0:
        raise NoPipe("no pipe to write to: this Process has pipe=None, or its pipe was closed")
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
    sent = 0
    if type(data) is bytes and data:
        try:  # the common case, a pipe with room: one system call, no views, no poll
            sent = sock.send(data, _NOW)
        except OSError:
            pass  # full (EAGAIN), or an error the general path below meets again and explains
        if sent == len(data) or (message and sent):
            return sent
    view = memoryview(data).cast("B")
    if not len(view):
        raise ValueError("data to write is empty: an empty write would read as end-of-file")
    deadline = time.monotonic() if not blocking else _deadline(timeout)
    fd = sock.fileno()
    try:
        while sent < len(view):
            try:  # send first: a pipe with room needs no poll
                n = sock.send(view[sent:], socket.MSG_DONTWAIT)
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
