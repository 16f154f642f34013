"""The teaching notebooks, executed top to bottom in a fresh python3 kernel with nbclient.

Each must run without an error output in any cell not tagged ``raises-exception``, within a
minute, and show what it teaches (a few key outputs per notebook, found by cell id). Background
output that arrives after its cell finished is kept in that cell (``run_notebook.py``), so the
checks see what JupyterLab would show.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


run_notebook = _load("run_notebook")
make_notebooks = _load("make_notebooks")

#: cell id -> patterns (regular expressions) its text must show, per notebook
EXPECTED: dict[str, dict[str, list[str]]] = {
    "01-tour.ipynb": {
        "first-spawn": [r"in the child: \{'alice': 3, 'bob': 5, 'carol': 7\}", r"spawn-1 \(id 1, pid \d+\) exited 0"],
        "state-after": [r"\{'alice': 3, 'bob': 5\}"],
        "redirect": [r"print\(\) from Python", r"a line on stderr", r"a subprocess writes to the same pipe", r"Linux"],
        "exit-3": [r"exited 3"],
        "exit-3-status": [r"ExitStatus\(name='spawn-3'.*exited 3"],
        "killed": [r"doomed .*killed by SIGKILL"],
        "bg": [r"counting 1/5(.|\n)*counting 5/5", r"counter \(id \d+, pid \d+\) exited 0"],
        "wait": [r"counter .* exited 0"],
        "forkcheck-ok": [r"fork verdict: ok"],
        "forkcheck-refused": [r"fork verdict: refused", r"'my-watcher'.*NOT ALLOWED"],
        "refusal": [r"refusing to fork: 1 thread besides the main thread is alive", r"'my-watcher'"],
        "spawn-again": [r"forking is safe again", r"exited 0"],
    },
    "02-pipes-and-redirect.ipynb": {
        "kinds": [r"dgram : \[b'one', b'two', b'three'\]", r"stream: \[b'onetwothree'\]"],
        "echo-server": [r"echo: end of file, bye", r"echo \(id \d+, pid \d+\) exited 0"],
        "echo-talk": [r"b'PING'", r"b'HELLO, CHILD'"],
        "timeouts": [r"TimeoutError: no data arrived", r"BlockingIOError", r"killed by SIGTERM"],
        "shout": [r"HELLO\s+WORLD", r"exited 0"],
        "upper-spawn": [r"child read: FIRST LINE", r"child read: SECOND LINE", r"stdin closed, exiting"],
        "exec-core": [r"b'hello from sh\\n'", r"exited 4"],
        "exec-spawn": [r"Linux", r"exited 0"],
        "exec-fail": [r"FileNotFoundError", r"exited 127, exec failed"],
    },
    "03-message-queues.ipynb": {
        "basics": [r"QueueStat\(.*messages=3", r"\[b'job 0', b'job 1', b'job 2'\]", r"QueueEmpty: no message"],
        "full": [r"pushed message 2", r"QueueFull: queue \d+ is full", r"after free_queue\(\):\s+\[\]"],
        "kitchen": [r"producer: 12 orders", r"cook 1 served", r"cook 2 served", r"cook 3 served",
                    r"kitchen/3 .*exited 0"],
        "kitchen-gone": [r"^\[\]$"],
        "crew": [r"worker 0: total \d+", r"worker 2: total \d+", r"crew/2 .*exited 0"],
        "orient": [r"b'a squared 2: 4'", r"b'a squared 3: 9'", r"b'b squared 10: 100'"],
        "counters": [r"a \{'pushes': 2, 'pops': 3", r"b \{'pushes': 1, 'pops': 2"],
        "hygiene": [r"queues this kernel still has: \[\]"],
    },
    "04-signals-and-alarms.ipynb": {
        "patient": [r"got SIGUSR1 #1", r"got SIGUSR1 #2", r"SIGTERM: cleaning up", r"patient .*exited 0"],
        "patient-ready": [r"b'ready'"],
        "reserved": [r"cannot install a handler for SIGCHLD", r"cannot install a handler for SIGINT",
                     r"cannot install a handler for SIGKILL"],
        "alarm-refused": [r"no handler for SIGALRM"],
        "metronome": [r"1[3-6] ticks in 1.55 s"],
        "ticks": [r"after about 0.5 s: \d+ ticks, interval 100000 us"],
        "timeout": [r"killed by SIGTERM, timed out"],
        "timeout-stubborn": [r"killed by SIGKILL, timed out"],
        "kill-wait": [r"alive\? True", r"sleeper-0.*killed by SIGTERM", r"sleeper-1.*killed by SIGKILL",
                      r"sleeper-2.*killed by SIGHUP", r"anything left\? None"],
        "zombie": [r"is a zombie", r"still there\? False"],
        "no-zombie-check": [r"still in the process table\? False", r"zombie children of this kernel: \[\]"],
    },
    "05-worker-pools.ipynb": {
        "fanout": [r"\[3\] 500000 numbers", r"summer/3 .*exited 0"],
        "fanin": [r"from the workers: 2666668666667000000", r"checked in the kernel:\s+2666668666667000000"],
        "workqueue": [r"worker 0 did jobs", r"worker 2 did jobs"],
        "pool": [r"worker 1: 4 squared is 16", r"workers=3/3"],
        "respawn": [r"worker 1 exited 3(.|\n)*worker 1 exited 3(.|\n)*worker 1 exited 3", r"after shutdown"],
        "manager": [r"worker 0: fetching", r"worker 2: indexing", r"all done: True"],
        "shutdown": [r"service/1.*killed by SIGKILL", r"all stopped in"],
    },
    "06-debugging-with-fork.ipynb": {
        "try-on-copy": [r"in the child: \[8.0, 8.8, 9.6, 10.4, 11.2\]"],
        "after-copy": [r"in the kernel: \[10.0, 11.0, 12.0, 13.0, 14.0\]", r"sent back: \[1, 2, 3, 4\]"],
        "crash": [r"ValueError: invalid literal for int\(\)", r"crasher .*exited 1"],
        "crash-status": [r"code: 1 \| signal: None \| ok: False"],
        "segv": [r"Fatal Python error: Segmentation fault", r"read_address_zero", r"killed by SIGSEGV"],
        "segv-status": [r"killed by SIGSEGV \| signal: 11 \| returncode: -11"],
        "hang": [r"killed by SIGTERM, timed out"],
        "deadlock": [r"child: taking the lock", r"ForkWarning", r"killed by SIGTERM, timed out"],
        "forkcheck": [r"'lock-holder'.*NOT ALLOWED"],
        "executor": [r"ThreadPoolExecutor-0_0", r"executor.shutdown\(wait=True\)"],
        "after-executor": [r"forking is safe again"],
    },
}


def test_every_notebook_is_checked():
    assert sorted(EXPECTED) == sorted(make_notebooks.NOTEBOOKS)
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(make_notebooks.NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_committed_notebook_is_clean_and_generated(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: cell {cell.id} has outputs"
    assert path.read_text(encoding="utf-8") == make_notebooks.render(name), (
        f"{name} differs from notebooks/make_notebooks.py: edit the script and run it"
    )


@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_notebook_runs_top_to_bottom(name):
    nb, seconds = run_notebook.execute(NOTEBOOKS / name, timeout=120)

    errors = run_notebook.error_outputs(nb)
    assert not errors, f"{name}: error outputs in cells not tagged raises-exception: {errors}"
    for cell in nb.cells:  # a tagged cell must really show its error, or the tag hides nothing
        if "raises-exception" in cell.metadata.get("tags", []):
            assert any(o["output_type"] == "error" for o in cell.outputs), f"{name}: {cell.id} shows no error"

    cells = {cell.id: cell for cell in nb.cells}
    for cell_id, patterns in EXPECTED[name].items():
        text = run_notebook.cell_text(cells[cell_id])
        for pattern in patterns:
            assert re.search(pattern, text, re.MULTILINE), f"{name}, cell {cell_id!r}: no {pattern!r} in:\n{text}"

    assert seconds < 60, f"{name} took {seconds:.1f} s; a notebook must run in under a minute"
