"""A Pool in a real kernel: SIGTERM to the kernel stops the pool cleanly (workers by the ladder,
queue freed, callbacks run) whether a cell blocks in ``start()`` or the pool runs between cells,
and the kernel lives on."""

from __future__ import annotations

import os
import signal

from ..conftest import sysv_queue_ids

_POOL = """
import time
from procmagic import Pool
events, hows = [], []
pool = Pool(2, lambda pool, wid: time.sleep(600), ipc="queue",
            on_worker_exit=lambda pool, wid, st: (events.append(f"exit {wid} {st.code}"), hows.append(repr(st))),
            on_stop=lambda pool: events.append(f"stop {pool.queue.freed}"))
pool.on("start", lambda pool: print("ready", pool.queue.id, *[p.pid for p in pool.workers.values()], flush=True))
"""
_REPORT = "print(sorted(events[:2]), events[2:], pool.running)\nprint(hows)"
_EXPECTED = "['exit 0 0', 'exit 1 0'] ['stop True'] False"


def _ready(kernel, cell) -> tuple[int, list[int]]:
    assert kernel.wait_for_text(cell.msg_id, "\n", timeout=60), kernel.stream_text(cell.msg_id)
    words = kernel.stream_text(cell.msg_id).split()
    assert words[0] == "ready", words
    return int(words[1]), [int(w) for w in words[2:]]


def _check_gone(queue_id: int, pids: list[int]) -> None:
    assert queue_id not in sysv_queue_ids()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _check_report(kernel) -> None:
    report, hows = kernel.execute(_REPORT).text().strip().splitlines()
    assert report == _EXPECTED, hows  # on a failure, how each worker ended (ExitStatus reprs)


def test_sigterm_to_a_kernel_blocked_in_pool_start(kernel):
    cell = kernel.execute(_POOL + "pool.start()\nprint('start returned')", wait=False)
    queue_id, pids = _ready(kernel, cell)
    os.kill(kernel.pid, signal.SIGTERM)
    kernel.finish(cell, timeout=60)
    assert cell.reply["status"] == "ok" and "start returned" in cell.text(), cell.outputs
    _check_gone(queue_id, pids)
    _check_report(kernel)


def test_sigterm_to_an_idle_kernel_running_a_pool(kernel):
    cell = kernel.execute(_POOL + "pool.start(block=False)")
    queue_id, pids = _ready(kernel, cell)
    os.kill(kernel.pid, signal.SIGTERM)  # no cell runs: the pool's handler stops it at once
    assert kernel.collect_until(lambda: queue_id not in sysv_queue_ids(), timeout=30)
    _check_gone(queue_id, pids)
    _check_report(kernel)


def test_the_interrupt_button_stops_a_pool_blocking_its_cell_with_its_callbacks(kernel):
    cell = kernel.execute(_POOL + "pool.start()", wait=False)
    queue_id, pids = _ready(kernel, cell)
    kernel.km.interrupt_kernel()
    kernel.finish(cell, timeout=60)
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "KeyboardInterrupt"
    _check_gone(queue_id, pids)
    _check_report(kernel)


def test_sigusr1_to_an_idle_kernel_reloads_its_pool(kernel):
    cell = kernel.execute(_POOL + "pool.start(block=False)")
    queue_id, pids = _ready(kernel, cell)
    os.kill(kernel.pid, signal.SIGUSR1)  # between cells: the pool's handler reloads it at once
    check = f"print(pool.running, sorted(events), not {set(pids)!r} & {{p.pid for p in pool.workers.values()}})"
    for _ in range(100):  # bounded: the reload normally ends before the kernel takes this cell
        text = kernel.execute(check).text().strip()
        if "'exit 1 0'" in text:
            break
    assert text == "True ['exit 0 0', 'exit 1 0'] True", text  # both replaced, by the ladder, still running
    kernel.execute("pool.shutdown()")
    _check_gone(queue_id, pids)
