"""Shared fixtures. Every test fails if it leaves a child, a zombie, an fd or a SysV queue behind."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest


def sysv_queue_ids() -> set[int]:
    """msqids of every SysV message queue on the machine (from /proc/sysvipc/msg)."""
    try:
        with open("/proc/sysvipc/msg") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return set()
    return {int(line.split()[1]) for line in lines if line.strip()}


def open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own fd, closed already
    return out


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=False)
    except psutil.Error:
        return []


@pytest.fixture(autouse=True, scope="session")
def procmagic_watcher():
    """procmagic starts one watcher per process at its first fork and holds its pipe for the
    process's life (procmagic/core/watcher.py): start it before the first test, so that pipe
    is not counted as a test's leaked fd."""
    from procmagic.core import watcher

    watcher.ensure()
    yield


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail a test that leaks a child, a zombie, an fd or a SysV queue; clean up after it."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    before_children = {c.pid for c in _children()}
    before_fds = open_fds()
    before_queues = sysv_queue_ids()
    yield
    problems = []
    deadline = time.monotonic() + 5.0  # a child may still be on its way out
    while True:
        leaked = [c for c in _children() if c.pid not in before_children]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for c in leaked:
        try:
            state = c.status()
        except psutil.Error:
            continue
        problems.append(f"child pid {c.pid} left {'as a zombie' if state == psutil.STATUS_ZOMBIE else 'running'}")
        try:
            os.killpg(c.pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(c.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(c.pid, 0)
        except OSError:
            pass
    from procmagic.core.reaper import registry

    registry.reap_ready()
    after_fds = open_fds()
    new_fds = {fd: target for fd, target in after_fds.items() if before_fds.get(fd) != target}
    if request.node.get_closest_marker("kernel"):
        new_fds = {}  # jupyter_client's zmq contexts keep fds; kernel tests count the kernel's own
    if new_fds:
        problems.append(f"fds left open: {new_fds}")
    new_queues = sysv_queue_ids() - before_queues
    if new_queues:
        # Reported, never removed: SysV queues are machine-wide, and one made by another program
        # during this test is not ours to delete (make test runs pytest in its own IPC namespace,
        # where every queue is this run's).
        problems.append(f"SysV queues left behind: {sorted(new_queues)}")
    if problems:
        pytest.fail("leak: " + "; ".join(problems), pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_leaks: skip the leak check (the test checks on its own)")
    # A shell that starts a command in the background without job control (`make test &` in a
    # script, some CI runners) starts it with SIGINT ignored, and an ignored signal stays ignored
    # across fork and exec: the kernels and children these tests start would never see an
    # interrupt. The tests are about interrupts reaching them, so give SIGINT back its default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
