"""The threaded-fork guard: a census of live threads, an allow-list, and a verdict.

``fork()`` copies only the calling thread. Any lock another thread held at that moment (the
import lock, a logging handler's lock, malloc's arena lock in C code) stays locked forever in
the child, which then hangs the first time it needs it. So procmagic refuses to fork while a
thread it does not know to be harmless is alive, and names each one.

Threads are counted from ``threading._active`` and ``threading._limbo`` rather than
``threading.enumerate()``, because debuggers (debugpy) hide their own threads from
``enumerate()``. Native threads with no Python ``Thread`` (zmq's I/O threads, OpenBLAS or OpenMP
workers) come from ``/proc/self/task``: they are reported, not refused, since a kernel always
has some and a forked child never runs them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable, Union

from .errors import ForkRefused

__all__ = [
    "ThreadInfo",
    "NativeThread",
    "Census",
    "census",
    "allow_threads",
    "check",
]

#: A rule that allows a thread: a module prefix ("ipykernel") matched against the module of the
#: thread's class and of the function it runs, or a predicate over the Thread.
Rule = Union[str, Callable[[threading.Thread], bool]]

_rules: list[tuple[Rule, str]] = []
_rules_version = 0  # changes with every rule added or removed: check()'s cached verdict then expires


def allow_threads(rule: Rule, reason: str) -> Callable[[], None]:
    """Declare threads that may be alive at fork time; returns a function that removes the rule.

    A string rule is a module prefix: a thread is allowed when its class, or the function it
    runs, comes from that module or a submodule. The kernel integration uses this to declare
    ipykernel's own threads, which never hold locks the child needs.
    """
    if not (isinstance(rule, str) and rule) and not callable(rule):
        raise TypeError(f"rule must be a module prefix (str) or a predicate, not {rule!r}")
    global _rules_version
    entry = (rule, reason)
    _rules.append(entry)
    _rules_version += 1

    def remove() -> None:
        global _rules_version
        if entry in _rules:
            _rules.remove(entry)
            _rules_version += 1

    return remove


@dataclass(frozen=True)
class ThreadInfo:
    """One live Python thread other than the caller's."""

    name: str
    ident: int | None
    native_id: int | None
    cls: str
    target: str | None
    daemon: bool
    allowed_by: str | None  # the reason of the rule that allows it, or None

    def describe(self) -> str:
        runs = f", runs {self.target}" if self.target else ""
        return f"{self.name!r} ({self.cls}{runs}, daemon={self.daemon})"


@dataclass(frozen=True)
class NativeThread:
    """A native thread that no Python Thread accounts for."""

    tid: int
    comm: str
    guess: str

    def describe(self) -> str:
        return f"tid {self.tid} {self.comm!r}: {self.guess}"


@dataclass(frozen=True)
class Census:
    """What the guard saw, and its verdict."""

    on_main_thread: bool
    caller: str
    threads: tuple[ThreadInfo, ...]
    native: tuple[NativeThread, ...]

    @property
    def offenders(self) -> tuple[ThreadInfo, ...]:
        return tuple(t for t in self.threads if t.allowed_by is None)

    @property
    def ok(self) -> bool:
        return self.on_main_thread and (not self.threads or not self.offenders)

    def refusal(self) -> str:
        """The message ForkRefused carries (empty when the verdict is ok)."""
        if not self.on_main_thread:
            return (
                f"refusing to fork from thread {self.caller!r}: only the main thread may fork, "
                "because the child would hold a copy of this thread alone while the main thread's "
                "locks stay taken (in ipykernel 7 this is a subshell). Run the cell in the main "
                "shell, or call start() from the main thread. force=True does not lift this: the "
                "child's parent-death signal is tied to the thread that forked it."
            )
        if not self.offenders:
            return ""
        n = len(self.offenders)
        lines = [
            f"refusing to fork: {n} thread{'s' if n > 1 else ''} besides the main thread "
            f"{'are' if n > 1 else 'is'} alive, and a forked child keeps only a copy of the calling "
            "thread; any lock one of them holds stays locked forever in the child:"
        ]
        lines += [f"  - {t.describe()}" for t in self.offenders]
        lines.append(
            "Stop them first (join the thread, shut the executor down), or pass force=True "
            "(%%spawn --force) to fork anyway at the risk of a child that deadlocks."
        )
        return "\n".join(lines)

    def forced(self) -> str:
        """The ForkWarning's message when force=True forks past offenders."""
        n = len(self.offenders)
        lines = [f"forking anyway (force=True) while {n} thread{'s' if n > 1 else ''} besides the main thread "
                 f"{'are' if n > 1 else 'is'} alive; if one of them holds a lock the child needs, the child hangs:"]
        lines += [f"  - {t.describe()}" for t in self.offenders]
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = [f"fork verdict: {'ok' if self.ok else 'refused'}"]
        lines.append(f"caller: {self.caller}{'' if self.on_main_thread else ' (not the main thread)'}")
        for t in self.threads:
            mark = f"allowed: {t.allowed_by}" if t.allowed_by else "NOT ALLOWED"
            lines.append(f"  python thread {t.describe()} -> {mark}")
        for n in self.native:
            lines.append(f"  native thread {n.describe()}")
        return "\n".join(lines)


def _qualname(obj: object) -> tuple[str | None, str | None]:
    """(module, qualified name) of a thread target, looking through bound methods and partials."""
    func = getattr(obj, "func", obj)  # functools.partial
    func = getattr(func, "__func__", func)  # bound method
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return module, f"{module}.{name}" if module else name


def _allowed_by(thread: threading.Thread, cls_module: str, target_module: str | None) -> str | None:
    for rule, reason in _rules:
        if isinstance(rule, str):
            for module in (cls_module, target_module):
                if module and (module == rule or module.startswith(rule + ".")):
                    return reason
        else:
            try:
                if rule(thread):
                    return reason
            except Exception:  # a broken rule must not break forking; it simply does not allow
                continue
    return None


def _python_threads() -> list[threading.Thread]:
    # _active and _limbo see threads that debuggers hide from enumerate(); copy under the lock.
    with threading._active_limbo_lock:  # type: ignore[attr-defined]
        threads = list(threading._active.values()) + list(threading._limbo)  # type: ignore[attr-defined]
    return threads


def _describe(thread: threading.Thread) -> ThreadInfo:
    cls = type(thread)
    target = getattr(thread, "_target", None)
    target_module, target_name = _qualname(target) if target is not None else (None, None)
    if target is None and cls not in (threading.Thread,):
        # A Thread subclass runs its own run(); name that.
        target_module, target_name = cls.__module__, f"{cls.__module__}.{cls.__qualname__}.run"
    return ThreadInfo(
        name=thread.name,
        ident=thread.ident,
        native_id=getattr(thread, "native_id", None),
        cls=f"{cls.__module__}.{cls.__qualname__}",
        target=target_name,
        daemon=thread.daemon,
        allowed_by=_allowed_by(thread, cls.__module__, target_module),
    )


def _other_threads() -> list[ThreadInfo]:
    me = threading.current_thread()
    out = []
    for thread in _python_threads():
        if thread is me or isinstance(thread, threading._MainThread):  # type: ignore[attr-defined]
            continue
        if thread.ident is not None and not thread.is_alive():
            continue
        out.append(_describe(thread))
    return out


def _guess_native(comm: str, maps: str) -> str:
    if comm.startswith("ZMQbg"):
        return "libzmq background thread (owned by a zmq Context; never runs in the child)"
    if "gomp" in maps or "libiomp" in maps:
        return (
            "probably an OpenMP worker: OpenMP in a forked child can hang, so do not call "
            "OpenMP-parallel code (numpy/scipy BLAS, torch) in the child"
        )
    if "openblas" in maps.lower():
        return "probably an OpenBLAS worker (set OPENBLAS_NUM_THREADS=1 if the child uses BLAS)"
    return "unknown native thread (a C extension's own thread)"


def _native_threads(python_tids: set[int]) -> list[NativeThread]:
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []
    pid = os.getpid()
    unknown = [t for t in tids if t != pid and t not in python_tids]
    if not unknown:
        return []
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    out = []
    for tid in sorted(unknown):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue  # it ended while we looked
        out.append(NativeThread(tid, comm, _guess_native(comm, maps)))
    return out


def census(native: bool = True) -> Census:
    """Count live threads and give the guard's verdict (``procmagic.census()``)."""
    me = threading.current_thread()
    threads = _other_threads()
    python_tids = {t.native_id for t in threads if t.native_id}
    python_tids.add(getattr(me, "native_id", 0) or 0)
    return Census(
        on_main_thread=me is threading.main_thread(),
        caller=me.name,
        threads=tuple(threads),
        native=tuple(_native_threads(python_tids)) if native else (),
    )


#: check()'s verdict while the main thread runs alone (a plain script): the same every time, so
#: built once (per name of the main thread) instead of at every fork.
_alone: Census | None = None
#: check()'s last passing verdict with other threads alive (a kernel's), and what it depended on:
#: (the rules' version, the Thread objects of threading._active, the caller's name, the verdict).
_passed: tuple[int, tuple[threading.Thread, ...], str, Census] | None = None


def check(force: bool = False) -> Census:
    """The guard as ``start()`` runs it: raise ForkRefused unless forking is safe or forced.

    Native threads are not counted here (the verdict does not depend on them), which keeps the
    check to a few microseconds per fork. A passing verdict is reused while the same Thread
    objects are alive, no rule was added or removed, every rule is a module prefix and the
    caller's name is the same; a predicate rule is asked at every check.
    """
    global _alone, _passed
    # Each object a census builds or visits is a page written after the previous fork, a
    # copy-on-write fault: ~40 per spawn in a plain script, ~130 (and ~0.18 ms) in a kernel
    # with its eight allowed threads. So the verdict is reused while nothing it rests on moved.
    # threading's registry of started threads, and of those still starting; without them (not a
    # documented API: another Python may lack them) every check is a fresh census
    active = getattr(threading, "_active", None)
    limbo = getattr(threading, "_limbo", None)
    threads: tuple[threading.Thread, ...] | None = None
    if isinstance(active, dict) and isinstance(limbo, dict) and not limbo:
        me = active.get(threading.get_ident())
        # threading's own attributes behind main_thread() and .name (two Python calls less)
        if me is not None and me is (getattr(threading, "_main_thread", None) or threading.main_thread()):
            name = getattr(me, "_name", None) or me.name
            if len(active) == 1:  # the main thread alone: nothing to describe
                alone = _alone
                if alone is None or alone.caller != name:
                    alone = _alone = Census(on_main_thread=True, caller=name, threads=(), native=())
                return alone
            # The same Thread objects as at the last passing verdict, under the same rules
            # (module prefixes only: a predicate may answer differently from one call to the
            # next), from a caller of the same name: the same verdict.
            threads = tuple(active.values())  # the objects, not their idents: an ident is reused
            passed = _passed
            if passed is not None and passed[0] == _rules_version and passed[1] == threads and passed[2] == name:
                return passed[3]
    result = census(native=False)
    if not result.on_main_thread or (result.offenders and not force):
        raise ForkRefused(result.refusal(), result)
    if (threads is not None and isinstance(active, dict) and result.ok
            and all(isinstance(rule, str) for rule, _ in _rules) and tuple(active.values()) == threads):
        _passed = (_rules_version, threads, result.caller, result)
    return result
