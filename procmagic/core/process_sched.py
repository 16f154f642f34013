"""A Process's name, CPU affinity and priority (swoole's ``name``, ``setAffinity``,
``setPriority``): set before ``start()`` they are applied by the child as it starts; after, they
act on the live child (or, inside the child, on itself)."""

from __future__ import annotations

import itertools
import numbers
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any, Iterable

from . import affinity as _affinity
from .errors import ProcessStateError

if TYPE_CHECKING:
    from .process import Process

__all__ = ["ProcessName", "SchedulingMixin", "next_id", "preload_title"]


_ids = itertools.count(1)
_MAX_ID = 2**31 - 2  # 2**31 - 1 types messages for the parent in orient-mode queues
_all: "weakref.WeakSet[Process]" = weakref.WeakSet()


def next_id() -> int:
    # Ids are small and unique among this process's children; they type orient-mode queue
    # messages, so they must be >= 1.
    global _ids
    n = next(_ids)
    if n > _MAX_ID:
        _ids = itertools.count(1)
        n = next(_ids)
    return n


def _reset_ids_in_child() -> None:
    global _ids
    _ids = itertools.count(1)


os.register_at_fork(after_in_child=_reset_ids_in_child)


class ProcessName(str):
    """A process's name. It is a ``str``; calling it, ``proc.name("title")``, renames the process
    (``setproctitle`` in the child, as swoole's ``name()`` does)."""

    _proc: "weakref.ReferenceType[Process]"

    def __new__(cls, value: str, proc: "Process") -> "ProcessName":
        self = super().__new__(cls, value)
        self._proc = weakref.ref(proc)
        return self

    def __call__(self, title: str) -> None:
        proc = self._proc()
        if proc is None:
            raise ProcessStateError("this Process no longer exists")
        proc.set_name(title)


class SchedulingMixin:
    """Name, affinity and priority of a ``Process`` (mixed into it)."""

    id: int
    _name: str | None
    _in_child: bool
    _record: Any  # the ChildRecord of the current run, None before start
    _affinity: list[int] | None
    _priority: int | None

    @property
    def name(self) -> ProcessName:
        """The name given at creation (or by ``name(title)``); defaults to ``process-<id>``."""
        return ProcessName(self._name or f"process-{self.id}", self)  # type: ignore[arg-type]

    @property
    def given_name(self) -> str | None:
        """The name given at creation or by ``set_name``; None for the default ``process-<id>``."""
        return self._name

    def set_name(self, title: str) -> None:
        """Rename the process: in the child, its title in ``ps``/``top`` too (setproctitle)."""
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"a process name must be a non-empty str, not {title!r}")
        self._name = title
        if self._in_child:
            _set_title(title)

    def _sched_pid(self, what: str) -> int | None:
        """0 for this process (in the child), the child's pid, or None before start."""
        if self._in_child:
            return 0
        record = self._record
        if record is None:
            return None
        if record.status is not None:
            raise ProcessStateError(f"{what}(): process {self.id} has exited")
        return record.pid  # type: ignore[no-any-return]

    def _apply_child_settings(self) -> None:
        if self._name:
            _set_title(self._name)
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)
        if self._priority is not None:
            os.setpriority(os.PRIO_PROCESS, 0, self._priority)

    def set_affinity(self, cpus: Iterable[int]) -> None:
        """Pin the child to these CPUs (before start: applied when it starts). Any CPU this
        process may use can be given, even one outside its own current mask; see
        :mod:`procmagic.core.affinity`."""
        wanted = _affinity.check_cpus(cpus)
        pid = self._sched_pid("set_affinity")
        if pid is None:
            self._affinity = wanted
        else:
            _affinity.apply(pid, wanted)

    def get_affinity(self) -> list[int]:
        pid = self._sched_pid("get_affinity")
        if pid is None:
            return list(self._affinity) if self._affinity is not None else sorted(os.sched_getaffinity(0))
        return sorted(os.sched_getaffinity(pid))

    def set_priority(self, nice: int) -> None:
        """Set the child's nice value, -20 (first) to 19 (last); lowering it needs privilege."""
        if isinstance(nice, bool) or not isinstance(nice, numbers.Integral) or not -20 <= nice <= 19:
            raise ValueError(f"priority must be a nice value from -20 to 19, got {nice!r}")
        pid = self._sched_pid("set_priority")
        if pid is None:
            self._priority = int(nice)
            return
        try:
            os.setpriority(os.PRIO_PROCESS, pid, int(nice))
        except PermissionError:
            raise PermissionError(
                f"not allowed to lower the nice value to {nice}: only a privileged process can"
            ) from None

    def get_priority(self) -> int:
        pid = self._sched_pid("get_priority")
        if pid is None:
            return self._priority if self._priority is not None else os.getpriority(os.PRIO_PROCESS, 0)
        return os.getpriority(os.PRIO_PROCESS, pid)


def preload_title() -> None:
    """Import setproctitle in the parent, once, before forking a named child (the child then
    finds it in ``sys.modules``); a plain script that never names a child never imports it."""
    if "setproctitle" not in sys.modules:
        try:
            import setproctitle  # noqa: F401
        except ImportError:
            pass


def _set_title(title: str) -> None:
    import setproctitle

    setproctitle.setproctitle(title)
