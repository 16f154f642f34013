"""SysV message queues: swoole's ``useQueue``, ``push``, ``pop``, ``statQueue`` and ``freeQueue``.

A :class:`Queue` is one process's handle on a kernel message queue (through the ``sysv_ipc``
package). ``Process.use_queue()`` calls :func:`attach` and keeps the handle; a Process made and
``use_queue``'d in the parent carries the same queue into its child at ``start()``.

Routing. Every message has a positive type.

- ``mode="balance"``: ``pop()`` takes the oldest message of any type, so any consumer may take
  any message. ``push()`` types every message 1 (:data:`BALANCE_TYPE`, sysv_ipc's default: the
  cheapest call, and raw sysv_ipc peers interoperate); ``to=`` is refused, since it could not
  route anything. Swoole types them with the sender's id, which no balance consumer can see.
- ``mode="orient"``: a message for the process with id N has type N and only N pops it. In the
  parent, ``p.push(data)`` goes to p's child (swoole's behaviour) and ``p.pop()`` takes the
  messages sent to the parent, typed :data:`PARENT`; in the child ``proc.push(data)`` goes to the
  parent and ``proc.pop()`` takes what was sent to ``proc.id``. ``to=`` names any receiver: a
  Process, its id, or ``PARENT``.

Hygiene (:mod:`procmagic.core.queue_registry`): a queue procmagic creates is recorded, and is
removed when freed, when its owner exits normally, or by :func:`sweep_queues` once the owner is
dead; no other queue is ever touched. See ``docs/queues.md``.
"""

from __future__ import annotations

import errno
import numbers
import os
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import sysv_ipc

from . import child as _child
from . import counters as _counters
from . import queue_registry as _registry
from .errors import NoQueue, QueueEmpty, QueueFull
from .queue_registry import QueueInfo, queues, sweep_queues

__all__ = ["Queue", "QueueStat", "QueueInfo", "attach", "queues", "sweep_queues", "PARENT", "BALANCE_TYPE", "MODES"]

#: The type of messages addressed to the parent (the process holding the Process objects): the
#: largest type sysv_ipc can send. Process ids count up from 1 and would reach it only after
#: 2**31 - 2 forks from one process.
PARENT = 2**31 - 1
#: The type of every message pushed in balance mode (sysv_ipc's default, so raw sysv_ipc
#: programs interoperate). Balance consumers take any type, so it routes nothing.
BALANCE_TYPE = 1
MODES = ("balance", "orient")
_SWOOLE_MODES = {1: "orient", 2: "balance"}  # swoole's MSGQUEUE_ORIENT / MSGQUEUE_BALANCE
_MAX_TYPE = 2**31 - 1  # sysv_ipc passes the type as a C int
_MAX_CAPACITY = 2**31 - 1
_KEY_MIN, _KEY_MAX = -(2**31), 2**31 - 1  # key_t is a 32-bit int on Linux
_CAP_SYS_RESOURCE = 24

_SysvError = sysv_ipc.Error  # base class; raised as itself only for "Signaled while waiting"
_Failures = (sysv_ipc.Error, OSError)  # sysv_ipc raises a bare OSError(EINVAL) sending to a removed queue


# -- system limits -------------------------------------------------------------------------------
def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def msgmax() -> int:
    """The largest message the kernel takes (``/proc/sys/kernel/msgmax``)."""
    return _read_int("/proc/sys/kernel/msgmax", 8192)


def msgmnb() -> int:
    """A new queue's capacity in bytes, and the most an unprivileged owner may set."""
    return _read_int("/proc/sys/kernel/msgmnb", 16384)


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


# -- traffic counters ----------------------------------------------------------------------------
# The hot path publishes this process's running totals into its counter slot with plain
# memoryview stores (a store of a Python int is cheaper than ``+=`` on the view). The totals and
# the slot live in the cells of one closure scope, shared by every handle's push and pop: a cell
# is cheaper to update than a module global. The slot changes only at fork (counters' own
# at-fork hook) and when a procmagic child takes its slot (Process._become_child, before the
# child hooks run); both call ``_refresh_counters``. The hot path itself is built in this scope
# too (``_make_hot_path``).


# -- the queue -----------------------------------------------------------------------------------
# -- the queue -----------------------------------------------------------------------------------
class _Shared:
    """What all handles on one queue in this process share: the sysv_ipc object and its identity."""

    __slots__ = ("mq", "id", "key", "uid", "ctime", "limit", "owner_pid", "freed", "handles", "__weakref__")

    def __init__(self, mq: Any, limit: int, owner_pid: int | None) -> None:
        self.mq = mq
        self.id: int = mq.id
        self.key: int = mq.key
        self.uid: int = mq.cuid
        self.ctime: int = mq.last_change_time
        self.limit = limit
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

    ``push(data, *, to=None)`` and ``pop(size=None)`` are built per handle (closures over its
    routing and limits: no attribute lookups on the hot path); their documentation is
    :meth:`_push_doc` and :meth:`_pop_doc`.
    """

    __slots__ = ("_shared", "_proc", "mode", "nowait", "me", "peer", "_balance", "_block", "_push_type",
                 "_pop_type", "_limit", "_send", "_receive", "push", "pop", "__weakref__")

    push: Callable[..., None]
    pop: Callable[..., bytes]

    def __init__(self, shared: _Shared, proc: Any, mode: str, nowait: bool, me: int, peer: int | None) -> None:
        self._shared = shared
        self._proc = proc
        self.mode = mode
        self.nowait = nowait
        self._balance = mode == "balance"
        self._block = not nowait
        self._limit = shared.limit
        self._send = shared.mq.send
        self._receive = shared.mq.receive
        self._set_identity(me, peer)
        shared.handles.add(self)
        _handles.add(self)

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
        push, pop = _make_hot_path(self)
        push.__doc__ = self._push_doc.__doc__
        pop.__doc__ = self._pop_doc.__doc__
        self.push, self.pop = push, pop
        proc = self._proc
        if proc is not None and getattr(proc, "_queue", None) is self:
            # Process.push/pop would cost two more Python calls each (a third of a message's
            # whole cost): the Process's own attributes point straight at these closures.
            proc.push, proc.pop = push, pop

    def _bind(self) -> "Queue":
        """Make this the queue of its Process (what Process.use_queue stores), and bind it."""
        if self._proc is not None:
            self._proc._queue = self
            self._build()
        return self

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
            data = _as_bytes(data)
        n = len(data)
        if not 0 < n <= self._limit:
            raise self._bad_size(n)
        try:
            self._send(data, self._block, mtype)
        except _Failures as exc:
            self._send_again(exc, data, mtype)
        _count_push(n)

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
        _set_capacity(self._shared, nbytes)

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
        system = msgmax()
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

    def _view(self, me: int, peer: int | None = None, mode: str | None = None, nowait: bool | None = None) -> "Queue":
        """Another handle on the same queue, for this process, with its own identity (Pool workers)."""
        return Queue(self._shared, None, mode or self.mode, self.nowait if nowait is None else nowait, me, peer)


def _counting_scope() -> tuple[Callable[[Queue], tuple[Callable[..., None], Callable[..., bytes]]],
                               Callable[[], None], Callable[[int], None]]:
    cv: memoryview = _counters.for_this_process()._view
    i_push = i_push_bytes = i_pop = i_pop_bytes = 0
    n_push = b_push = n_pop = b_pop = 0

    def refresh() -> None:
        nonlocal cv, i_push, i_push_bytes, i_pop, i_pop_bytes, n_push, b_push, n_pop, b_pop
        slot = _counters.for_this_process()
        cv, base = slot._view, slot._base
        i_push, i_push_bytes = base + _counters.PUSHES, base + _counters.BYTES_PUSHED
        i_pop, i_pop_bytes = base + _counters.POPS, base + _counters.BYTES_POPPED
        n_push, b_push, n_pop, b_pop = (int(cv[i]) for i in (i_push, i_push_bytes, i_pop, i_pop_bytes))

    def count_push(n: int) -> None:
        nonlocal n_push, b_push
        n_push += 1
        b_push += n
        cv[i_push] = n_push
        cv[i_push_bytes] = b_push

    def make(q: Queue) -> tuple[Callable[..., None], Callable[..., bytes]]:
        send, receive, block, limit = q._send, q._receive, q._block, q._limit
        push_type, pop_type = q._push_type, q._pop_type
        send_again, receive_again, push_slow = q._send_again, q._receive_again, q._push_slow
        check_size, too_long = q._check_size, _too_long
        # sysv_ipc parses its arguments on every call: pass none where its defaults (block,
        # type 1 to send, any type to receive) are what this handle wants.
        plain_send = block and push_type == 1
        plain_receive = block and pop_type == 0

        def push(data: bytes | str, *, to: Any = None) -> None:
            nonlocal n_push, b_push
            if to is None and data.__class__ is bytes and push_type:
                n = len(data)
                if 0 < n <= limit:
                    try:
                        if plain_send:
                            send(data)
                        else:
                            send(data, block, push_type)
                    except _Failures as exc:
                        send_again(exc, data, push_type)
                    n_push += 1
                    b_push += n
                    cv[i_push] = n_push
                    cv[i_push_bytes] = b_push
                    return
            push_slow(data, to)

        def pop(size: int | None = None) -> bytes:
            nonlocal n_pop, b_pop
            if size is not None:
                size = check_size(size)
            try:
                data = receive()[0] if plain_receive else receive(block, pop_type)[0]
            except _Failures as exc:
                data = receive_again(exc)
            n = len(data)
            n_pop += 1
            b_pop += n
            cv[i_pop] = n_pop
            cv[i_pop_bytes] = b_pop
            if size is not None and n > size:
                raise too_long(data, size)
            return data  # type: ignore[no-any-return]

        return push, pop

    refresh()
    return make, refresh, count_push


_make_hot_path, _refresh_counters, _count_push = _counting_scope()


def _too_long(data: bytes, size: int) -> ValueError:
    err = ValueError(f"the message is {len(data)} bytes, more than size={size}; it was taken off the queue and "
                     "is kept in this exception's .data (pop() without size takes any message)")
    err.data = data  # type: ignore[attr-defined]
    return err


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"push() takes bytes or str, not {type(data).__name__} {data!r:.60}")


# -- attach --------------------------------------------------------------------------------------
_handles: "weakref.WeakSet[Queue]" = weakref.WeakSet()


def _mode(mode: Any) -> str:
    if isinstance(mode, str) and mode.strip().lower() in MODES:
        return mode.strip().lower()
    if isinstance(mode, numbers.Integral) and not isinstance(mode, bool) and int(mode) in _SWOOLE_MODES:
        return _SWOOLE_MODES[int(mode)]
    raise ValueError(f"unknown queue mode {mode!r}: use 'balance' (any consumer takes any message) or 'orient' "
                     "(each message goes to one process, by id)")


def _check_key(key: Any) -> int | None:
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise TypeError(f"key must be an int (a named queue), a Queue to join, or None (a private queue), not {key!r}")
    if key == 0 or not _KEY_MIN <= int(key) <= _KEY_MAX:
        raise ValueError(f"key must be a non-zero int from {_KEY_MIN} to {_KEY_MAX} (a key_t), got {key} "
                         "(key=None makes a private queue)")
    return int(key)


def _check_capacity(capacity: Any) -> int | None:
    if capacity is None:
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral):
        raise TypeError(f"capacity must be a number of bytes (int) or None, not {capacity!r}")
    value = int(capacity)
    if not 1 <= value <= _MAX_CAPACITY:
        raise ValueError(f"capacity must be from 1 to {_MAX_CAPACITY} bytes, got {value}")
    return value


def _check_perm(perm: Any) -> int:
    if isinstance(perm, bool) or not isinstance(perm, numbers.Integral) or not 0 <= int(perm) <= 0o777:
        raise ValueError(f"perm must be permission bits from 0o000 to 0o777 (like 0o600), not {perm!r}")
    return int(perm)


def _identity(process: Any) -> tuple[int, int | None]:
    """(me, peer) for a handle owned by ``process`` in this process."""
    if process is None:
        return PARENT, None
    if getattr(process, "_in_child", False):
        return process.id, PARENT
    return PARENT, process.id


def attach(process: Any = None, key: Any = None, mode: Any = "balance", nowait: bool = False,
           capacity: int | None = None, **options: Any) -> Queue:
    """A handle on a message queue for ``process`` (None: this process alone). ``Process.use_queue``.

    ``key``: None creates a private queue (IPC_PRIVATE); an int attaches to the named queue with
    that key, creating it if needed; a :class:`Queue` joins that queue. A created queue has
    permissions ``perm`` (0o600). ``capacity`` is in bytes (the kernel's default is
    kernel.msgmnb); above kernel.msgmnb it needs CAP_SYS_RESOURCE and is refused without it.
    """
    unknown = set(options) - {"perm"}
    if unknown:
        raise TypeError(f"use_queue() got unknown option(s) {sorted(unknown)}; the options are key, mode, nowait, "
                        "capacity and perm")
    mode = _mode(mode)
    if not isinstance(nowait, bool):
        raise TypeError(f"nowait must be True or False, not {nowait!r}")
    capacity = _check_capacity(capacity)
    perm = _check_perm(options.get("perm", 0o600))
    me, peer = _identity(process)
    if isinstance(key, Queue):
        shared = key._shared
        if shared.freed:
            raise NoQueue(f"queue {shared.id} was freed: it cannot be joined")
        if capacity is not None:
            _set_capacity(shared, capacity)
        return Queue(shared, process, mode, nowait, me, peer)._bind()
    key = _check_key(key)
    if capacity is not None and capacity > msgmnb() and not _has_cap(_CAP_SYS_RESOURCE):
        raise _capacity_refused(capacity)
    shared = _open(key, perm)
    try:
        if capacity is not None:
            _set_capacity(shared, capacity)
    except BaseException:
        if shared.owner_pid is not None:
            _discard(shared)
        raise
    if shared.owner_pid is not None:
        _registry.record(shared)
    return Queue(shared, process, mode, nowait, me, peer)._bind()


def _open(key: int | None, perm: int) -> _Shared:
    limit = msgmax()
    try:
        if key is None:
            mq = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, perm, max_message_size=limit)
            return _Shared(mq, limit, os.getpid())
        for _ in range(20):  # attach-or-create, against a creator or remover racing with us
            try:
                mq = sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, perm, max_message_size=limit)
                return _Shared(mq, limit, os.getpid())
            except sysv_ipc.ExistentialError:
                pass
            try:
                mq = sysv_ipc.MessageQueue(key, 0, max_message_size=limit)
            except sysv_ipc.ExistentialError:
                continue
            shared = _Shared(mq, limit, None)
            shared.limit = min(limit, int(mq.max_size))
            return shared
        raise RuntimeError(f"queue key {key:#x} kept appearing and disappearing: another program creates and "
                           "removes it; try again, or use another key")
    except sysv_ipc.PermissionsError:
        raise PermissionError(errno.EACCES, f"the queue with key {key:#x} exists but this user may not use it "
                              "(see `ipcs -q`): use another key, or have its creator give perm=") from None
    except OSError as exc:
        if "limit" in str(exc) or exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, "the system's limit of message queues (kernel.msgmni) is reached: free "
                          "some (procmagic.sweep_queues() removes procmagic's leftovers; `ipcs -q` lists all)") from None
        raise


def _capacity_refused(capacity: int) -> PermissionError:
    return PermissionError(errno.EPERM, f"a queue's capacity may exceed kernel.msgmnb ({msgmnb()} bytes) only with "
                           f"CAP_SYS_RESOURCE, which this process lacks: capacity={capacity} bytes is refused "
                           "(ask for at most kernel.msgmnb, or raise /proc/sys/kernel/msgmnb as root)")


def _set_capacity(shared: _Shared, capacity: Any) -> None:
    capacity = _check_capacity(capacity)
    assert capacity is not None
    if capacity > msgmnb() and not _has_cap(_CAP_SYS_RESOURCE):
        raise _capacity_refused(capacity)
    try:
        shared.mq.max_size = capacity
    except sysv_ipc.PermissionsError:
        if capacity > msgmnb():
            raise _capacity_refused(capacity) from None
        raise PermissionError(errno.EPERM, f"only the creator or owner of queue {shared.id} may change its "
                              "capacity") from None
    except sysv_ipc.ExistentialError:
        raise NoQueue(f"queue {shared.id} no longer exists") from None
    shared.limit = min(msgmax(), capacity)
    for handle in list(shared.handles):
        handle._set_limit(shared.limit)
    try:
        shared.ctime = shared.mq.last_change_time
    except sysv_ipc.Error:
        return
    _registry.changed(shared)


def _discard(shared: _Shared) -> None:
    try:
        shared.mq.remove()
    except sysv_ipc.Error:
        pass
    shared.freed = True


# -- fork ----------------------------------------------------------------------------------------
def _in_new_child(proc: Any) -> None:
    """In a procmagic child, after it took its counter slot: handles of its own Process now
    speak for the child (pop its id, push to the parent)."""
    _refresh_counters()
    for handle in list(_handles):
        if handle._proc is proc:
            handle._set_identity(proc.id, PARENT)


_child.add_child_hook(_in_new_child)
os.register_at_fork(after_in_child=_refresh_counters)
