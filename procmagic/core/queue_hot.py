"""The queue's hot path: ``push`` and ``pop`` built per handle, and the traffic counters.

Two builds of the same behaviour:

- **C** (default, when the extension was built): :mod:`procmagic.core._queue_fast`. A
  ``HotPath`` per handle; its bound ``push``/``pop`` are the handle's methods, so a common call
  (bytes, no ``to=``, default ``size``) runs msgsnd/msgrcv with no Python frame at all. Anything
  else, and every errno but EINTR, goes to the Python functions below, which redo the call
  through sysv_ipc: errors and exceptions are the pure path's, exactly.
- **Pure Python**: closures over sysv_ipc's bound send/receive. Used where the extension could
  not be built, or when ``PROCMAGIC_PURE_QUEUE=1`` is set before procmagic is imported;
  :func:`use_accelerator` switches a running process (the benchmark and the tests run both).

Counters. Both builds count in this process's counter slot (:mod:`procmagic.core.counters`).
The pure closures keep running totals in the cells of one closure scope and store them (a
store of a Python int is cheaper than ``+=`` on the view); the C path adds to the slot in place.
Only one build runs in a process at a time: switching re-reads the slot into the cells and
rebuilds every live handle, so the totals stay exact across a switch. The slot changes only at
fork (counters' own at-fork hook) and when a procmagic child takes its slot
(Process._become_child, before the child hooks run); both call :func:`refresh_counters`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import sysv_ipc

from . import counters as _counters

if TYPE_CHECKING:
    from .queue_handle import Queue

__all__ = ["make_hot_path", "refresh_counters", "count_push", "as_bytes", "FAILURES", "PURE_ENV",
           "accelerator_available", "accelerated", "use_accelerator"]

#: Set to 1 (before procmagic is imported) to run the pure-Python queue path even where the C
#: accelerator is built: for comparison, or to rule the extension out when chasing a problem.
PURE_ENV = "PROCMAGIC_PURE_QUEUE"

try:
    from . import _queue_fast as _fast  # type: ignore[attr-defined]
except ImportError:  # not built (no compiler at install time): the pure path does everything
    _fast = None

#: What a send or receive may raise: sysv_ipc raises a bare OSError(EINVAL) sending to a removed queue.
FAILURES = (sysv_ipc.Error, OSError)
_Failures = FAILURES


def _counting_scope() -> tuple[Callable[["Queue"], tuple[Callable[..., None], Callable[..., bytes]]],
                               Callable[[], None], Callable[[int], None]]:
    """The pure-Python build: (make, refresh, count_push), sharing the totals' cells."""
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

    def make(q: "Queue") -> tuple[Callable[..., None], Callable[..., bytes]]:
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

        return _named(push, "push"), _named(pop, "pop")

    refresh()
    return make, refresh, count_push


def _named(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    # A wrong call reads "Queue.push() takes 1 positional argument ..." in both builds.
    func.__qualname__ = f"Queue.{name}"
    return func


def _make_accelerated(q: "Queue") -> tuple[Callable[..., None], Callable[..., bytes]]:
    """The C build: a HotPath's bound push and pop, with Python functions for all the rest."""
    send, receive, block, push_type, pop_type = q._send, q._receive, q._block, q._push_type, q._pop_type
    send_again, receive_again, push_slow = q._send_again, q._receive_again, q._push_slow

    def push(data: bytes | str, *, to: Any = None) -> None:  # other shapes, types, to=, bad sizes
        push_slow(data, to)

    def pop(size: int | None = None) -> int | None:  # parses pop(size=...) and wrong calls
        return size

    def send_slow(data: bytes, mtype: int) -> None:  # an errno other than EINTR: sysv_ipc says it
        try:
            send(data, block, mtype)
        except _Failures as exc:
            send_again(exc, data, mtype)

    def receive_slow() -> bytes:
        try:
            return receive(block, pop_type)[0]  # type: ignore[no-any-return]
        except _Failures as exc:
            return receive_again(exc)

    hot = _fast.HotPath(q._shared.id, block, push_type, pop_type, q._limit, q._shared.receive_size,
                        _named(push, "push"), _named(pop, "pop"), send_slow, receive_slow, q._check_size, _too_long)
    return hot.push, hot.pop


_make_pure, _refresh_pure, _count_push_pure = _counting_scope()
_accelerated = False
make_hot_path = _make_pure
count_push = _count_push_pure


def refresh_counters() -> None:
    """This process's counter slot changed (fork, a child taking its slot): count there."""
    _refresh_pure()
    if _fast is not None:
        slot = _counters.for_this_process()
        base = slot._base
        _fast.set_slot(slot._view, base + _counters.PUSHES, base + _counters.BYTES_PUSHED,
                       base + _counters.POPS, base + _counters.BYTES_POPPED)


def accelerator_available() -> bool:
    """Whether the C build (procmagic.core._queue_fast) was built and imported."""
    return _fast is not None


def accelerated() -> bool:
    """Whether queue handles in this process use the C build now."""
    return _accelerated


def use_accelerator(on: bool) -> None:
    """Switch this process's queue handles to the C build (True) or the pure-Python one (False).

    Every live handle is rebuilt, and the totals carry over exactly. Children forked afterwards
    inherit the choice. Raises RuntimeError for True where the extension is not built.
    """
    if on and _fast is None:
        raise RuntimeError("the queue's C accelerator (procmagic.core._queue_fast) is not built here: reinstall "
                           "procmagic with a C compiler and the Python headers (pip install -e .), or use the "
                           "pure-Python path")
    refresh_counters()  # the cells take up what the C path counted, or the C path what they did
    _select(on)
    from .queue_handle import handles  # here: queue_handle imports this module

    for handle in list(handles):
        handle._build()


def _select(on: bool) -> None:
    global _accelerated, make_hot_path, count_push
    _accelerated = bool(on) and _fast is not None
    make_hot_path = _make_accelerated if _accelerated else _make_pure
    count_push = _fast.count_push if _accelerated else _count_push_pure


def _too_long(data: bytes, size: int) -> ValueError:
    err = ValueError(f"the message is {len(data)} bytes, more than size={size}; it was taken off the queue and "
                     "is kept in this exception's .data (pop() without size takes any message)")
    err.data = data  # type: ignore[attr-defined]
    return err


def as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"push() takes bytes or str, not {type(data).__name__} {data!r:.60}")


refresh_counters()
_select(os.environ.get(PURE_ENV, "0") in ("", "0"))  # no handle exists yet: nothing to rebuild
os.register_at_fork(after_in_child=refresh_counters)
