"""The kernel's limits on SysV message queues, and a queue's capacity (bytes) within them.

``kernel.msgmax`` caps one message, ``kernel.msgmnb`` a new queue's capacity and the most an
unprivileged owner may set: raising a capacity above it needs ``CAP_SYS_RESOURCE``.
"""

from __future__ import annotations

import errno
import numbers
import os
from typing import Any

import sysv_ipc

from . import queue_registry as _registry
from .errors import NoQueue

__all__ = ["msgmax", "msgmnb", "check_capacity", "set_capacity", "capacity_refused", "has_cap_sys_resource"]

MAX_CAPACITY = 2**31 - 1
_CAP_SYS_RESOURCE = 24


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



def has_cap_sys_resource() -> bool:
    """Whether this process may raise a queue's capacity above kernel.msgmnb."""
    return _has_cap(_CAP_SYS_RESOURCE)


def check_capacity(capacity: Any) -> int | None:
    if capacity is None:
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral):
        raise TypeError(f"capacity must be a number of bytes (int) or None, not {capacity!r}")
    value = int(capacity)
    if not 1 <= value <= MAX_CAPACITY:
        raise ValueError(f"capacity must be from 1 to {MAX_CAPACITY} bytes, got {value}")
    return value


def capacity_refused(capacity: int) -> PermissionError:
    return PermissionError(errno.EPERM, f"a queue's capacity may exceed kernel.msgmnb ({msgmnb()} bytes) only with "
                           f"CAP_SYS_RESOURCE, which this process lacks: capacity={capacity} bytes is refused "
                           "(ask for at most kernel.msgmnb, or raise /proc/sys/kernel/msgmnb as root)")


def set_capacity(shared: Any, capacity: Any) -> None:
    capacity = check_capacity(capacity)
    assert capacity is not None
    if capacity > msgmnb() and not has_cap_sys_resource():
        raise capacity_refused(capacity)
    try:
        shared.mq.max_size = capacity
    except sysv_ipc.PermissionsError:
        if capacity > msgmnb():
            raise capacity_refused(capacity) from None
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
