"""Children that crash, kernels that are interrupted, restarted or killed (docs/reliability.md):
each child's status says what happened, and nothing outlives the kernel."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from .conftest import SOAK, Kernel

_FAULTS = {
    "SIGSEGV": ("import ctypes\nctypes.string_at(0)", ["killed by SIGSEGV"]),
    "abort": ("import os\nos.abort()", ["killed by SIGABRT"]),
    "recursion": ("def f(n): return f(n + 1)\nf(0)", ["RecursionError", "exited 1"]),
    "MemoryError": ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
                    "x = bytearray(2 << 30)", ["MemoryError", "exited 1"]),
    "sys.exit(3)": ("import sys\nsys.exit(3)", ["exited 3"]),
    "SIGKILL itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", ["killed by SIGKILL"]),
}


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_crashing_children_report_what_killed_them(kernel, figure):
    for name, (body, expected) in _FAULTS.items():
        cell = kernel.execute(f"%%spawn --name crash\n{body}", timeout=120)
        said = cell.text() + "".join(e.get("ename", "") for e in cell.errors())  # tracebacks are errors
        for text in expected:
            assert text in said, (name, said[-1500:])
        assert cell.reply["status"] == "ok"
    assert kernel.execute("1+1").reply["status"] == "ok"
    figure("child faults reported with the right status", len(_FAULTS), "faults")


def test_an_interrupt_storm_stops_the_foreground_child_and_spares_the_background(kernel, figure):
    bg = kernel.execute("%%spawn --bg --name bystander\nimport time\ntime.sleep(30)\nprint('bystander done')")
    storms = 3 * SOAK
    for _ in range(storms):
        # a child deaf to SIGINT and SIGTERM: each interrupt takes it one step up the ladder
        cell = kernel.execute("%%spawn --name target\nimport os, signal, time\n"
                              "for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
                              "print('up', os.getpid(), flush=True)\ntime.sleep(300)", wait=False)
        assert kernel.wait_for_text(cell.msg_id, "up", timeout=60)
        pid = int(kernel.stream_text(cell.msg_id).split("up", 1)[1].split()[0])
        sent = 0
        while sent < 10 and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            kernel.km.interrupt_kernel()  # as fast as a user can click, while the cell runs (once
            sent += 1  # it has ended, an interrupt is the kernel's own business)
            time.sleep(0.005)
        kernel.finish(cell, timeout=60)
        assert cell.reply["status"] == "error" and cell.reply["ename"] == "KeyboardInterrupt"
        assert "killed by SIGKILL" in cell.text()
    assert kernel.execute("1+1").reply["status"] == "ok"
    alive = kernel.execute("import procmagic\nprint([p.name for p in procmagic.children()])").text()
    assert "bystander" in alive and "target" not in alive
    kernel.execute("%kill bystander")
    assert kernel.collect_until(lambda: "killed by SIGTERM" in kernel.stream_text(bg.msg_id), timeout=60)
    figure("interrupt storms on a deaf child, each ended by the ladder", storms, "storms")


def _family(k: Kernel) -> list[int]:
    """Start a --bg child that starts a grandchild; their pids."""
    k.execute("%%spawn --bg --name parent\nimport subprocess, time\np = subprocess.Popen(['sleep', '300'])\n"
              "print('grandchild', p.pid, flush=True)\ntime.sleep(300)")
    assert k.collect_until(lambda: any("grandchild" in m["content"].get("text", "") for m in k.all
                                       if m["msg_type"] == "stream"), timeout=60)
    text = "".join(m["content"].get("text", "") for m in k.all if m["msg_type"] == "stream")
    grandchild = int(text.split("grandchild", 1)[1].split()[0])
    child = int(k.execute("import procmagic\nprint(procmagic.get('parent').pid)").text())
    return [child, grandchild]


@pytest.mark.parametrize("how", ["restart", "SIGKILL", "shutdown"])
def test_nothing_outlives_the_kernel(how, figure):
    k = Kernel()
    pids: list[int] = []
    try:
        k.execute("%load_ext procmagic")
        pids = _family(k)
        if how == "restart":
            k.km.restart_kernel(now=False)
        elif how == "SIGKILL":
            os.kill(k.pid, signal.SIGKILL)
        else:
            k.km.shutdown_kernel(now=False)
        left = [pid for pid in pids if not _gone(pid)]
        figure(f"processes left after {how} (child and grandchild)", len(left), "processes")
        assert not left, f"{left} outlived the kernel's {how}"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        k.close()
