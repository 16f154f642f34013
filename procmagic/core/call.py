"""``call`` and ``map``: run a function in forked children and get its values back.

The function is never pickled: a forked child already has it, with everything it closes over,
whether it was defined in a module, a script or a notebook cell (where Python 3.14's default
``forkserver`` start method makes ``multiprocessing.Pool`` fail). ``map``'s items are not pickled
either: the list is made before the fork, so each worker has it and receives only the numbers
of the chunks it should run. Only the values come back, on a
:class:`~procmagic.core.values.ResultChannel` (cloudpickle, pickle protocol 5 buffers).

An interrupt (KeyboardInterrupt) or any other exception in the parent stops every child
(SIGTERM, then SIGKILL after a second) and reaps it before it propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal as _signal
import socket
import struct
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .process import Process
from .status import ExitStatus
from .values import NoResult, Outcome, ResultChannel, decode, no_value, record

__all__ = ["call", "map", "call_async", "wait_async", "stop_all"]

T = TypeVar("T")
_CHUNK = struct.Struct("!I")
_STOP_GRACE = 1.0


def _run_in_child(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  channel: ResultChannel) -> Callable[[Process], int]:
    def target(proc: Process) -> int:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            channel.send_error(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise  # the child ends as killed by SIGINT, as Python does
            return 1
        return 0 if channel.send(value) else 1

    return target


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def _check_fn(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be callable (it runs in the child), not {type(fn).__name__} {fn!r}")


def stop_all(procs: list[Process], grace: float = _STOP_GRACE) -> None:
    """SIGTERM every live child's group, wait up to ``grace`` s, SIGKILL the rest; reap all.
    A second interrupt meanwhile skips to SIGKILL: nothing is left behind either way."""
    live = [p for p in procs if p.pid is not None and p.exitstatus is None]
    try:
        for proc in live:
            proc.kill(_signal.SIGTERM)
        import time

        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.join(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
            except OSError:
                pass
    finally:
        for proc in live:
            if proc.exitstatus is None:
                proc.kill(_signal.SIGKILL)
                try:
                    proc.join()
                except OSError:
                    pass


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a forked child and return its value.

    The child's exception is raised again here, with the child's traceback attached as its
    ``__cause__`` (a :class:`~procmagic.core.value_wire.RemoteTraceback`). A child that dies without
    a value (a signal, ``os._exit``) raises :class:`~procmagic.core.value_wire.NoResult`. ``fn`` is
    not pickled (the child has it); its value is (cloudpickle).

    >>> import procmagic, os
    >>> procmagic.call(os.getpid) != os.getpid()  # doctest: +SKIP
    True
    """
    _check_fn(fn)
    channel = ResultChannel()
    proc = Process(_run_in_child(fn, args, kwargs, channel), pipe=None, name=f"call:{_fn_name(fn)}")
    try:
        try:
            proc.start()
        finally:
            channel.parent_side()
        outcome = channel.outcome(proc)
    except BaseException:
        stop_all([proc])
        raise
    finally:
        channel.close()
    return outcome.unwrap()  # type: ignore[no-any-return]


# -- map ------------------------------------------------------------------------------------------
def _map_worker(fn: Callable[[Any], Any], items: list[Any], chunks: list[tuple[int, int]],
                channel: ResultChannel) -> Callable[[Process], int]:
    def target(proc: Process) -> int:
        sock = channel.child
        sock.setblocking(True)
        while True:
            head = b""
            while len(head) < _CHUNK.size:
                part = sock.recv(_CHUNK.size - len(head))
                if not part:
                    return 0  # the parent has no more chunks for us
                head += part
            (number,) = _CHUNK.unpack(head)
            start, end = chunks[number]
            index = start
            try:
                out = []
                for index in range(start, end):
                    out.append(fn(items[index]))
            except BaseException as exc:
                try:
                    exc.add_note(f"(in procmagic.map's worker {proc.worker}, at item {index})")
                except AttributeError:
                    pass
                channel.send_error(exc, tag=number)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                return 1
            if not channel.send(out, tag=number):
                return 1

    return target


def _workers(workers: Any, n: int) -> int:
    if workers is None:
        return max(1, min(n, len(os.sched_getaffinity(0))))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int (or None for one per CPU), not {workers!r}")
    return min(workers, n)


def _items(iterable: Any) -> list[Any]:
    try:
        return list(iterable)
    except TypeError:
        if hasattr(iterable, "__iter__") or hasattr(iterable, "__getitem__"):
            raise  # an iterable that failed while iterating: its own error says why
        raise TypeError(f"map's items must be an iterable (a list, a range, a generator), not "
                        f"{type(iterable).__name__} {iterable!r}; for one item use [x], or procmagic.call(fn, x)") from None


def map(fn: Callable[[Any], T], iterable: Iterable[Any], workers: int | None = None, *,
        chunksize: int | None = None) -> list[T]:
    """``[fn(x) for x in iterable]``, computed by ``workers`` forked children (default: one per
    CPU), in order.

    Items are handed out in chunks (``chunksize``; by default about four chunks per worker), each
    to the next free worker. The first exception in any worker stops every worker and is raised
    here, with that worker's traceback attached; a worker that dies raises
    :class:`~procmagic.core.value_wire.NoResult` naming the items it had.
    """
    _check_fn(fn)
    # every argument is checked before the items are read: a bad one is refused even for no items
    _workers(workers, 1)
    if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
        raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
    items = _items(iterable)
    n = len(items)
    if not n:
        return []
    count = _workers(workers, n)
    if chunksize is None:
        chunksize = max(1, math.ceil(n / (count * 4)))
    chunks = [(i, min(i + chunksize, n)) for i in range(0, n, chunksize)]
    return _Mapper(fn, items, chunks, count).run()


class _Mapper:
    """The parent's side of ``map``: hand out chunk numbers, collect values, watch for deaths."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any], chunks: list[tuple[int, int]], count: int) -> None:
        self.fn, self.items, self.chunks, self.count = fn, items, chunks, count
        self.results: list[Any] = [None] * len(items)
        self.next = 0
        self.pending: dict[int, list[int]] = {}  # worker -> chunk numbers sent, not yet answered
        self.procs: list[Process] = []
        self.channels: list[ResultChannel] = []
        self.left = len(chunks)

    def _send_next(self, w: int) -> None:
        channel = self.channels[w]
        if self.next < len(self.chunks):
            channel.parent.setblocking(True)
            try:
                channel.parent.sendall(_CHUNK.pack(self.next))
            except (BrokenPipeError, ConnectionResetError):
                return  # the worker failed and ended: its error (or its exit) is read next
            finally:
                channel.parent.setblocking(False)
            self.pending[w].append(self.next)
            self.next += 1
        elif not self.pending[w]:
            try:
                channel.parent.shutdown(socket.SHUT_WR)  # no more work: the worker ends
            except OSError:
                pass

    def run(self) -> list[Any]:
        name = f"map:{_fn_name(self.fn)}"
        try:
            for w in range(self.count):
                channel = ResultChannel()
                self.channels.append(channel)
                proc = Process(_map_worker(self.fn, self.items, self.chunks, channel), pipe=None, name=f"{name}/{w}")
                proc.worker = w
                self.procs.append(proc)
                try:
                    proc.start()
                finally:
                    channel.parent_side()
                self.pending[w] = []
            for _ in range(2):  # two chunks in flight per worker: it never waits for the next
                for w in range(self.count):
                    self._send_next(w)
            self._collect()
        except BaseException:
            stop_all(self.procs)
            raise
        finally:
            for channel in self.channels:
                channel.close()
        for proc in self.procs:
            proc.join()
        return self.results

    def _collect(self) -> None:
        # The exit fds are held open while polled: a reaper on another thread (the kernel's
        # IOPub loop) may reap a worker meanwhile, and must not close an fd this poll still uses.
        with contextlib.ExitStack() as held:
            exit_fds = [held.enter_context(p.hold_exit_fd()) for p in self.procs]
            self._collect_with(exit_fds)

    def _collect_with(self, exit_fds: list[int | None]) -> None:
        poller = select.poll()
        by_fd: dict[int, tuple[str, int]] = {}
        for w, (exit_fd, channel) in enumerate(zip(exit_fds, self.channels)):
            poller.register(channel.fileno(), select.POLLIN)
            by_fd[channel.fileno()] = ("value", w)
            if exit_fd is not None:
                poller.register(exit_fd, select.POLLIN)
                by_fd[exit_fd] = ("exit", w)
        polled = [w for w, fd in enumerate(exit_fds) if fd is None]
        gone: set[int] = set()
        while self.left:
            ended: list[int] = []
            for fd, _ in poller.poll(50 if polled else None):
                what, w = by_fd[fd]
                if what == "value":
                    if not self.channels[w].read():
                        poller.unregister(fd)
                    self._take(w)
                else:
                    poller.unregister(fd)
                    ended.append(w)
            ended += [w for w in polled if w not in gone and not self.procs[w].is_alive()]
            for w in ended:
                gone.add(w)
                self.channels[w].read()  # what it sent before it ended is all there now
                self._take(w)
                if self.pending[w]:
                    status = self.procs[w].join()
                    start, end = self.chunks[self.pending[w][0]][0], self.chunks[self.pending[w][-1]][1]
                    record(self.procs[w], no_value(status))
                    raise NoResult(f"procmagic.map's worker {w} (pid {status.pid}) {status.how} while working on "
                                   f"items {start} to {end - 1}", "signal" if status.signal else "no value", status)

    def _take(self, w: int) -> None:
        messages = self.channels[w].receiver.messages
        while messages:
            msg = messages.pop(0)
            outcome = decode(msg)
            if msg.tag in self.pending[w]:
                self.pending[w].remove(msg.tag)
            if not outcome.ok:
                raise outcome.error  # type: ignore[misc]
            start, end = self.chunks[msg.tag]
            self.results[start:end] = outcome.value
            self.left -= 1
            self._send_next(w)


# -- asyncio ----------------------------------------------------------------------------------------
_TICK = 0.1


@contextlib.contextmanager
def _awake(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Wake the loop every 0.1 s while we wait. ipykernel 7 turns the notebook's interrupt of a
    top-level ``await`` into a cancellation scheduled from another thread without waking the
    loop: an idle loop (waiting on a child) would only see it when the child ends. A tick lets the
    cancellation through at once, and with it the child's stop."""
    handle: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal handle
        handle = loop.call_later(_TICK, tick)

    tick()
    try:
        yield
    finally:
        if handle is not None:
            handle.cancel()


async def wait_async(proc: Process, timeout: float | None = None) -> ExitStatus:
    """Wait for ``proc`` to end without blocking the running event loop (its pidfd is watched
    with ``add_reader``; no thread). Returns its ExitStatus; TimeoutError after ``timeout`` s."""
    if proc.pid is None:
        from .errors import ProcessStateError

        raise ProcessStateError(f"process {proc.id} was never started: call start() before wait_async()")
    if proc.exitstatus is None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with proc.hold_exit_fd() as exit_fd:  # a reader of our own, on a copy of the pidfd
            fd = os.dup(exit_fd) if exit_fd is not None else None

        def check() -> None:
            if not done.done() and not proc.is_alive():
                done.set_result(None)

        handle = None
        if fd is not None:
            loop.add_reader(fd, check)
        else:
            def tick() -> None:
                nonlocal handle
                check()
                if not done.done():
                    handle = loop.call_later(0.05, tick)

            tick()
        try:
            with _awake(loop):
                await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"process {proc.id} (pid {proc.pid}) is still running after {timeout} s") from None
        finally:
            if fd is not None:
                loop.remove_reader(fd)
                os.close(fd)
            if handle is not None:
                handle.cancel()
    return proc.join(0)


async def call_async(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` for ``await``: the child's value is read by the running loop as it arrives, so
    a notebook's loop (top-level ``await``) keeps serving while the child works. Cancelling the
    task stops the child."""
    _check_fn(fn)
    loop = asyncio.get_running_loop()
    channel = ResultChannel()
    proc = Process(_run_in_child(fn, args, kwargs, channel), pipe=None, name=f"call:{_fn_name(fn)}")
    fd = None
    try:
        try:
            proc.start()
        finally:
            channel.parent_side()
        got: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                more = channel.read(4 * 1024 * 1024)  # a large value in pieces: the loop stays live
            except Exception as exc:
                if not got.done():
                    got.set_exception(exc)
                return
            if (channel.receiver.messages or not more) and not got.done():
                got.set_result(None)

        fd = channel.fileno()
        loop.add_reader(fd, readable)
        with _awake(loop):
            await got
        loop.remove_reader(fd)
        fd = None
        status = await wait_async(proc)
        outcome: Outcome = channel.finish(status)
        record(proc, outcome)
    except BaseException:
        stop_all([proc])
        raise
    finally:
        if fd is not None:
            loop.remove_reader(fd)
        channel.close()
    return outcome.unwrap()  # type: ignore[no-any-return]
