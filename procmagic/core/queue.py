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
from typing import Any

import sysv_ipc

from . import child as _child
from . import queue_hot as _hot
from . import queue_limits as _limits
from . import queue_registry as _registry
from .errors import NoQueue
from .queue_handle import BALANCE_TYPE, PARENT, Queue, QueueStat, _Shared, handles
from .queue_limits import msgmax, msgmnb
from .queue_registry import QueueInfo, queues, sweep_queues

__all__ = ["Queue", "QueueStat", "QueueInfo", "attach", "queues", "sweep_queues", "PARENT", "BALANCE_TYPE", "MODES",
           "msgmax", "msgmnb"]

MODES = ("balance", "orient")
_SWOOLE_MODES = {1: "orient", 2: "balance"}  # swoole's MSGQUEUE_ORIENT / MSGQUEUE_BALANCE
_KEY_MIN, _KEY_MAX = -(2**31), 2**31 - 1  # key_t is a 32-bit int on Linux


# -- attach --------------------------------------------------------------------------------------
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


def _check_perm(perm: Any) -> int:
    if isinstance(perm, bool) or not isinstance(perm, numbers.Integral) or not 0 <= int(perm) <= 0o777:
        raise ValueError(f"perm must be permission bits from 0o000 to 0o777 (like 0o600), not {perm!r}")
    return int(perm)


def _check_type(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= PARENT:
        raise ValueError(f"{name} must be a message type from 1 to {PARENT} (PARENT), not {value!r}")
    return int(value)


def _identity(process: Any) -> tuple[int, int | None]:
    """(me, peer) for a handle owned by ``process`` in this process."""
    if process is None:
        return PARENT, None
    if not hasattr(process, "pid") or not hasattr(process, "id"):
        raise TypeError(f"process must be a procmagic Process (its child's queue) or None (this process alone), "
                        f"not {process!r}; a named queue's key goes in key=, like attach(None, key=0x7000)")
    if process.pid == os.getpid():  # a Process is its own child's, in that child
        return process.id, PARENT
    return PARENT, process.id

def attach(process: Any = None, key: Any = None, mode: Any = "balance", nowait: bool = False,
           capacity: int | None = None, **options: Any) -> Queue:
    """A handle on a message queue for ``process`` (None: this process alone). ``Process.use_queue``.

    ``key``: None creates a private queue (IPC_PRIVATE); an int attaches to the named queue with
    that key, creating it if needed; a :class:`Queue` joins that queue. A created queue has
    permissions ``perm`` (0o600). In orient mode, ``me`` is the type this handle pops and ``peer``
    the type push() sends to without ``to=`` (by default the process's id and PARENT, the other
    way round in the parent); a pool gives its workers' handles the pool's routing this way. ``capacity`` is in bytes (the kernel's default is
    kernel.msgmnb); above kernel.msgmnb it needs CAP_SYS_RESOURCE and is refused without it.
    """
    unknown = set(options) - {"perm", "me", "peer"}
    if unknown:
        raise TypeError(f"use_queue() got unknown option(s) {sorted(unknown)}; the options are key, mode, nowait, "
                        "capacity, perm, me and peer")
    mode = _mode(mode)
    if not isinstance(nowait, bool):
        raise TypeError(f"nowait must be True or False, not {nowait!r}")
    capacity = _limits.check_capacity(capacity)
    perm = _check_perm(options.get("perm", 0o600))
    me, peer = _identity(process)
    if "me" in options:
        me = _check_type(options["me"], "me")
    if "peer" in options:
        peer = _check_type(options["peer"], "peer")
    if isinstance(key, Queue):
        shared = key._shared
        if shared.freed:
            raise NoQueue(f"queue {shared.id} was freed: it cannot be joined")
        if capacity is not None:
            _limits.set_capacity(shared, capacity)
        return Queue(shared, process, mode, nowait, me, peer)
    key = _check_key(key)
    if capacity is not None and capacity > msgmnb() and not _limits.has_cap_sys_resource():
        raise _limits.capacity_refused(capacity)
    shared = _open(key, perm)
    try:
        if capacity is not None:
            _limits.set_capacity(shared, capacity)
    except BaseException:
        if shared.owner_pid is not None:
            _discard(shared)
        raise
    if shared.owner_pid is not None:
        _registry.record(shared)
    return Queue(shared, process, mode, nowait, me, peer)


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
    _hot.refresh_counters()
    for handle in list(handles):
        if handle.process is proc:
            handle._set_identity(proc.id, PARENT)


_child.add_child_hook(_in_new_child)
