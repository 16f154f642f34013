"""The fork path and the child record: an interrupt at any point of start() never loses a child,
and done callbacks fire exactly once whoever reaps (a sibling's start(), another thread's loop).

Interrupts are injected deterministically at each named point of ``fork.py`` (its test hook):
either raised right there, as Python does when another thread took the signal and the main
thread runs the handler at its next bytecode, or sent as a real SIGINT to this process, which
the blocked signal mask holds until the parent's record exists.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, Iterator

import pytest

import procmagic
from procmagic import ExitStatus, Process
from procmagic.core import fork
from procmagic.core.reaper import registry

from .helpers import WAIT, pidfds, proc_state, wait_until


def noop(proc: Process) -> None:
    pass


def wait_for_parent(proc: Process) -> None:
    proc.read(timeout=WAIT)


@pytest.fixture
def interrupt_at() -> Iterator[Any]:
    """``interrupt_at(point, how)``: interrupt the next start() at ``point``, once."""

    def arm(point: str, how: str) -> None:
        def hook(where: str) -> None:
            if where != point:
                return
            fork.set_fault_hook(None)  # once
            if how == "raise":
                raise KeyboardInterrupt(f"injected at {where}")
            if how == "error":
                raise OSError(5, f"injected at {where}")
            os.kill(os.getpid(), signal.SIGINT)

        fork.set_fault_hook(hook)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield arm
    fork.set_fault_hook(None)


@pytest.mark.parametrize("how", ["raise", "signal", "error"])
@pytest.mark.parametrize("point", fork.POINTS)
def test_an_interrupt_anywhere_in_start_never_loses_the_child(point, how, spawn, interrupt_at, fresh_wait):
    heard: list[ExitStatus] = []
    p = spawn(wait_for_parent)
    p.add_done_callback(heard.append)  # subscribed before start: hears the exit whatever happens
    interrupt_at(point, how)
    with pytest.raises(OSError if how == "error" else KeyboardInterrupt):
        p.start()
    if point == "blocked" and how in ("raise", "error"):
        # interrupted before the fork: nothing started, nothing to reap, nothing leaked
        assert p.pid is None and p.exitstatus is None
        assert heard == []
        return
    assert p.pid is not None, f"interrupted at {point!r}: the child was forked but not recorded"
    assert p in registry.live() or p.exitstatus is not None
    assert procmagic.get(p.id) is p
    p.write(b"go")  # the pipe works: the child's end was handed over despite the interrupt
    status = p.join(timeout=WAIT)
    assert status.code == 0 and status.pid == p.pid
    assert heard == [status]


def test_a_done_callback_hears_a_child_reaped_by_a_siblings_start(spawn, fresh_wait):
    heard: list[ExitStatus] = []
    first = spawn(noop, pipe=None)
    first.add_done_callback(heard.append)
    pid = first.start()
    wait_until(lambda: proc_state(pid) == "Z", what="the first child's exit")
    spawn(noop, pipe=None).start()  # start() reaps whatever has finished: the first child
    assert [s.pid for s in heard] == [pid]
    assert first.exitstatus is heard[0]
    late: list[ExitStatus] = []
    first.add_done_callback(late.append)  # added after the reap: called at once
    assert late == [heard[0]]
    first.join(timeout=WAIT)
    assert len(heard) == 1  # exactly once


def test_a_done_callback_added_while_running_fires_once(spawn, fresh_wait):
    p = spawn(wait_for_parent)
    p.start()
    heard: list[ExitStatus] = []
    p.add_done_callback(heard.append)
    p.add_done_callback(heard.append)  # two subscriptions, two calls
    p.write(b"go")
    status = p.join(timeout=WAIT)
    registry.reap_ready()
    assert heard == [status, status]


def test_a_restarted_process_has_a_new_record(spawn, fresh_wait):
    heard: list[int] = []
    p = spawn(noop, pipe=None)
    p.add_done_callback(lambda s: heard.append(s.pid))
    first = p.start()
    p.join(timeout=WAIT)
    second = p.start()  # the first run's callbacks were used up
    p.join(timeout=WAIT)
    assert heard == [first] and second != first


def test_threads_racing_to_reap_record_the_exit_once(spawn, fresh_wait):
    gate_r, gate_w = os.pipe()  # the children exit together, once every one has started

    def gated(proc: Process) -> None:
        os.close(gate_w)
        os.read(gate_r, 1)

    procs = [spawn(gated, pipe=None) for _ in range(8)]
    heard: list[int] = []
    lock = threading.Lock()

    def hear(status: ExitStatus) -> None:
        with lock:
            heard.append(status.pid)

    try:
        for p in procs:
            p.add_done_callback(hear)
            p.start()
    finally:
        os.close(gate_w)
        os.close(gate_r)
    for p in procs:
        wait_until(lambda p=p: proc_state(p.pid) == "Z", what="every exit")
    threads = [threading.Thread(target=registry.reap_ready) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(heard) == sorted(p.pid for p in procs)
    assert all(p.join(timeout=WAIT).code == 0 for p in procs)


def test_two_loops_on_two_threads_reap_each_child_once(spawn, fresh_wait):
    """The kernel can watch from its main loop and its I/O thread's loop at once."""
    other = asyncio.new_event_loop()
    ready = threading.Event()

    def run_other() -> None:
        asyncio.set_event_loop(other)
        other.call_soon(ready.set)
        other.run_forever()

    thread = threading.Thread(target=run_other, daemon=True)
    allowed = procmagic.allow_threads(lambda t: t is thread, "the test's I/O loop, like the kernel's IOPub thread")
    thread.start()
    assert ready.wait(WAIT)
    stop_other = procmagic.watch(other, thread=thread.ident)  # from here, for the loop's thread
    here = asyncio.new_event_loop()
    stop_here = procmagic.watch(here)
    try:
        heard: list[int] = []
        done = threading.Event()
        procs = [spawn(wait_for_parent) for _ in range(3)]
        for p in procs:
            p.add_done_callback(lambda s: (heard.append(s.pid), len(heard) == 3 and done.set()))
            p.start()
        for p in procs:
            p.write(b"go")
        assert done.wait(WAIT)  # reaped by the other thread's loop: this one is not running
        assert sorted(heard) == sorted(p.pid for p in procs)
        here.run_until_complete(asyncio.sleep(0))  # this loop's readers go too
        assert registry.watched_by(here) == [] and registry.watched_by(other) == []
    finally:
        stop_here()
        here.close()
        stop_other()  # from here too: the readers go on the loop's own thread
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), other).result(WAIT)
        assert registry.watched_by(other) == []
        other.call_soon_threadsafe(other.stop)
        thread.join(WAIT)
        other.close()
        allowed()


def test_mark_stop_reason_reaches_the_status(spawn, fresh_wait):
    p = spawn(wait_for_parent)
    p.start()
    assert p.mark_stop_reason("timeout") is True
    assert p.mark_stop_reason("interrupt") is False  # the first reason stands
    p.kill(signal.SIGTERM)
    status = p.join(timeout=WAIT)
    assert status.stop_reason == "timeout" and status.timed_out
    assert "timed out" in status.how
    with pytest.raises(ValueError, match="non-empty str"):
        p.mark_stop_reason("")


def test_child_setup_runs_in_the_child_before_the_target(spawn):
    def setup(proc: Process) -> None:
        proc.write(f"setup {os.getpid()}")

    p = spawn(lambda proc: proc.write(b"target") and None, child_setup=setup)
    pid = p.start()
    assert p.read(timeout=WAIT) == f"setup {pid}".encode()
    assert p.read(timeout=WAIT) == b"target"
    assert p.join(timeout=WAIT).code == 0
    with pytest.raises(TypeError, match="child_setup must be callable"):
        Process(noop, child_setup=42)  # type: ignore[arg-type]


def test_sockets_given_to_a_child_are_its_own(spawn):
    import socket

    mine, theirs = socket.socketpair()
    other_mine, other_theirs = socket.socketpair()
    fork.close_in_children(mine)  # the parent's end: no child may hold it

    def child(proc: Process) -> int:
        theirs.sendall(b"from the child")
        # the sibling's end was closed in this child: only the sibling holds it
        return 0 if other_theirs.fileno() == -1 and mine.fileno() == -1 else 3

    p = spawn(child, pipe=None)
    p.give_to_child(theirs)
    q = spawn(noop, pipe=None)
    q.give_to_child(other_theirs)  # q is never started here: p's child must close it anyway
    try:
        p.start()
        assert theirs.fileno() == -1  # closed in the parent by the fork
        mine.settimeout(WAIT)
        assert mine.recv(100) == b"from the child"
        assert mine.recv(100) == b""  # end of file: nobody else holds the child's end
        assert p.join(timeout=WAIT).code == 0
    finally:
        q.close()  # never started: the socket given to it is closed too
        assert other_theirs.fileno() == -1
        for sock in (mine, other_mine):
            sock.close()


def test_a_child_reaped_late_reports_the_time_it_really_ran(spawn, fresh_wait):
    """Reaped a while after it ended (the parent was busy, no loop watching): the wall time
    ends when the child ended, not at the reap."""
    import time

    p = spawn(noop, pipe=None)
    pid = p.start()
    wait_until(lambda: proc_state(pid) == "Z", what="the exit")
    ended_by = time.monotonic() - p.started_at  # it had ended by now
    time.sleep(0.5)  # busy elsewhere
    status = p.join(timeout=WAIT)
    assert status.wall_time <= ended_by < ended_by + 0.5 <= time.monotonic() - p.started_at


def test_a_child_reaped_while_a_loop_adds_its_reader_leaves_no_reader_and_no_pidfd(spawn, fresh_wait):
    """Another thread may reap a child (a sibling's start(), a join()) just as a loop adds the
    reader on its pidfd. That reader must go with the reap: left behind, it held the pidfd open
    for good and fired at every iteration of the loop (a kernel's IOPub loop, in a soak of
    ``%%spawn -n 4 --bg``). Here the reap lands inside the loop's add_reader."""
    class ReapingLoop(asyncio.SelectorEventLoop):
        def add_reader(self, fd, callback, *args):  # type: ignore[override]
            handle = super().add_reader(fd, callback, *args)
            record = args[-1]
            wait_until(lambda: proc_state(record.pid) == "Z", what="the exit")
            registry.poll(record)  # the reap, between the loop's check and its bookkeeping
            return handle

    loop = ReapingLoop()
    stop = procmagic.watch(loop)
    before = pidfds()
    try:
        procs = [spawn(noop, pipe=None) for _ in range(3)]
        for p in procs:
            p.start()  # this thread is the loop's: its reader is added (and the child reaped) here
        assert [p.join(timeout=WAIT).code for p in procs] == [0, 0, 0]
        loop.run_until_complete(asyncio.sleep(0.05))
        assert registry.watched_by(loop) == []
        assert pidfds() == before
    finally:
        stop()
        loop.close()


def test_an_interrupt_during_the_childs_set_up_ends_it_as_killed_by_sigint(spawn, capfd):
    """A SIGINT aimed at the parent's process group just before the child left it waits,
    blocked, until the child's handlers are in place, and lands in its set-up: the child ends
    as the interrupt would have ended its target, without a set-up traceback."""
    p = spawn(lambda proc: None, pipe=None,
              child_setup=lambda proc: os.kill(os.getpid(), signal.SIGINT))
    p.start()
    status = p.join(timeout=WAIT)
    assert status.signal == signal.SIGINT and status.how == "killed by SIGINT", status
    assert "failed to set itself up" not in capfd.readouterr().err
