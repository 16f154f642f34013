"""procmagic.call / map / call_async from notebook cells in a real kernel."""

from __future__ import annotations

import time

import psutil

from .conftest import Cell


def children_of(pid):
    try:
        return psutil.Process(pid).children()
    except psutil.Error:
        return []


def named(pid, name):
    out = []
    for child in children_of(pid):
        try:
            if child.name() == name:
                out.append(child)
        except psutil.Error:
            pass
    return out


def test_call_and_map_run_notebook_functions(kernel):
    kernel.execute("import procmagic, os\ndef square(x):\n    return x * x")
    cell = kernel.execute("print(procmagic.map(square, range(6), workers=2), procmagic.call(os.getpid) != os.getpid())")
    assert "[0, 1, 4, 9, 16, 25] True" in cell.text()
    cell = kernel.execute("await procmagic.call_async(square, 7)")
    assert cell.of_type("execute_result")[0]["data"]["text/plain"] == "49"
    cell = kernel.execute("p = procmagic.Process(lambda proc: 3, pipe=None); p.start()\n(await p.wait_async()).code")
    assert cell.of_type("execute_result")[0]["data"]["text/plain"] == "3"


def test_an_interrupt_stops_call_and_leaves_nothing(kernel):
    cell = Cell(kernel.kc.execute("import procmagic, time\nprocmagic.map(time.sleep, [60] * 4, workers=2)"))
    deadline = time.monotonic() + 60
    while len(children_of(kernel.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children_of(kernel.pid)
    assert len(workers) == 2
    kernel.km.interrupt_kernel()
    kernel.finish(cell, 60)
    assert cell.reply["ename"] == "KeyboardInterrupt"
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive and not children_of(kernel.pid)


def test_an_interrupt_stops_call_async_under_top_level_await(kernel):
    kernel.execute("import procmagic, time")
    cell = Cell(kernel.kc.execute("await procmagic.call_async(time.sleep, 60)"))
    deadline = time.monotonic() + 60
    while not named(kernel.pid, "call:sleep") and time.monotonic() < deadline:
        time.sleep(0.05)
    child = named(kernel.pid, "call:sleep")
    assert len(child) == 1
    kernel.km.interrupt_kernel()
    kernel.finish(cell, 60)
    assert cell.reply["status"] == "error", cell.reply
    gone, alive = psutil.wait_procs(child, timeout=10)
    assert not alive and not children_of(kernel.pid)
    again = kernel.execute("print(await procmagic.call_async(sum, [1, 2]))")
    assert "3" in again.text()
