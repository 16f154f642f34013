"""procmagic.call / map / call_async / wait_async and the result channel, with real children."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import procmagic
from procmagic import NoResult, Process, RemoteTraceback, ResultChannel


def test_call_returns_the_value_from_another_process():
    assert procmagic.call(os.getpid) != os.getpid()
    assert procmagic.call(lambda a, b=2: a * b, 21) == 42


def test_call_carries_closures_and_local_classes_back():
    class Point:  # defined here, not importable: cloudpickle carries it by value
        def __init__(self, x):
            self.x = x

    offset = 5
    point = procmagic.call(lambda: Point(offset + 1))
    assert type(point).__name__ == "Point" and point.x == 6
    adder = procmagic.call(lambda: (lambda y: y + offset))
    assert adder(1) == 6


def test_call_raises_the_child_exception_with_its_traceback():
    def inner():
        raise KeyError("missing thing")

    with pytest.raises(KeyError, match="missing thing") as info:
        procmagic.call(inner)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "inner" in cause.text and "KeyError" in cause.text


def test_an_exception_that_cannot_be_pickled_comes_back_as_text():
    class Odd(Exception):
        def __init__(self, a, b):  # pickle calls Odd(msg): fails to load
            super().__init__(f"{a}-{b}")

    def raise_odd():
        raise Odd(1, 2)

    with pytest.raises(procmagic.ChildError, match="Odd: 1-2"):
        procmagic.call(raise_odd)


def test_call_says_why_no_value_came():
    with pytest.raises(NoResult, match="generator.*could not be serialised") as info:
        procmagic.call(lambda: (x for x in []))
    assert info.value.reason == "unpicklable"
    with pytest.raises(NoResult, match="exited 3 without sending a value"):
        procmagic.call(os._exit, 3)
    with pytest.raises(NoResult, match="killed by SIGKILL") as info:
        procmagic.call(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert info.value.reason == "signal" and info.value.status.signal == signal.SIGKILL


def test_large_values_cross_out_of_band():
    big = procmagic.call(lambda: bytearray(b"x") * (64 * 1024 * 1024))
    assert len(big) == 64 * 1024 * 1024 and big[-1:] == b"x"
    text = procmagic.call(lambda: "é" * 3_000_000)
    assert len(text) == 3_000_000


def test_a_value_over_the_limit_is_refused_in_the_child():
    channel = ResultChannel(limit=1000)
    proc = Process(lambda p: channel.send(b"y" * 5000) and 0, pipe=None)
    proc.start()
    channel.parent_side()
    try:
        with pytest.raises(NoResult, match="over the limit") as info:
            channel.receive(proc, timeout=30)
    finally:
        channel.close()
    assert info.value.reason == "too_large"
    with pytest.raises(NoResult, match="over the limit"):
        proc.result  # the process remembers it


def test_result_channel_with_a_plain_process():
    channel = ResultChannel()
    proc = Process(lambda p: channel.send({"sum": sum(range(10))}) and 0, pipe=None)
    proc.start()
    channel.parent_side()
    try:
        assert channel.receive(proc, timeout=30) == {"sum": 45}
    finally:
        channel.close()
    assert proc.result == {"sum": 45}
    assert proc.exitstatus.code == 0  # the exit code keeps swoole's meaning


def test_map_keeps_order_over_uneven_work():
    def work(x):
        time.sleep(0.001 * (x % 3))
        return x * x

    assert procmagic.map(work, range(50), workers=3) == [x * x for x in range(50)]
    assert procmagic.map(str, [], workers=2) == []
    assert procmagic.map(lambda x: -x, [1, 2, 3], workers=8, chunksize=1) == [-1, -2, -3]


def test_map_runs_on_several_processes():
    pids = set(procmagic.map(lambda _: (time.sleep(0.05), os.getpid())[1], range(8), workers=2, chunksize=1))
    assert len(pids) == 2 and os.getpid() not in pids


def test_map_raises_the_first_failure_and_stops_the_others():
    def work(x):
        if x == 7:
            raise ValueError(f"bad item {x}")
        time.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="bad item 7") as info:
        procmagic.map(work, range(40), workers=2, chunksize=1)
    assert "at item 7" in "".join(getattr(info.value, "__notes__", []))


def test_map_names_the_items_of_a_worker_that_died():
    def work(x):
        if x == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(NoResult, match=r"killed by SIGKILL while working on items \d+ to \d+"):
        procmagic.map(work, range(6), workers=2, chunksize=1)


def test_map_refuses_bad_arguments():
    with pytest.raises(ValueError, match="workers must be a positive int"):
        procmagic.map(abs, [1], workers=0)
    with pytest.raises(ValueError, match="chunksize must be a positive int"):
        procmagic.map(abs, [1], chunksize=0)
    with pytest.raises(TypeError, match="fn must be callable"):
        procmagic.call(42)


def test_map_and_call_async_name_each_bad_argument():
    with pytest.raises(TypeError, match=r"map's items must be an iterable .*, not int 3; for one item use \[x\]"):
        procmagic.map(abs, 3)
    with pytest.raises(ValueError, match=r"workers must be a positive int .*, not '2'"):
        procmagic.map(abs, [1], workers="2")
    with pytest.raises(ValueError, match=r"workers must be a positive int .*, not 0"):
        procmagic.map(abs, [], workers=0)  # refused even with no items to run
    with pytest.raises(ValueError, match=r"chunksize must be a positive int, not 0"):
        procmagic.map(abs, [], chunksize=0)
    with pytest.raises(TypeError, match=r"fn must be callable .*, not int 3"):
        procmagic.map(3, [1])
    with pytest.raises(TypeError, match=r"fn must be callable .*, not str 'f'"):
        asyncio.run(procmagic.call_async("f"))

    def broken():
        yield 1
        raise TypeError("the items' own error")

    with pytest.raises(TypeError, match="the items' own error"):  # not hidden behind ours
        procmagic.map(abs, broken())


def test_an_interrupt_stops_the_child_and_leaves_nothing():
    pids = []

    def on_alarm(signum, frame):
        pids.extend(p.pid for p in procmagic.children())
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            procmagic.map(lambda x: time.sleep(60), range(4), workers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already: gone (the leak check agrees)


def test_wait_async_and_call_async_keep_the_loop_running():
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        proc = Process(lambda p: (time.sleep(0.3), 4)[1], pipe=None)
        proc.start()
        status = await proc.wait_async(timeout=30)
        value = await procmagic.call_async(lambda: (time.sleep(0.3), "done")[1])
        task.cancel()
        return status, value, ticks

    status, value, ticks = asyncio.run(main())
    assert status.code == 4 and value == "done"
    assert ticks > 5  # the loop ran while both waited


def test_call_async_raises_and_cancelling_stops_the_child():
    async def main():
        with pytest.raises(ZeroDivisionError):
            await procmagic.call_async(lambda: 1 / 0)
        task = asyncio.ensure_future(procmagic.call_async(time.sleep, 60))
        while not procmagic.children():
            await asyncio.sleep(0.01)
        child = procmagic.children()[0]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return child

    child = asyncio.run(main())
    assert child.exitstatus is not None and child.exitstatus.signal == signal.SIGTERM


def test_wait_async_times_out():
    async def main(proc):
        with pytest.raises(TimeoutError, match="still running after 0.1 s"):
            await proc.wait_async(timeout=0.1)

    proc = Process(lambda p: time.sleep(30), pipe=None)
    proc.start()
    try:
        asyncio.run(main(proc))
    finally:
        proc.stop(grace=1.0)


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def test_a_large_value_is_not_held_twice_in_the_parent():
    size = 64 * 1024 * 1024
    for make in (lambda: b"z" * size, lambda: bytearray(size), lambda: b"y" * size):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident size (VmHWM) to the current one
        before = _status_kb("VmRSS")
        value = procmagic.call(make)
        grew = _status_kb("VmHWM") - before
        assert len(value) == size
        assert grew < 1.3 * size, f"{type(value).__name__}: the peak grew by {grew / size:.2f}x the value"
        del value


def test_calls_nest_and_a_grandchild_does_not_hold_its_parents_channel():
    def outer():
        inner = procmagic.call(lambda: os.getpid())
        return inner, os.getpid()

    inner, middle = procmagic.call(outer)
    assert inner != middle and os.getpid() not in (inner, middle)
