"""Reaping from event loops: a reader on each child's pidfd, on as many loops as you like.

Part of the registry (``reaper.py``), kept apart because of its one hard rule: a loop's reader
may only be added or removed on that loop's own thread, and a pidfd may only be closed once no
loop reader (and no ``hold()``) uses it, or a poller on another thread could see its number
reused. Every loop gets a :class:`_Watch`; whichever loop sees an exit first reaps the child
(``Registry.poll``, under the registry's lock), and the other loops' readers are removed on
their own threads (``call_soon_threadsafe``) before the pidfd is closed.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from .record import ChildRecord

if TYPE_CHECKING:
    from .process import Process
    from .status import ExitStatus

__all__ = ["LoopWatching"]


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


#: What watch() uses of a loop.
_LOOP_METHODS = ("add_reader", "remove_reader", "call_soon_threadsafe", "call_later")


class _Watch:
    """One event loop reaping for the registry, and the thread it runs on."""

    def __init__(self, loop: Any, thread: int | None = None) -> None:
        self.loop = loop
        self.thread = threading.get_ident() if thread is None else thread
        self.readers: set[ChildRecord] = set()
        self.poll_handle: Any = None

    def call(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop's thread: now if this is it, else handed over. False
        when the loop is closed."""
        if threading.get_ident() == self.thread:
            fn(*args)
            return True
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:
            return False


class LoopWatching:
    """The registry's pidfd users and event loops (mixed into ``Registry``)."""

    _lock: "threading.RLock"
    _live: dict[int, ChildRecord]
    _watches: list[_Watch]

    def poll(self, proc: "Process | ChildRecord") -> "ExitStatus | None":
        raise NotImplementedError  # Registry defines it

    def reap_ready(self) -> "list[ExitStatus]":
        raise NotImplementedError  # Registry defines it

    # -- the pidfd's users ---------------------------------------------------------------------
    def hold(self, record: ChildRecord) -> int | None:
        """Borrow ``record``'s pidfd to poll it: it stays open (its number never reused) until
        :meth:`release`. None when there is none (no pidfd support, or already reaped)."""
        with self._lock:
            if record.pidfd is None:
                return None
            record.holds += 1
            return record.pidfd

    def release(self, record: ChildRecord) -> None:
        with self._lock:
            if record.pidfd is None:
                return
            record.holds = max(0, record.holds - 1)
            if record.holds == 0 and record.status is not None:
                _close(record.pidfd)
                record.pidfd = None

    # -- event loops ---------------------------------------------------------------------------
    def watch(self, loop: Any, *, thread: int | None = None) -> Callable[[], None]:
        """Reap children from an asyncio loop as they exit; returns a function that stops it.

        Call it from the loop's own thread, or pass that thread's ident as ``thread`` (say
        ``kernel.iopub_thread.thread.ident``): readers are then added and removed on the loop
        with ``call_soon_threadsafe``. Several loops may watch at once (the main thread's and an
        I/O thread's): whichever sees an exit first reaps the child, so a child ending while
        another thread is busy is reaped, and timed, at once. Callbacks and listeners then run on
        that loop's thread. procmagic's kernel integration attaches the kernel's loop, so a
        notebook never shows zombies.
        """
        missing = [name for name in _LOOP_METHODS if not callable(getattr(loop, name, None))]
        if missing:
            raise TypeError(f"watch() takes an asyncio event loop (with {', '.join(_LOOP_METHODS)}), not {loop!r}: "
                            "pass asyncio.get_running_loop(), or the kernel's io_loop.asyncio_loop")
        if thread is not None and (isinstance(thread, bool) or not isinstance(thread, int)):
            raise TypeError(f"thread must be the loop's thread ident (threading.get_ident() there) or None, "
                            f"not {thread!r}")
        with self._lock:
            if any(w.loop is loop for w in self._watches):
                return lambda: self.unwatch(loop)
            w = _Watch(loop, thread)
            self._watches.append(w)
            for record in list(self._live.values()):
                self._watch_one(w, record)
        self.reap_ready()
        return lambda: self.unwatch(loop)

    def unwatch(self, loop: Any = None) -> None:
        """Stop reaping from ``loop`` (None: from every loop); from any thread (the readers are
        removed on the loop's own)."""
        with self._lock:
            gone = [w for w in self._watches if loop is None or w.loop is loop]
            self._watches = [w for w in self._watches if w not in gone]
        for w in gone:
            if not w.call(self._drop_watch, w):  # the loop is closed: nothing runs on it any more
                for record in list(w.readers):
                    w.readers.discard(record)
                    self.release(record)

    def _drop_watch(self, w: _Watch) -> None:
        for record in list(w.readers):
            self._remove_reader(w, record)
        if w.poll_handle is not None:
            w.poll_handle.cancel()
            w.poll_handle = None

    def watched_by(self, loop: Any) -> list["Process"]:
        """The children ``loop`` has a pidfd reader for (what :meth:`watch` set up)."""
        for w in list(self._watches):
            if w.loop is loop:
                return [r.process for r in list(w.readers)]
        return []

    def _watch_one(self, w: _Watch, record: ChildRecord) -> None:
        if record.pidfd is None:
            if w.poll_handle is None:
                w.call(self._start_polling, w)
            return
        record.holds += 1  # released by _remove_reader
        if not w.call(self._add_reader, w, record):
            record.holds -= 1

    def _add_reader(self, w: _Watch, record: ChildRecord) -> None:
        # The check and the entry in w.readers under the lock the reap sets the status under:
        # a child reaped by another thread just after an unlocked check would find no entry
        # (its reap removes only the readers it sees), and its reader would then be left on
        # the loop for good, holding the pidfd open and firing at every iteration.
        with self._lock:
            fd = record.pidfd
            if fd is None or record.status is not None or w not in self._watches:
                self.release(record)  # reaped (or unwatched) before this loop got to it
                return
            w.readers.add(record)
        try:
            w.loop.add_reader(fd, self._on_exit_fd, w, record)
        except (RuntimeError, ValueError, OSError):  # loop closed: join()/wait() still reap
            if record in w.readers:
                w.readers.discard(record)
                self.release(record)

    def _on_exit_fd(self, w: _Watch, record: ChildRecord) -> None:
        """The loop's reader: reap the child; once it is reaped (by anyone), drop the reader."""
        if self.poll(record) is not None:
            self._remove_reader(w, record)

    def _remove_reader(self, w: _Watch, record: ChildRecord) -> None:
        if record in w.readers:
            w.readers.discard(record)
            if record.pidfd is not None:
                try:
                    w.loop.remove_reader(record.pidfd)
                except (RuntimeError, ValueError, OSError):
                    pass
            self.release(record)

    def _unwatch_record(self, record: ChildRecord) -> None:
        for w in list(self._watches) if self._watches else ():
            if record in w.readers and not w.call(self._remove_reader, w, record):
                w.readers.discard(record)
                self.release(record)
        with self._lock:
            fd = record.pidfd
            if record.holds == 0 and fd is not None:
                record.pidfd = None
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _start_polling(self, w: _Watch) -> None:
        if w.poll_handle is None and w in self._watches:
            w.poll_handle = w.loop.call_later(0.05, self._poll_tick, w)

    def _poll_tick(self, w: _Watch) -> None:
        w.poll_handle = None
        self.reap_ready()
        if w in self._watches and any(r.pidfd is None for r in list(self._live.values())):
            w.poll_handle = w.loop.call_later(0.05, self._poll_tick, w)
