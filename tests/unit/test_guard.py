"""The threaded-fork guard: census, verdict, refusal messages, force, allow-list, 3.12 warning."""

from __future__ import annotations

import _thread
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

import procmagic
from procmagic import ForkRefused, ForkWarning, Process, allow_threads, census

from .helpers import WAIT, wait_until


def noop(proc: Process) -> None:
    pass


def idle_worker(stop: threading.Event) -> None:
    stop.wait(WAIT * 3)


@pytest.fixture
def live_thread() -> Iterator[threading.Thread]:
    """A plain daemon thread named 'pm-idle' running idle_worker, stopped at teardown."""
    stop = threading.Event()
    thread = threading.Thread(target=idle_worker, args=(stop,), name="pm-idle", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(WAIT)
    assert not thread.is_alive()


class Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="pm-subclass")
        self.stop = threading.Event()

    def run(self) -> None:
        self.stop.wait(WAIT * 3)


def _deprecation(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, DeprecationWarning) and "fork()" in str(w.message)]


# -- census ------------------------------------------------------------------------------------
def test_census_with_no_other_thread_is_ok():
    c = census()
    assert c.ok and c.on_main_thread and c.caller == "MainThread"
    assert c.offenders == ()
    assert c.refusal() == ""
    text = str(c)
    assert text.splitlines()[:2] == ["fork verdict: ok", "caller: MainThread"]
    assert procmagic.census().ok


def test_census_names_a_live_thread(live_thread):
    c = census()
    assert not c.ok
    (info,) = c.offenders
    assert info.name == "pm-idle"
    assert info.cls == "threading.Thread"
    assert info.target == f"{__name__}.idle_worker"
    assert info.daemon is True
    assert info.native_id == live_thread.native_id
    text = str(c)
    assert text.startswith("fork verdict: refused")
    assert f"python thread 'pm-idle' (threading.Thread, runs {__name__}.idle_worker, daemon=True) -> NOT ALLOWED" in text


def test_census_reports_native_threads_it_cannot_name():
    """A thread started with _thread has no threading.Thread: it shows as a native thread."""
    release = _thread.allocate_lock()
    release.acquire()
    tids: list[int] = []

    def body() -> None:
        tids.append(threading.get_native_id())
        release.acquire()

    _thread.start_new_thread(body, ())
    try:
        wait_until(lambda: tids, what="the native thread's start")
        c = census()
        assert tids[0] in [n.tid for n in c.native]
        assert f"native thread tid {tids[0]}" in str(c)
        assert census(native=False).native == ()
    finally:
        release.release()
    wait_until(lambda: not os.path.exists(f"/proc/self/task/{tids[0]}"), what="the native thread's end")


# -- refusals ----------------------------------------------------------------------------------
def test_start_refuses_with_a_live_thread_and_names_it(spawn, live_thread):
    p = spawn(noop)
    with pytest.raises(ForkRefused) as info:
        p.start()
    message = str(info.value)
    assert message.startswith("refusing to fork: 1 thread besides the main thread is alive")
    assert f"'pm-idle' (threading.Thread, runs {__name__}.idle_worker, daemon=True)" in message
    assert "Stop them first" in message and "force=True" in message
    assert info.value.census.offenders[0].name == "pm-idle"  # type: ignore[attr-defined]
    assert p.pid is None


def test_start_refuses_with_a_thread_subclass(spawn):
    worker = Worker()
    worker.start()
    try:
        with pytest.raises(ForkRefused) as info:
            spawn(noop).start()
        assert f"'pm-subclass' ({__name__}.Worker, runs {__name__}.Worker.run, daemon=False)" in str(info.value)
    finally:
        worker.stop.set()
        worker.join(WAIT)


def test_start_refuses_with_a_live_thread_pool_and_names_its_workers(spawn):
    p = spawn(noop)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pm-pool") as pool:
        list(pool.map(abs, range(4)))  # the workers stay alive, idle, until shutdown
        with pytest.raises(ForkRefused) as info:
            p.start()
    message = str(info.value)
    assert "'pm-pool_0' (threading.Thread, runs concurrent.futures.thread._worker, daemon=False)" in message
    # Once the pool is shut down, forking is safe again.
    p.start()
    assert p.join(timeout=WAIT).code == 0


def test_start_refuses_from_a_non_main_thread():
    box: dict[str, Any] = {}

    def fork_here() -> None:
        p = Process(noop)
        try:
            for force in (False, True):
                try:
                    p.start(force=force)
                except Exception as exc:  # noqa: BLE001 - the test inspects it
                    box[force] = exc
                else:  # pragma: no cover - a bug: reap what was forked
                    p.join(timeout=WAIT)
        finally:
            p.close()

    thread = threading.Thread(target=fork_here, name="pm-forker")
    thread.start()
    thread.join(WAIT)
    for force in (False, True):
        exc = box[force]
        assert isinstance(exc, ForkRefused), exc
        assert str(exc).startswith("refusing to fork from thread 'pm-forker': only the main thread may fork")
        assert "force=True does not lift this" in str(exc)
        assert exc.census.on_main_thread is False  # type: ignore[attr-defined]


@pytest.mark.filterwarnings(r"ignore:.*fork\(\) may lead to deadlocks:DeprecationWarning")  # 3.12+: expected when forced
def test_force_forks_anyway_with_a_fork_warning(spawn, live_thread):
    p = spawn(lambda proc: proc.write(b"forced") and None)
    with pytest.warns(ForkWarning, match=r"(?s)forking anyway \(force=True\).*'pm-idle'"):
        p.start(force=True)
    assert p.read(timeout=WAIT) == b"forced"
    assert p.join(timeout=WAIT).code == 0


# -- the allow-list ----------------------------------------------------------------------------
def test_allow_threads_with_a_predicate_lets_start_pass(spawn, live_thread):
    remove = allow_threads(lambda t: t.name == "pm-idle", "the test's idle thread")
    try:
        c = census()
        assert c.ok and c.threads[0].allowed_by == "the test's idle thread"
        assert "-> allowed: the test's idle thread" in str(c)
        p = spawn(noop)
        p.start()
        assert p.join(timeout=WAIT).code == 0
    finally:
        remove()
    assert not census().ok  # the rule is gone


def test_allow_threads_with_a_module_prefix(live_thread):
    remove = allow_threads(__name__.rpartition(".")[0], "threads of the test package")
    try:
        assert census().ok  # idle_worker comes from this module, under the prefix
    finally:
        remove()
    remove = allow_threads(__name__ + "_not", "a sibling module name is no prefix")
    try:
        assert not census().ok
    finally:
        remove()


def test_a_broken_allow_rule_does_not_break_forking(live_thread):
    def broken(thread: threading.Thread) -> bool:
        raise RuntimeError("broken rule")

    remove = allow_threads(broken, "broken")
    try:
        assert not census().ok  # it simply allows nothing
    finally:
        remove()


@pytest.mark.parametrize("rule", ["", 42, None])
def test_allow_threads_refuses_a_bad_rule(rule):
    with pytest.raises(TypeError, match="rule must be a module prefix"):
        allow_threads(rule, "reason")


# -- Python 3.12+'s DeprecationWarning at fork -------------------------------------------------
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="the fork DeprecationWarning is new in 3.12")


@needs_312
def test_fork_deprecation_warning_is_suppressed_when_the_guard_passed(spawn, live_thread):
    # Control: a raw fork here does warn, so the test would see the warning if it leaked.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    assert _deprecation(caught)
    remove = allow_threads(lambda t: t.name == "pm-idle", "the test's idle thread")
    try:
        p = spawn(noop)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p.start()
        assert _deprecation(caught) == []
        assert p.join(timeout=WAIT).code == 0
    finally:
        remove()


@needs_312
def test_fork_deprecation_warning_is_shown_when_forced(spawn, live_thread):
    p = spawn(noop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        p.start(force=True)
    assert [w for w in caught if issubclass(w.category, ForkWarning)]
    (warning,) = _deprecation(caught)
    assert "may lead to deadlocks in the child" in str(warning.message)
    assert p.join(timeout=WAIT).code == 0
