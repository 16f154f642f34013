"""A Process's pipe and message queue: swoole's ``write``, ``read``, ``close``, ``useQueue``,
``push``, ``pop``, ``statQueue`` and ``freeQueue`` (mixed into ``Process``)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any, Callable

from . import pipe as _pipe
from .pipe import MAX_READ
from .pipe import NOW as _NOW
from .pipe import receive as _receive
from . import timing
from .errors import NoPipe, NoQueue, ProcessStateError
from .reaper import registry

if TYPE_CHECKING:
    from .record import ChildRecord

__all__ = ["PipeMixin", "QueueMixin"]

# The record of the child's own timed-read watch: never a ChildRecord, so reads without a
# time-out in the child (one blocking receive, no poll) never take that watch for theirs.
_CHILD_SIDE: Any = object()


class PipeMixin:
    """The socketpair between parent and child: each side holds its own end."""

    _sock: socket.socket | None
    _child_sock: socket.socket | None
    _kind: str | None
    _timeout: float | None
    _blocking: bool
    _in_child: bool
    _reader_claim: str | None
    _record: "ChildRecord | None"
    # The parent's blocking reads of the running child (built at the first one).
    _exit_watch: _pipe.ExitWatch | None = None

    @property
    def pipe(self) -> int | None:
        """This side's pipe fd: the parent's end in the parent, the child's end in the child."""
        return self._sock.fileno() if self._sock is not None and self._sock.fileno() >= 0 else None

    @property
    def pipe_socket(self) -> socket.socket | None:
        """This side's end of the pipe as a socket (None without a pipe, or once closed)."""
        return self._sock if self._sock is not None and self._sock.fileno() >= 0 else None

    @property
    def pipe_type(self) -> str | None:
        return self._kind

    def claim_reader(self, reason: str) -> socket.socket:
        """Declare that something else reads this pipe in the parent (the kernel integration
        streams a ``--redirect`` child's output into the cell): ``read()`` then raises
        ``ProcessStateError(reason)``. Returns the parent's end, to read it."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must be a non-empty str saying who reads the pipe, not {reason!r}")
        if self._in_child:
            raise ProcessStateError("claim_reader() is for the parent; the child reads its own end")
        sock = self.pipe_socket
        if sock is None:
            raise NoPipe("no pipe to claim: this Process has pipe=None, or its pipe was closed")
        self._reader_claim = reason
        return sock

    def close_if_drained(self) -> bool:
        """Close this side's pipe unless messages are still waiting in it (without reading
        them); True when it was closed (or was closed already). Never blocks."""
        sock = self.pipe_socket
        if sock is None:
            return True
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False  # nothing now, but the pipe is still open: a descendant holds it
        except OSError:
            data = b""
        if data:
            return False
        self.close()
        return True

    def write(self, data: bytes | str) -> int:
        """Write ``data`` (str as UTF-8) to the pipe: one message on a dgram pipe, all of it on a
        stream pipe. Returns the bytes written. Empty data is refused."""
        sock = self._sock
        if type(data) is bytes and data and sock is not None:
            # The common case, a pipe with room: one system call, no views, no poll.
            try:
                sent = sock.send(data, _NOW)
            except OSError:
                sent = 0  # full (EAGAIN), or an error the general path meets again and explains
            if sent == len(data):
                return sent
            return _pipe.send(sock, data, self._timeout, self._blocking, self._kind == "dgram", sent)
        return _pipe.send(sock, data, self._timeout, self._blocking, self._kind == "dgram")

    def read(self, size: int = 8192, timeout: float | None = None) -> bytes:
        """One receive of at most ``size`` bytes (one message on a dgram pipe); b"" at end of file.

        Waits up to ``timeout`` seconds (default: ``set_timeout()``'s, else forever), then raises
        TimeoutError. In the parent, once the child has exited and nothing is left, returns b""
        instead of waiting.
        """
        # The common case in a few checks: a blocking read of an int size with no time-out.
        # Anything else, and every error, goes to the general path (_read).
        if timeout is not None or self._timeout is not None:
            return self._read_within(size, timeout)
        if type(size) is int and size > 0 and self._blocking:
            sock = self._sock
            watch = self._exit_watch
            if (watch is not None and watch.sock is sock and watch.record is self._record
                    and self._reader_claim is None and sock.fileno() >= 0):  # type: ignore[union-attr]
                return watch.read(size if size < MAX_READ else MAX_READ)
            if sock is not None:
                if self._in_child:  # nothing but the pipe bounds the wait: the receive is the wait
                    try:
                        return _receive(sock, size if size < MAX_READ else MAX_READ, self._kind == "dgram", 0)
                    except BlockingIOError:
                        pass  # the fd was made non-blocking under us: the general path polls
                    except ConnectionResetError:
                        return b""
                    except OSError as exc:
                        if exc.errno != errno.EBADF:
                            raise
                elif self._reader_claim is None and sock.fileno() >= 0:
                    watch = self._watch_exit(sock)
                    if watch is not None:
                        return watch.read(size if size < MAX_READ else MAX_READ)
        return self._read(size, timeout)

    def _read_within(self, size: Any, timeout: Any) -> bytes:
        """read() with a time-out (given, or set_timeout()'s): through the running child's
        ExitWatch when it can, like a read without one; else the general path."""
        sock = self._sock
        if (type(size) is int and size > 0 and self._blocking and sock is not None
                and (self._reader_claim is None or self._in_child) and sock.fileno() >= 0):
            seconds = timing.seconds(timeout) if timeout is not None else self._timeout
            if seconds is not None:
                watch = self._exit_watch
                record = _CHILD_SIDE if self._in_child else self._record
                if watch is None or watch.sock is not sock or watch.record is not record:
                    if self._in_child:  # the child's own end: only the pipe to watch
                        watch = self._exit_watch = _pipe.ExitWatch(_CHILD_SIDE, sock, None, self._kind == "dgram")
                    else:
                        watch = self._watch_exit(sock)
                if watch is not None:
                    return watch.read_within(size if size < MAX_READ else MAX_READ, seconds)
        return self._read(size, timeout)

    def _watch_exit(self, sock: socket.socket) -> "_pipe.ExitWatch | None":
        """The running child's ExitWatch for blocking reads (built now, or the one it has);
        None when there is no running child with a pidfd to watch."""
        record = self._record
        if record is None or record.status is not None:
            return None
        fd = registry.hold(record)  # while we copy it: a reap on another thread cannot close it
        if fd is None:
            return None
        try:
            watch = self._exit_watch = _pipe.ExitWatch(record, sock, fd, self._kind == "dgram")
        except OSError:  # out of fds for the copy, say: the general path needs none
            return None
        finally:
            registry.release(record)
        return watch

    def _read(self, size: Any, timeout: Any) -> bytes:
        """read() in general: every check, every mode, every error."""
        if self._reader_claim is not None and not self._in_child:
            raise ProcessStateError(self._reader_claim)
        seconds = timing.seconds(timeout) if timeout is not None else self._timeout
        record = None if self._in_child else self._record
        if record is None or record.status is not None:
            return _pipe.recv(self._sock, size, seconds, self._blocking, self._kind == "dgram", None,
                              record is not None)
        # The pidfd is watched while waiting; held, so a reap on another thread cannot close it
        # (and let its number be reused) under this poll.
        fd = registry.hold(record)
        try:
            return _pipe.recv(self._sock, size, seconds, self._blocking, self._kind == "dgram", fd, False)
        finally:
            if fd is not None:
                registry.release(record)

    def set_blocking(self, blocking: bool = True) -> None:
        """Non-blocking: read() and write() raise BlockingIOError instead of waiting."""
        if not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True or False, not {blocking!r}")
        self._blocking = blocking

    def set_timeout(self, seconds: float | None) -> None:
        """Default time-out of read() and write() in seconds (None: wait forever)."""
        self._timeout = timing.seconds(seconds)

    def close(self, which: str = "both") -> None:
        """Close this side's pipe: ``"read"``, ``"write"`` (the other side reads end of file, e.g. a
        redirected child's stdin) or ``"both"`` (closes the fd)."""
        if which not in ("read", "write", "both"):
            raise ValueError(f"which must be 'read', 'write' or 'both', not {which!r}")
        if which == "both":
            self._exit_watch = None  # its pidfd copy closes once no read uses it
            self._close_child_ends()  # never started: the ends meant for the child go too
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            if which == "both":
                self._forget_if_done()
                return
            raise NoPipe(f"no pipe to close for {which}: this Process has pipe=None, or its pipe was closed")
        if which == "both":
            sock.close()
            self._sock = None
            self._forget_if_done()
            return
        try:
            sock.shutdown(socket.SHUT_RD if which == "read" else socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already: nothing left to shut

    def _close_child_ends(self) -> None:
        raise NotImplementedError  # Process defines it

    def _forget_if_done(self) -> None:
        raise NotImplementedError  # ChildSideMixin defines it


class QueueMixin:
    """The SysV message queue (see :mod:`procmagic.core.queue`)."""

    _queue: Any
    _in_child: bool
    _record: "ChildRecord | None"
    id: int

    @property
    def queue(self) -> Any:
        """The queue handle ``use_queue()`` attached (a :class:`procmagic.core.queue.Queue`), or None."""
        return self._queue

    def use_queue(self, key: int | None = None, mode: str = "balance", nowait: bool = False,
                  capacity: int | None = None, **options: Any) -> Any:
        """Attach a SysV message queue (swoole's useQueue); see :mod:`procmagic.core.queue`."""
        from . import queue as _queue

        if key is None and self._record is not None and not self._in_child:
            # a private queue made now exists only here: the running child can never find it
            raise ProcessStateError(
                f"use_queue() after start(): process {self.id} (pid {self._record.pid}) is already running and "
                "would never see a new private queue made now; call use_queue() before start(), or pass it a "
                "queue it already has: use_queue(q) with a Queue made before the fork, or an int key the child "
                "attaches to as well")
        self._queue = _queue.attach(self, key=key, mode=mode, nowait=nowait, capacity=capacity, **options)
        return self._queue

    def _need_queue(self, what: str) -> Any:
        if self._queue is None:
            raise NoQueue(f"no message queue: call use_queue() before {what}()")
        return self._queue

    # push and pop are the queue handle's own closures (Queue.push/pop): a method forwarding to
    # them would cost two more Python calls per message, a third of its whole cost.
    @property
    def push(self) -> Callable[..., None]:
        """``push(data, *, to=None)``: send one message on the queue (see use_queue)."""
        queue = self._queue
        return self._no_queue("push") if queue is None else queue.push  # type: ignore[no-any-return]

    @property
    def pop(self) -> Callable[..., bytes]:
        """``pop(size=None)``: receive one message from the queue (see use_queue)."""
        queue = self._queue
        return self._no_queue("pop") if queue is None else queue.pop  # type: ignore[no-any-return]

    def _no_queue(self, what: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self._need_queue(what)

        return refuse

    def stat_queue(self) -> Any:
        """The queue's state: messages and bytes waiting, capacity, last sender and receiver."""
        return self._need_queue("stat_queue").stat()

    def free_queue(self) -> None:
        """Remove the queue from the system."""
        self._need_queue("free_queue").free()
