"""The parent's side of a spawn does little (issue 13; its cost is measured in bench/, never
asserted here). Each test checks that a shortcut keeps what the long way promised: the guard's
cached verdict for a lone main thread, ``join()``'s single wait on the pidfd, the registry's
plain weak references by id."""

from __future__ import annotations

import gc
import threading
from typing import Any, Callable

import pytest

import procmagic
from procmagic import ForkRefused, Process
from procmagic.core import guard
from procmagic.core.reaper import registry

from .helpers import WAIT


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
