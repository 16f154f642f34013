"""The parent's side of a spawn does little (issue 13; its cost is measured in bench/, never
asserted here). Each test checks that a shortcut keeps what the long way promised: the guard's
cached verdict for a lone main thread, ``join()``'s single wait on the pidfd, the registry's
plain weak references by id."""

from __future__ import annotations

import gc
import os
import threading
from typing import Any, Callable

import pytest

import procmagic
from procmagic import ExitStatus, ForkRefused, Process
from procmagic.core import guard
from procmagic.core.reaper import registry

from .helpers import WAIT, wait_until


def noop(proc: Process) -> None:
    pass


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on another thread and return what it returned (bounded: a hang fails)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), f"{fn} still running after {WAIT} s"
    assert out, f"{fn} raised (see the thread's traceback above)"
    return out[0]


# -- the guard ---------------------------------------------------------------------------------
def test_the_lone_main_threads_verdict_is_the_full_census():
    assert guard.check() == guard.census(native=False)
    assert guard.check().ok


def test_a_thread_started_after_a_passing_check_is_still_refused(spawn):
    assert guard.check().ok  # the cached verdict
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(WAIT * 3,), name="pm-late", daemon=True)
    thread.start()
    try:
        with pytest.raises(ForkRefused, match="pm-late"):
            spawn(noop, pipe=None).start()
    finally:
        stop.set()
        thread.join(WAIT)
    p = spawn(noop, pipe=None)
    p.start()
    assert p.join(timeout=WAIT).ok


def test_a_renamed_main_thread_is_the_caller_the_verdict_names():
    main = threading.main_thread()
    name = main.name
    try:
        main.name = "pm-renamed"
        assert guard.check().caller == "pm-renamed"
    finally:
        main.name = name
    assert guard.check().caller == name


class Idle(threading.Thread):
    """A thread allowed by module prefix (this test module), as a kernel's own threads are."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        self.stop.wait(WAIT * 3)


@pytest.fixture
def allowed_thread() -> Any:
    remove = guard.allow_threads(__name__, "this test's idle thread")
    thread = Idle("pm-allowed")
    thread.start()
    yield thread, remove
    remove()
    thread.stop.set()
    thread.join(WAIT)


def test_a_passing_verdict_with_allowed_threads_expires_when_its_rule_goes(allowed_thread):
    thread, remove = allowed_thread
    first = guard.check()
    assert first.ok and [t.name for t in first.threads] == ["pm-allowed"]
    assert guard.check() == first  # reused while nothing it rests on moved
    remove()
    with pytest.raises(ForkRefused, match="pm-allowed"):
        guard.check()


def test_a_thread_started_after_a_passing_verdict_with_allowed_threads_is_refused(allowed_thread, spawn):
    assert guard.check().ok
    stop = threading.Event()
    late = threading.Thread(target=stop.wait, args=(WAIT * 3,), name="pm-late2", daemon=True)
    late.start()
    try:
        with pytest.raises(ForkRefused, match="pm-late2"):
            spawn(noop, pipe=None).start()
    finally:
        stop.set()
        late.join(WAIT)
    assert guard.check().ok


def test_a_predicate_rule_is_asked_again_at_every_check(allowed_thread):
    answers = [True, False]
    remove = guard.allow_threads(lambda t: t.name == "pm-judged" and answers.pop(0), "judged each time")
    stop = threading.Event()
    judged = threading.Thread(target=stop.wait, args=(WAIT * 3,), name="pm-judged", daemon=True)  # no module rule
    judged.start()
    try:
        assert guard.check().ok
        with pytest.raises(ForkRefused, match="pm-judged"):
            guard.check()
    finally:
        remove()
        stop.set()
        judged.join(WAIT)


# -- join --------------------------------------------------------------------------------------
def test_join_without_a_timeout_returns_the_status_another_thread_reaped(spawn, fresh_wait):
    gate_r, gate_w = os.pipe()

    def gated(proc: Process) -> None:
        os.close(gate_w)
        os.read(gate_r, 1)

    p = spawn(gated, pipe=None)
    heard: list[ExitStatus] = []
    p.add_done_callback(heard.append)
    p.start()
    os.close(gate_r)
    joined: list[ExitStatus] = []
    joiner = threading.Thread(target=lambda: joined.append(p.join()), daemon=True)
    joiner.start()  # blocks in join() until the child ends
    os.close(gate_w)  # the child ends; this thread races the joiner to reap it
    wait_until(lambda: registry.reap_ready() or p.exitstatus is not None, what="the reap")
    joiner.join(WAIT)
    assert not joiner.is_alive()
    assert joined == [p.exitstatus] and joined[0].ok
    assert heard == joined  # recorded once, heard once


def test_join_without_a_timeout_of_a_child_reaped_outside_procmagic_returns(spawn, fresh_wait):
    p = spawn(noop, pipe=None)
    pid = p.start()
    os.waitpid(pid, 0)  # another library's waitpid takes the status first
    status = in_thread(p.join)
    assert status.how == "status unknown (reaped outside procmagic)"


def test_join_without_a_timeout_waits_for_a_child_that_is_still_running(spawn):
    def slow(proc: Process) -> int:
        proc.read()  # until the parent writes
        return 7

    p = spawn(slow, pipe="stream")
    p.start()
    joined: list[ExitStatus] = []
    joiner = threading.Thread(target=lambda: joined.append(p.join()), daemon=True)
    joiner.start()
    joiner.join(0.2)
    assert joiner.is_alive() and not joined  # still waiting: the child has not ended
    p.write(b"go")
    joiner.join(WAIT)
    assert [s.code for s in joined] == [7]


# -- the registry of children by id ------------------------------------------------------------
def test_procs_keeps_referenced_children_and_forgets_dropped_ones(spawn, fresh_wait):
    kept = spawn(noop, pipe=None)
    kept.start()
    kept.join(timeout=WAIT)
    dropped = []
    for _ in range(150):  # past the point where the registry drops dead references (64, doubling)
        p = Process(noop, pipe=None)
        p.start()
        p.join(timeout=WAIT)
        dropped.append(p.id)
        del p
    gc.collect()
    ids = [p.id for p in procmagic.procs()]
    assert kept.id in ids
    assert not set(dropped) & set(ids)
    assert procmagic.get(kept.id) is kept
    assert len(registry._known) < 150  # the dead were dropped, not kept as empty references
