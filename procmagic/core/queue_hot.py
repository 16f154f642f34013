"""The queue's hot path: ``push`` and ``pop`` closures built per handle, and the traffic counters.

The hot path publishes this process's running totals into its counter slot with plain
memoryview stores (a store of a Python int is cheaper than ``+=`` on the view). The totals and
the slot live in the cells of one closure scope, shared by every handle's push and pop: a cell
is cheaper to update than a module global. The slot changes only at fork (counters' own
at-fork hook) and when a procmagic child takes its slot (Process._become_child, before the
child hooks run); both call ``_refresh_counters``. The hot path itself is built in this scope
too (``_make_hot_path``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import sysv_ipc

from . import counters as _counters

if TYPE_CHECKING:
    from .queue_handle import Queue

__all__ = ["make_hot_path", "refresh_counters", "count_push", "as_bytes", "FAILURES"]

#: What a send or receive may raise: sysv_ipc raises a bare OSError(EINVAL) sending to a removed queue.
FAILURES = (sysv_ipc.Error, OSError)
_Failures = FAILURES


def _counting_scope() -> tuple[Callable[["Queue"], tuple[Callable[..., None], Callable[..., bytes]]],
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

        return push, pop

    refresh()
    return make, refresh, count_push


make_hot_path, refresh_counters, count_push = _counting_scope()


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


os.register_at_fork(after_in_child=refresh_counters)
