"""Nothing outlives the kernel, grandchildren included: a child's own subprocess is stopped when
the kernel restarts (even one that ignores SIGTERM) and when the kernel is killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from .conftest import Kernel

GRANDCHILD = (
    "%%spawn --bg --name parent\n"
    "import subprocess, time\n"
    "g = subprocess.Popen(['sh', '-c', 'trap \"\" TERM; while :; do sleep 1; done'])\n"
    "print('grandchild', g.pid, flush=True)\n"
    "time.sleep(300)"
)


@pytest.fixture
def k():
    kernel = Kernel()
    try:
        kernel.execute("%load_ext procmagic")
        yield kernel
    finally:
        kernel.close()


def _grandchild(kernel: Kernel) -> int:
    cell = kernel.execute(GRANDCHILD)
    assert kernel.wait_for_text(cell.msg_id, "grandchild ", 60), kernel.stream_text(cell.msg_id)
    match = re.search(r"grandchild (\d+)", kernel.stream_text(cell.msg_id))
    assert match is not None
    return int(match.group(1))


def _gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def test_a_grandchild_that_ignores_sigterm_is_stopped_at_restart(k):
    k.execute("%config ProcMagics.term_grace = 0.5")
    pid = _grandchild(k)
    try:
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        assert _gone(pid), "a grandchild outlived its kernel's restart"
    finally:
        _kill(pid)


def test_a_grandchild_is_stopped_when_the_kernel_is_killed_with_sigkill(k):
    pid = _grandchild(k)
    try:
        os.kill(k.pid, signal.SIGKILL)
        assert _gone(pid), "a grandchild outlived a SIGKILLed kernel"
    finally:
        _kill(pid)
