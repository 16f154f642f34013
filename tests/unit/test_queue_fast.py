"""The queue's two builds of push/pop: the C accelerator (procmagic.core._queue_fast) and the
pure-Python path. tests/unit/test_queue.py runs every queue test on both; this file checks what
is particular to having two: the switch (PROCMAGIC_PURE_QUEUE, use_accelerator), that counts
stay exact whichever path counts, that both raise exactly the same errors, and that the C path
releases the GIL and lets a KeyboardInterrupt end a blocking pop.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import types
from typing import Any, Callable, Iterator

import pytest

from procmagic import NoQueue, Process, QueueEmpty, QueueFull
from procmagic.core import counters
from procmagic.core import queue as pmq
from procmagic.core import queue_hot

from .helpers import deadline
from .test_queue import MSGMAX, ROOT, WAIT, wait_blocked

pytestmark = pytest.mark.usefixtures("queue_records")

needs_c = pytest.mark.skipif(not queue_hot.accelerator_available(), reason="the C accelerator is not built here")
PATHS = [pytest.param(True, id="c", marks=needs_c), pytest.param(False, id="pure")]


@pytest.fixture
def on_path() -> Iterator[Callable[[bool], None]]:
    """``on_path(accelerated)`` switches this process's queue path; the test's end restores it."""
    was = queue_hot.accelerated()
    yield queue_hot.use_accelerator
    queue_hot.use_accelerator(was)


def script(code: str, pure: bool | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop(queue_hot.PURE_ENV, None)
    if pure is not None:
        env[queue_hot.PURE_ENV] = "1" if pure else "0"
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def my_counts() -> tuple[int, int, int, int]:
    snap = counters.for_this_process().snapshot()
    return snap["pushes"], snap["bytes_pushed"], snap["pops"], snap["bytes_popped"]


# -- which path runs -----------------------------------------------------------------------------
def test_the_accelerator_is_built_wherever_there_is_a_c_compiler() -> None:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) here: the pure-Python path is what runs, by design")
    assert queue_hot.accelerator_available(), "setup.py did not build procmagic.core._queue_fast: see pip's output"


@pytest.mark.parametrize("value, accelerated", [(None, True), ("1", False), ("0", True)])
def test_procmagic_pure_queue_chooses_the_path_at_import(value: str | None, accelerated: bool) -> None:
    if accelerated and not queue_hot.accelerator_available():
        pytest.skip("the C accelerator is not built here")
    code = """
        from procmagic.core import queue as pmq, queue_hot
        with pmq.attach(None) as q:
            print(queue_hot.accelerated(), type(q.push).__name__, type(q.pop).__name__)
    """
    child = script(code, pure=None if value is None else value == "1")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    kind = "builtin_function_or_method" if accelerated else "function"
    assert out.split() == [str(accelerated), kind, kind]


@needs_c
def test_switching_rebuilds_live_handles_and_carries_the_totals(on_path: Callable[[bool], None]) -> None:
    with pmq.attach(None) as q:
        before = my_counts()
        for accelerated in (True, False, True, False):
            on_path(accelerated)
            assert isinstance(q.push, types.FunctionType) is not accelerated
            q.push(b"abc")
            q.push("é")  # the slow path counts too
            assert q.pop() == b"abc" and q.pop(size=2) == "é".encode()
        after = my_counts()
    assert [a - b for a, b in zip(after, before)] == [8, 20, 8, 20]


def test_use_accelerator_refuses_where_it_is_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_hot, "_fast", None)
    with pytest.raises(RuntimeError, match="not built here: reinstall procmagic with a C compiler"):
        queue_hot.use_accelerator(True)


# -- counts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("accelerated", PATHS)
def test_counts_are_exact_on_either_path(accelerated: bool, on_path: Callable[[bool], None]) -> None:
    """Fast pushes and pops, slow ones (str, bytearray, to=, size=), and a pop refused for its
    size: every message counted once, in the child's slot and in the parent's."""
    on_path(accelerated)
    sizes = [1 + (i * 37) % 4096 for i in range(400)]
    to_child = [os.urandom(1 + i % 200) for i in range(50)]

    def child(proc: Process) -> None:
        for n in sizes:
            proc.push(b"x" * n)  # the common case
        proc.push("é" * 3)  # 6 bytes as UTF-8
        proc.push(bytearray(b"ba"))
        proc.push(b"to the parent", to=pmq.PARENT)
        got = [proc.pop() for _ in to_child[:25]] + [proc.pop(size=200) for _ in to_child[25:]]
        proc.push(b"ok" if got == to_child else b"wrong")

    proc = Process(child, pipe=None)
    queue = proc.use_queue(mode="orient")
    try:
        before = my_counts()
        for data in to_child:
            proc.push(data)
        proc.start()
        with deadline():
            popped = [proc.pop() for _ in sizes[:200]] + [proc.pop(size=4096) for _ in sizes[200:399]]
            with pytest.raises(ValueError, match="more than size=2") as info:
                proc.pop(2)  # the last of sizes: refused for its size, but taken and counted
            popped.append(info.value.data)  # type: ignore[attr-defined]
            popped += [proc.pop(), proc.pop(), proc.pop(), proc.pop()]
        assert proc.join(timeout=WAIT).ok
        assert [len(m) for m in popped[:400]] == sizes and popped[400:] == [b"\xc3\xa9" * 3, b"ba", b"to the parent",
                                                                             b"ok"]
        pushed_bytes = sum(sizes) + 6 + 2 + len(b"to the parent") + 2
        counts = proc.counters
        assert (counts["pushes"], counts["bytes_pushed"]) == (404, pushed_bytes)
        assert (counts["pops"], counts["bytes_popped"]) == (50, sum(map(len, to_child)))
        after = my_counts()
        assert [a - b for a, b in zip(after, before)] == [50, sum(map(len, to_child)), 404, pushed_bytes]
    finally:
        queue.free()


# -- the same errors -----------------------------------------------------------------------------
def _outcomes() -> list[tuple[str, str]]:
    """Every refusal and failure push/pop can meet, as (call, outcome) with queue ids masked."""
    calls: list[tuple[str, dict[str, Any], Callable[[Any], Any]]] = [
        ("push empty bytes", {}, lambda q: q.push(b"")),
        ("push empty str", {}, lambda q: q.push("")),
        ("push an int", {}, lambda q: q.push(12)),
        ("push None", {}, lambda q: q.push(None)),
        ("push too big", {}, lambda q: q.push(b"x" * (MSGMAX + 1))),
        ("push over the capacity", {"capacity": 100}, lambda q: q.push(b"x" * 101)),
        ("push to= in balance", {}, lambda q: q.push(b"x", to=3)),
        ("push no peer", {"mode": "orient"}, lambda q: q.push(b"x")),
        ("push to=0", {"mode": "orient"}, lambda q: q.push(b"x", to=0)),
        ("push to='a'", {"mode": "orient"}, lambda q: q.push(b"x", to="a")),
        ("push no data", {}, lambda q: q.push()),
        ("push two", {}, lambda q: q.push(b"x", b"y")),
        ("push bad keyword", {}, lambda q: q.push(b"x", bogus=1)),
        ("push data=", {}, lambda q: (q.push(data=b"kw"), q.pop())),
        ("push str, bytearray, memoryview", {},
         lambda q: (q.push("é"), q.push(bytearray(b"ba")), q.push(memoryview(b"mv")), q.pop(), q.pop(), q.pop())),
        ("pop size=0", {}, lambda q: q.pop(0)),
        ("pop size='a'", {}, lambda q: q.pop("a")),
        ("pop size=True", {}, lambda q: q.pop(size=True)),
        ("pop size=1.0", {}, lambda q: q.pop(1.0)),
        ("pop two", {}, lambda q: q.pop(1, 2)),
        ("pop bad keyword", {}, lambda q: q.pop(siz=3)),
        ("pop too long", {}, lambda q: (q.push(b"0123456789"), q.pop(4))),
        ("pop a huge size", {}, lambda q: (q.push(b"0123456789"), q.pop(2**70))),
        ("pop empty, nowait", {"nowait": True}, lambda q: q.pop()),
        ("pop empty orient, nowait", {"nowait": True, "mode": "orient"}, lambda q: (q.push(b"x", to=5), q.pop())),
        ("push full, nowait", {"nowait": True, "capacity": 1024},
         lambda q: [q.push(b"a" * 512) for _ in range(3)]),
        ("push on a freed queue", {}, lambda q: (q.free(), q.push(b"x"))),
        ("pop on a freed queue", {}, lambda q: (q.free(), q.pop())),
        ("pop size= on a freed queue", {}, lambda q: (q.free(), q.pop(size=5))),
    ]
    seen = []
    for name, kwargs, call in calls:
        q = pmq.attach(None, **kwargs)
        try:
            try:
                outcome = f"returned {call(q)!r}"
            except Exception as exc:
                data = getattr(exc, "data", None)
                outcome = f"{type(exc).__name__}: {exc}" + (f" .data={data!r}" if data is not None else "")
            seen.append((name, outcome.replace(f"queue {q.id}", "queue <id>")))
        finally:
            q.free()
    return seen


@needs_c
def test_both_paths_refuse_and_fail_with_the_same_errors(on_path: Callable[[bool], None]) -> None:
    on_path(True)
    with pmq.attach(None) as q:
        assert not isinstance(q.push, types.FunctionType)  # the C path really runs below
    accelerated = _outcomes()
    on_path(False)
    pure = _outcomes()
    assert accelerated == pure
    outcomes = dict(pure)
    assert outcomes["push full, nowait"].startswith(f"{QueueFull.__name__}: queue <id> is full (2 messages")
    assert outcomes["pop empty, nowait"].startswith(f"{QueueEmpty.__name__}: no message on queue <id>")
    for freed in ("push on a freed queue", "pop on a freed queue", "pop size= on a freed queue"):
        assert outcomes[freed].startswith(f"{NoQueue.__name__}: queue <id> no longer exists")
    assert outcomes["pop too long"].endswith(".data=b'0123456789'")
    assert outcomes["pop a huge size"] == "returned (None, b'0123456789')"
    assert outcomes["push two"].startswith("TypeError: Queue.push() takes 1 positional argument")


# -- blocking: the GIL and signals -------------------------------------------------------------
@needs_c
def test_a_blocking_pop_on_the_c_path_releases_the_gil_and_yields_to_keyboard_interrupt() -> None:
    code = """
        import threading, time
        from procmagic.core import queue as pmq, queue_hot
        assert queue_hot.accelerated()
        q = pmq.attach(None, mode="orient")
        try:
            # Another thread pushes while this one waits in pop(): it can run only if the wait
            # released the GIL (otherwise this script hangs and the test's timeout fails it).
            threading.Thread(target=lambda: (time.sleep(0.1), q.push(b"from a thread", to=pmq.PARENT))).start()
            print(q.pop().decode(), flush=True)
            q.push(b"not for me", to=5)
            print("waiting", flush=True)
            try:
                q.pop()  # blocks until SIGINT: Python's default handler raises KeyboardInterrupt
            except KeyboardInterrupt:
                print("interrupted", q.stat().messages, flush=True)
        finally:
            q.free()
    """
    child = script(code, pure=False)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "from a thread\n"
        assert child.stdout.readline() == "waiting\n"
        assert wait_blocked(child.pid, "msgrcv")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out == "interrupted 1\n"  # the message for someone else is still there
