"""Per-process traffic counters in shared memory, readable by the parent without a system call.

The parent maps an anonymous shared block before forking; each child gets one slot of it and
counts in plain integers there (queue pushes and pops, alarm ticks). The parent, and the widgets on
top of it, read the slots at any moment. An update is a memoryview store, about 50 ns: cheap
enough for the queue hot path, and no syscall at all.
"""

from __future__ import annotations

import mmap
import os
import sys
import time

__all__ = ["Counters", "FIELDS", "allocate", "release", "for_this_process", "set_for_this_process", "decode", "marks"]

FIELDS = (
    "pushes",
    "pops",
    "bytes_pushed",
    "bytes_popped",
    "alarm_ticks",
    "alarm_which",  # ITIMER_* + 1, 0 when no alarm is set
    "alarm_interval_us",
    "last_tick_ns",  # time.time_ns() of the last alarm tick
)
PUSHES, POPS, BYTES_PUSHED, BYTES_POPPED, ALARM_TICKS, ALARM_WHICH, ALARM_INTERVAL_US, LAST_TICK_NS = range(
    len(FIELDS)
)
#: Past the public fields: when the child ended, time.monotonic_ns() (0 until then). Written by
#: the child just before os._exit, so a child reaped late still reports when it really ended.
EXITED_NS = len(FIELDS)
#: Then 1 once the child may have recorded a SysV queue it created (``queue_registry.record``
#: sets it before writing the record; ``Process.exec`` sets it too, as an exec'd program could
#: record one under the same pid). The parent lists the queue records at the reap only for a
#: child that set it: a listing costs ~40 copy-on-write faults and a few system calls per reap.
MADE_QUEUE = len(FIELDS) + 1
_SLOT = len(FIELDS) + 2
_N_FIELDS = len(FIELDS)
_ZEROS = memoryview(bytes(_SLOT * 8)).cast("Q")
_EXITED_BYTES = slice(EXITED_NS * 8, EXITED_NS * 8 + 8)
_MADE_QUEUE_BYTES = slice(MADE_QUEUE * 8, MADE_QUEUE * 8 + 8)
_ZERO_WORD = bytes(8)
_SLOTS_PER_BLOCK = 1024


class Counters:
    """A view of one slot. ``set(field, v)`` stores, ``snapshot()`` reads; the queue's hot path
    writes the slot directly (see :mod:`procmagic.core.queue_hot`)."""

    __slots__ = ("_view", "_base", "_block", "index")

    def __init__(self, view: memoryview, base: int, block: "_Block | None", index: int) -> None:
        self._view = view
        self._base = base
        self._block = block
        self.index = index

    def set(self, field: int, value: int) -> None:
        self._view[self._base + field] = value

    def clear(self) -> None:
        for i in range(_SLOT):
            self._view[self._base + i] = 0

    def snapshot(self) -> dict[str, int]:
        base = self._base
        return dict(zip(FIELDS, self._view[base:base + _N_FIELDS].tolist()))

    def raw(self) -> bytes:
        """The whole slot as it is now, in one copy: what the parent keeps at the reap (read it
        with :func:`decode` and :func:`marks`). Nothing is decoded at the reap itself: each
        field name a dict of counts stores is an object touched, a page written after the fork."""
        block = self._block
        if block is None:
            return self._view[self._base:self._base + _SLOT].tobytes()
        start = self._base * 8
        return block.map[start:start + _SLOT * 8]

    def mark_exit(self) -> None:
        """In the child, as it ends: record the time (CLOCK_MONOTONIC, shared by all processes)."""
        self._view[self._base + EXITED_NS] = time.monotonic_ns()

    def mark_queue(self) -> None:
        """In the child: it may have created and recorded a queue (see :data:`MADE_QUEUE`)."""
        self._view[self._base + MADE_QUEUE] = 1

    def exited_at(self) -> float | None:
        """When the child marked its exit, in ``time.monotonic()`` seconds; None if it did not."""
        ns = int(self._view[self._base + EXITED_NS])
        return ns / 1e9 if ns else None

    def record_tick(self) -> None:
        self._view[self._base + ALARM_TICKS] += 1
        self._view[self._base + LAST_TICK_NS] = time.time_ns()


class _Block:
    def __init__(self) -> None:
        self.map = mmap.mmap(-1, _SLOTS_PER_BLOCK * _SLOT * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.view = memoryview(self.map).cast("Q")
        self.free = list(range(_SLOTS_PER_BLOCK - 1, -1, -1))
        self.in_use = bytearray(_SLOTS_PER_BLOCK)  # O(1) "is it free already?" (a list scan is ~15 us)


_blocks: list[_Block] = []
_local = Counters(memoryview(bytearray(_SLOT * 8)).cast("Q"), 0, None, -1)
_current = _local


def decode(raw: bytes | None) -> dict[str, int]:
    """The public counts in a slot copied by :meth:`Counters.raw` (all 0 for None: no slot)."""
    if raw is None:
        return dict.fromkeys(FIELDS, 0)
    return dict(zip(FIELDS, memoryview(raw).cast("Q")[:_N_FIELDS].tolist()))


def marks(raw: bytes) -> tuple[float | None, bool]:
    """(when the child marked its exit, in ``time.monotonic()`` seconds or None; whether it may
    have made a queue) in a slot copied by :meth:`Counters.raw`."""
    ns = int.from_bytes(raw[_EXITED_BYTES], sys.byteorder)
    return (ns / 1e9 if ns else None), raw[_MADE_QUEUE_BYTES] != _ZERO_WORD


def allocate() -> Counters:
    """A zeroed slot for a child about to be forked (from the parent)."""
    for block in _blocks:
        if block.free:
            break
    else:
        block = _Block()
        _blocks.append(block)
    index = block.free.pop()
    block.in_use[index] = 1
    base = index * _SLOT
    block.view[base:base + _SLOT] = _ZEROS  # zeroed (a reused slot keeps its last child's numbers)
    return Counters(block.view, base, block, index)


def release(counters: Counters) -> None:
    """Give a reaped child's slot back (its numbers stay readable until reused)."""
    block = counters._block
    if block is not None and block in _blocks and block.in_use[counters.index]:
        block.in_use[counters.index] = 0
        block.free.append(counters.index)


def for_this_process() -> Counters:
    """The slot this process writes to: its own slot in a procmagic child, a private one elsewhere."""
    return _current


def set_for_this_process(counters: Counters) -> None:
    global _current
    _current = counters


def _after_fork_in_child() -> None:
    # The child keeps the mappings (its own slot lives there) but must never allocate from the
    # parent's free lists: the parent would hand the same slot to a sibling.
    global _current
    _blocks.clear()
    _current = Counters(memoryview(bytearray(_SLOT * 8)).cast("Q"), 0, None, -1)


os.register_at_fork(after_in_child=_after_fork_in_child)
