"""Which CPUs a process may use: the rule behind ``Process.set_affinity``.

The allowed set is what the kernel lets ``sched_setaffinity`` grant: the CPUs of the process's
cpuset (cgroup v2 ``cpuset.cpus.effective``, cgroup v1 ``cpuset.effective_cpus``) that are online.
It is *not* the caller's current mask (``os.sched_getaffinity(0)``, also ``Cpus_allowed_list`` in
``/proc/self/status``): a process pinned to CPU 0 by ``taskset`` may still widen its own mask, or
give a child CPUs 0 and 1, when its cpuset holds both. The kernel silently drops requested CPUs
outside the cpuset (and fails only when none is left); procmagic refuses them instead, naming
the allowed set, so a request never does less than it says.
"""

from __future__ import annotations

import errno
import numbers
import os
from typing import Any, Iterable

__all__ = ["allowed_cpus", "check_cpus", "apply"]


def _parse_list(text: str) -> set[int]:
    """A kernel CPU list such as ``0-3,8,10-11``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _read_list(path: str) -> set[int] | None:
    try:
        with open(path) as f:
            cpus = _parse_list(f.read())
    except (OSError, ValueError):
        return None
    return cpus or None


def _cpuset_cpus(pid: int | str) -> set[int] | None:
    """The CPUs of ``pid``'s cpuset, from its cgroup (v2 unified, else v1), or None if unknown."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpuset" in controllers.split(","):
            v1 = path
    if v1 is not None:
        found = _read_list(f"/sys/fs/cgroup/cpuset{v1.rstrip('/')}/cpuset.effective_cpus")
        if found is not None:
            return found
    if v2 is not None:
        return _read_list(f"/sys/fs/cgroup{v2.rstrip('/')}/cpuset.cpus.effective")
    return None


def allowed_cpus(pid: int | str = "self") -> list[int]:
    """The CPUs ``pid`` (this process by default) may be given: its cpuset's online CPUs."""
    online = _read_list("/sys/devices/system/cpu/online")
    if online is None:
        online = set(range(os.cpu_count() or 1))
    cpuset = _cpuset_cpus(pid)
    allowed = online if cpuset is None else online & cpuset
    # Where neither can be read (a sandbox hiding /sys), the current mask is all we know.
    return sorted(allowed or os.sched_getaffinity(0))


def check_cpus(cpus: Any) -> list[int]:
    """Validate a request: a non-empty iterable of CPU numbers, all in :func:`allowed_cpus`."""
    try:
        items = list(cpus)
        if any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in items):
            raise TypeError
        wanted = sorted({int(c) for c in items})
    except TypeError:
        raise TypeError(f"cpus must be an iterable of CPU numbers (ints), like [0, 1], not {cpus!r}") from None
    if not wanted:
        raise ValueError("cpus [] are not all available: name at least one CPU, like [0] (an empty set would "
                         "leave the process nowhere to run)")
    allowed = allowed_cpus()
    bad = [c for c in wanted if c not in allowed]
    if bad:
        raise ValueError(f"cpus {wanted} are not all available: this process may use CPUs {_format(allowed)} "
                         f"(its cpuset's online CPUs), not {_format(bad)}; ask for CPUs among those")
    return wanted


def apply(pid: int, cpus: Iterable[int]) -> None:
    """``sched_setaffinity(pid, cpus)`` with the kernel's refusal explained."""
    wanted = sorted(cpus)
    try:
        os.sched_setaffinity(pid, wanted)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise ValueError(f"the kernel refused CPUs {wanted} for pid {pid or os.getpid()}: it may use CPUs "
                         f"{_format(allowed_cpus(pid or 'self'))} (its cpuset changed?)") from None


def _format(cpus: list[int]) -> str:
    return "[" + ", ".join(map(str, cpus)) + "]"
