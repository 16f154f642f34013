"""One process's handle on a SysV message queue: :class:`Queue` (see :mod:`procmagic.core.queue`)."""

from __future__ import annotations

import errno
import numbers
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import sysv_ipc

from . import queue_hot as _hot
from . import queue_limits as _limits
from . import queue_registry as _registry
from .errors import NoQueue, QueueEmpty, QueueFull

__all__ = ["Queue", "QueueStat", "PARENT", "BALANCE_TYPE", "handles"]

#: The type of messages addressed to the parent (the process holding the Process objects): the
#: largest type sysv_ipc can send. Process ids count up from 1 and would reach it only after
#: 2**31 - 2 forks from one process.
PARENT = 2**31 - 1
#: The type of every message pushed in balance mode (sysv_ipc's default, so raw sysv_ipc
#: programs interoperate). Balance consumers take any type, so it routes nothing.
BALANCE_TYPE = 1
_MAX_TYPE = 2**31 - 1  # sysv_ipc passes the type as a C int

_SysvError = sysv_ipc.Error  # base class; raised as itself only for "Signaled while waiting"
_Failures = _hot.FAILURES
#: Every live handle in this process (the fork hook gives a child's handles its identity).
handles: "weakref.WeakSet[Queue]" = weakref.WeakSet()


class _Shared:
    """What all handles on one queue in this process share: the sysv_ipc object and its identity."""

    __slots__ = ("mq", "id", "key", "uid", "ctime", "limit", "receive_size", "owner_pid", "freed", "handles",
                 "__weakref__")

    def __init__(self, mq: Any, limit: int, owner_pid: int | None) -> None:
        self.mq = mq
        self.id: int = mq.id
        self.key: int = mq.key
        self.uid: int = mq.cuid
        self.ctime: int = mq.last_change_time
        self.limit = limit
        # The max_message_size the sysv_ipc object was made with (it receives up to that many
        # bytes; it does not say it): the C path's msgrcv asks for the same.
        self.receive_size = limit
        self.owner_pid = owner_pid  # set when this process created the queue
        self.freed = False
        self.handles: "weakref.WeakSet[Queue]" = weakref.WeakSet()


@dataclass(frozen=True)
class QueueStat:
    """A queue's state (``stat_queue()``). Sizes are in bytes, times are epoch seconds or None."""

    id: int
    key: int
    messages: int
    bytes: int | None  # None where /proc/sysvipc/msg cannot be read
    capacity: int
    max_message_size: int
    last_sender_pid: int | None
    last_send_time: float | None
    last_receiver_pid: int | None
    last_receive_time: float | None


class Queue:
    """One process's handle on a SysV message queue; see the module documentation.

    ``push(data, *, to=None)`` and ``pop(size=None)`` are built per handle (the C accelerator's
    methods, or closures over its routing and limits: no attribute lookups on the hot path, see
    :mod:`procmagic.core.queue_hot`);
    their documentation is :meth:`_push_doc` and :meth:`_pop_doc`. ``Process.push`` and
    ``Process.pop`` hand out these same closures.
    """

    __slots__ = ("_shared", "process", "mode", "nowait", "me", "peer", "_balance", "_block", "_push_type",
                 "_pop_type", "_limit", "_send", "_receive", "push", "pop", "__weakref__")

    push: Callable[..., None]
    pop: Callable[..., bytes]

    def __init__(self, shared: _Shared, proc: Any, mode: str, nowait: bool, me: int, peer: int | None) -> None:
        self._shared = shared
        self.process = proc  # the Process this handle speaks for (None: this process alone)
        self.mode = mode
        self.nowait = nowait
        self._balance = mode == "balance"
        self._block = not nowait
        self._limit = shared.limit
        self._send = shared.mq.send
        self._receive = shared.mq.receive
        self._set_identity(me, peer)
        shared.handles.add(self)
        handles.add(self)

    def _set_identity(self, me: int, peer: int | None) -> None:
        self.me = me  # the type this handle pops in orient mode
        self.peer = peer  # where push() sends without to= in orient mode
        self._pop_type = 0 if self._balance else me
        self._push_type = BALANCE_TYPE if self._balance else (peer or 0)
        self._build()

    def _set_limit(self, limit: int) -> None:
        self._limit = limit
        self._build()

    # -- the hot path --------------------------------------------------------------------------
    def _build(self) -> None:
        push, pop = _hot.make_hot_path(self)
        if _hot.accelerated():  # the C methods carry the same text in the extension
            self.push, self.pop = push, pop
            return
        push.__doc__ = self._push_doc.__doc__
        pop.__doc__ = self._pop_doc.__doc__
        self.push, self.pop = push, pop

    def _push_doc(self) -> None:
        """Put one message (bytes, or str as UTF-8) on the queue.

        Waits while the queue is full (``nowait``: raises QueueFull). Empty data, or data over
        :attr:`max_message_size`, raises ValueError. ``to=`` (orient mode) names the receiver: a
        Process, its id, or PARENT. A signal while waiting never loses the message: if its
        handler raises (KeyboardInterrupt), nothing was sent; otherwise the push goes on waiting.
        """

    def _pop_doc(self) -> None:
        """Take one message: the oldest of any type (balance) or the oldest for this process
        (orient). Waits for one (``nowait``: raises QueueEmpty); a signal whose handler raises
        (KeyboardInterrupt) stops the wait and leaves the queue as it was.

        ``size`` is the largest message the caller accepts. Messages are never truncated: a
        longer one is still taken off the queue, and the ValueError raised carries it as
        ``.data``.
        """

    def _push_slow(self, data: Any, to: Any) -> None:
        mtype = self._push_type if to is None else self._route(to)
        if not mtype:
            raise self._no_peer()
        if data.__class__ is not bytes:
            data = _hot.as_bytes(data)
        n = len(data)
        if not 0 < n <= self._limit:
            raise self._bad_size(n)
        try:
            self._send(data, self._block, mtype)
        except _Failures as exc:
            self._send_again(exc, data, mtype)
        _hot.count_push(n)

    # -- identity ------------------------------------------------------------------------------
    @property
    def id(self) -> int:
        """The kernel's msqid (``ipcs -q``)."""
        return self._shared.id

    @property
    def key(self) -> int:
        """The IPC key: 0 (IPC_PRIVATE) for a private queue. Join a private queue by passing
        this Queue itself: ``other.use_queue(queue)``."""
        return self._shared.key

    @property
    def max_message_size(self) -> int:
        """The largest message push() takes: kernel.msgmax, or the capacity when smaller."""
        return self._limit

    @property
    def capacity(self) -> int:
        """How many bytes of messages the queue holds before push() waits (or raises QueueFull)."""
        try:
            return int(self._shared.mq.max_size)
        except sysv_ipc.Error as exc:
            raise self._translate(exc, "capacity") from None

    @capacity.setter
    def capacity(self, nbytes: int) -> None:
        _limits.set_capacity(self._shared, nbytes)

    @property
    def owner_pid(self) -> int | None:
        """The pid of the process that created the queue, when procmagic created it here."""
        return self._shared.owner_pid

    @property
    def freed(self) -> bool:
        return self._shared.freed

    def __repr__(self) -> str:
        state = " freed" if self._shared.freed else ""
        key = "IPC_PRIVATE" if self.key == 0 else f"{self.key:#x}"
        return f"<procmagic Queue id={self.id} key={key} mode={self.mode}{' nowait' if self.nowait else ''}{state}>"

    # -- the slow paths ------------------------------------------------------------------------
    def _send_again(self, exc: BaseException, data: bytes, mtype: int) -> None:
        # Only "Signaled while waiting" (EINTR) is raised as the base class. By the time this
        # Python function runs, the signal's Python handler has run: had it raised (a
        # KeyboardInterrupt), we would not be here. Nothing was sent: send again.
        while type(exc) is _SysvError:
            try:
                self._send(data, self._block, mtype)
                return
            except _Failures as again:
                exc = again
        raise self._translate(exc, "push") from None

    def _receive_again(self, exc: BaseException) -> bytes:
        while type(exc) is _SysvError:  # interrupted by a signal whose handler did not raise
            try:
                return self._receive(self._block, self._pop_type)[0]  # type: ignore[no-any-return]
            except _Failures as again:
                exc = again
        raise self._translate(exc, "pop") from None

    def _translate(self, exc: BaseException, what: str) -> BaseException:
        shared = self._shared
        if isinstance(exc, sysv_ipc.BusyError):
            if what == "push":
                return QueueFull(
                    f"queue {shared.id} is full ({self._describe_fill()}) and nowait=True: pop some "
                    "messages, push without nowait to wait, or give it a larger capacity (bytes)"
                )
            whose = "" if self._balance else f" for id {self.me}"
            return QueueEmpty(f"no message{whose} on queue {shared.id} (nowait=True: pop() does not wait)")
        if isinstance(exc, sysv_ipc.ExistentialError) or (
            isinstance(exc, OSError) and exc.errno in (errno.EINVAL, errno.EIDRM)
        ):
            return NoQueue(f"queue {shared.id} no longer exists: it was freed (free_queue()) or removed by "
                           "another process; call use_queue() again for a new one")
        if isinstance(exc, sysv_ipc.PermissionsError):
            return PermissionError(errno.EACCES, f"{what}() on queue {shared.id}: permission denied (its mode is "
                                   "set at creation with perm=, 0o600 by default: only its creator's user)")
        return exc

    def _describe_fill(self) -> str:
        try:
            st = self.stat()
        except Exception:
            return "its capacity reached"
        used = f"{st.bytes} of {st.capacity} bytes" if st.bytes is not None else f"capacity {st.capacity} bytes"
        return f"{st.messages} messages, {used}"

    def _no_peer(self) -> ValueError:
        return ValueError("push() in orient mode needs to= here (the receiver's Process, its id, or PARENT): "
                          "this queue handle belongs to no Process")

    def _route(self, to: Any) -> int:
        if self._balance:
            raise ValueError(f"to={to!r} routes a message only in mode='orient'; in mode='balance' any consumer "
                             "takes any message: use_queue(..., mode='orient') to address one process")
        if isinstance(to, bool) or not isinstance(to, numbers.Integral):
            ident = getattr(to, "id", None)
            if isinstance(ident, numbers.Integral) and not isinstance(ident, bool) and hasattr(to, "use_queue"):
                to = ident
            else:
                raise TypeError(f"to must be a Process, a process id (int) or PARENT, not {to!r}")
        if not 1 <= to <= _MAX_TYPE:
            raise ValueError(f"to must be a process id from 1 to {_MAX_TYPE} (PARENT), got {to}")
        return int(to)

    def _bad_size(self, n: int) -> ValueError:
        if n == 0:
            return ValueError("push() refuses empty data: a message must hold at least 1 byte")
        limit = self._limit
        system = _limits.msgmax()
        why = f"kernel.msgmax is {system} bytes" if limit >= system else f"the queue's capacity is {limit} bytes"
        return ValueError(f"the message is {n} bytes, larger than the {limit} bytes a message may be here ({why}): "
                          "split it, or send it through a pipe")

    def _check_size(self, size: Any) -> int:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"size must be a number of bytes (int) or None, not {size!r}")
        if size < 1:
            raise ValueError(f"size must be at least 1 byte (or None for any message), got {size}")
        return int(size)

    # -- state ---------------------------------------------------------------------------------
    def stat(self) -> QueueStat:
        """Messages and bytes waiting, capacity, and the last sender and receiver (swoole's statQueue)."""
        shared = self._shared
        mq = shared.mq
        try:
            capacity = int(mq.max_size)
            row = _registry.proc_table().get(shared.id)
            if row is not None and row.key == shared.key:
                messages, nbytes = row.qnum, row.cbytes
                lspid, lrpid, stime, rtime = row.lspid, row.lrpid, row.stime, row.rtime
            else:
                messages, nbytes = int(mq.current_messages), None
                lspid, lrpid = mq.last_send_pid, mq.last_receive_pid
                stime, rtime = mq.last_send_time, mq.last_receive_time
        except sysv_ipc.Error as exc:
            raise self._translate(exc, "stat_queue") from None
        return QueueStat(
            id=shared.id, key=shared.key, messages=messages, bytes=nbytes, capacity=capacity,
            max_message_size=self._limit, last_sender_pid=lspid or None, last_send_time=float(stime) if stime else None,
            last_receiver_pid=lrpid or None, last_receive_time=float(rtime) if rtime else None,
        )

    def free(self) -> bool:
        """Remove the queue from the system (swoole's freeQueue), for every process using it.

        Returns False when it was gone already.
        """
        shared = self._shared
        removed = True
        try:
            shared.mq.remove()
        except sysv_ipc.ExistentialError:
            removed = False
        except sysv_ipc.PermissionsError:
            raise PermissionError(errno.EPERM, f"only the creator or owner of queue {shared.id} may free it") from None
        shared.freed = True
        _registry.forget(shared.id)
        return removed

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def view(self, me: int, peer: int | None = None, mode: str | None = None, nowait: bool | None = None) -> "Queue":
        """Another handle on the same queue, in this process, that pops the messages typed ``me``
        (orient) and pushes to ``peer`` by default: how a pool worker gets its own routing."""
        return Queue(self._shared, None, mode or self.mode, self.nowait if nowait is None else nowait, me, peer)
