"""Swoole's own process tests, ported to procmagic: one test per ``.phpt`` file of swoole-src's
``tests/swoole_process/`` and ``tests/swoole_process_pool/`` that this suite did not cover
elsewhere, named after it (``test_<dir>__<file>``). Each keeps what the phpt asserts; where
procmagic differs on purpose, the comment says how (``docs/swoole.md`` has the mapping).

Workers report to the test through a queue; every wait is bounded by ``deadline()``.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from procmagic import Pool, Process
from procmagic.core import affinity
from procmagic.core import queue as pmq
from procmagic.core import queue_registry

from .helpers import deadline

WAIT = 20.0


@pytest.fixture(autouse=True)
def registry(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "queues"
    path.mkdir(mode=0o700)
    monkeypatch.setenv(queue_registry.ENV, str(path))


@pytest.fixture
def results() -> Iterator[pmq.Queue]:
    """A queue the children push their reports to."""
    queue = pmq.attach(None)
    yield queue
    queue.free()


def take(queue: pmq.Queue, n: int) -> list[str]:
    with deadline():
        return [queue.pop().decode() for _ in range(n)]


def run_child(target: Any) -> Any:
    proc = Process(target, pipe=None)
    proc.start()
    return proc.join(timeout=WAIT)


# -- tests/swoole_process ------------------------------------------------------------------------
def test_swoole_process__setaffinity(results: pmq.Queue) -> None:
    """Narrow to CPU 0, then widen again: the rule is the CPUs the process may use, not its mask."""
    allowed = affinity.allowed_cpus()

    def target(proc: Process) -> None:
        proc.set_affinity([allowed[0]])
        results.push(repr(sorted(os.sched_getaffinity(0))))
        proc.set_affinity(allowed[:2])
        results.push(repr(sorted(os.sched_getaffinity(0))))

    assert run_child(target).ok
    assert take(results, 2) == [repr([allowed[0]]), repr(allowed[:2])]


def test_swoole_process__getaffinity(results: pmq.Queue) -> None:
    def target(proc: Process) -> None:
        results.push(repr(proc.get_affinity()))

    assert run_child(target).ok
    assert take(results, 1) == [repr(sorted(os.sched_getaffinity(0)))]


def test_set_affinity_refuses_cpus_outside_the_allowed_set() -> None:
    proc = Process(lambda proc: None, pipe=None)
    outside = max(affinity.allowed_cpus()) + 1
    with pytest.raises(ValueError, match=r"are not all available: this process may use CPUs \[.*\].*not \[%d\]" % outside):
        proc.set_affinity([0, outside])


# -- tests/swoole_process_pool -------------------------------------------------------------------
def test_swoole_process_pool__bug_2652(results: pmq.Queue) -> None:
    """getProcess($workerId) with the worker's own id, inside that worker."""
    key = 0x5EED2652

    def target(pool: Pool, wid: int) -> None:
        me = pool.get_process(wid)
        me.use_queue(key)
        pool.get_process(wid).push("test")
        results.push(pool.get_process(wid).pop())
        me.free_queue()
        pool.shutdown()

    pool = Pool(1, target, respawn=False)
    pool.start()
    assert take(results, 1) == ["test"]
    assert [st.code for _, st in pool.statuses] == [0]


def test_swoole_process_pool__getprocess_1(results: pmq.Queue) -> None:
    def target(pool: Pool, wid: int) -> None:
        results.push(str(pool.get_process().pid == os.getpid()))
        pool.shutdown()

    pool = Pool(1, target, respawn=False)
    pool.start()
    assert take(results, 1) == ["True"]
