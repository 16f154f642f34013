"""%%spawn in a real kernel: output routing, redirect, handles, rich output, errors, floods."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from .conftest import Kernel


@pytest.fixture(scope="module")
def k():
    kernel = Kernel()
    try:
        kernel.execute("%load_ext procmagic")
        yield kernel
    finally:
        kernel.close()


def statuses(cell):
    return [line for line in cell.text().splitlines() if line.startswith("[procmagic]")]


def test_python_print_and_stderr_reach_the_cell_without_redirect(k):
    cell = k.execute("%%spawn\nimport sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)")
    assert "to stdout" in cell.text("stdout")
    assert "to stderr" in cell.text("stderr")
    assert any("exited 0" in s for s in statuses(cell))


def test_child_output_is_not_kept_in_the_childs_history(k):
    # IPython 9's run_cell wraps sys.stdout/stderr.write to store every write in the history's
    # outputs: a child would keep a copy of all it prints, and pay a Python call per write
    for flags in ("", "--redirect"):
        cell = k.execute(f"%%spawn {flags}\nimport sys\nprint('a line')\n"
                         "print('wrapped:', 'write' in vars(sys.stdout), 'write' in vars(sys.stderr))")
        assert "a line" in cell.text("stdout")
        assert "wrapped: False False" in cell.text("stdout"), cell.text()


def test_redirect_carries_c_level_output_os_system_and_subprocesses(k):
    cell = k.execute(
        "%%spawn --redirect\n"
        "import ctypes, os, subprocess, sys\n"
        "print('python print', flush=True)\n"
        "libc = ctypes.CDLL(None); libc.printf(b'c printf\\n'); libc.fflush(None)\n"
        "os.system('echo from os.system')\n"
        "subprocess.run(['sh', '-c', 'echo from subprocess; echo sub err >&2'])\n"
        "print('stderr line', file=sys.stderr)\n"
        "None"
    )
    text = cell.text()
    for expected in ("python print", "c printf", "from os.system", "from subprocess", "sub err", "stderr line"):
        assert expected in text, (expected, text)
    assert text.index("python print") < text.index("c printf") < text.index("from os.system")


def test_non_redirect_c_level_output_still_lands_in_the_spawning_cell(k):
    cell = k.execute("%%spawn\nimport os\nos.system('echo c-level without redirect')")
    assert "c-level without redirect" in cell.text()


def test_text_the_kernel_buffered_before_a_spawn_shows_before_the_childs(k):
    # The kernel's stdout holds "first" (no newline: ipykernel buffers it for up to 0.2 s);
    # the spawn flushes it before forking, so it cannot land after the child's line. With
    # nothing buffered the flush is skipped (child_setup.stream_needs_flush): not here.
    cell = k.execute("print('first', end='')\n"
                     "get_ipython().run_cell_magic('spawn', '', \"print('second')\")")
    text = cell.text("stdout")
    assert "first" in text and "second" in text, text
    assert text.index("first") < text.index("second"), text


def test_output_goes_to_the_spawning_cell_not_to_later_cells(k):
    bg = k.execute(
        "%%spawn --bg --name router-check\n"
        "import time\n"
        "for i in range(6):\n"
        "    print('bg line', i, flush=True)\n"
        "    time.sleep(0.25)"
    )
    other = k.execute("import time\nfor i in range(3):\n    print('fg line', i)\n    time.sleep(0.3)")
    third = k.execute("x = 1")
    assert k.wait_for_text(bg.msg_id, "exited 0")
    bg_text = k.stream_text(bg.msg_id)
    for i in range(6):
        assert f"bg line {i}" in bg_text
    assert "bg line" not in other.text() and "bg line" not in third.text()
    assert "fg line 2" in other.text()
    # background lines were published while the synchronous cell ran, not only after it
    order = [(m["parent_header"].get("msg_id"), m["msg_type"], m["content"].get("text", "")) for m in k.all]
    fg_positions = [i for i, (pid, t, text) in enumerate(order) if pid == other.msg_id and "fg line" in text]
    bg_between = [i for i, (pid, t, text) in enumerate(order)
                  if pid == bg.msg_id and "bg line" in text and fg_positions[0] < i < fg_positions[-1]]
    assert bg_between, order


def test_workers_are_labelled_and_know_their_index(k):
    cell = k.execute("%%spawn -n 3 --name crew\nprint('worker', proc.worker, 'id', proc.id)")
    text = cell.text("stdout")
    for i in range(3):
        assert f"[{i}] worker {i}" in text
    assert len([s for s in statuses(cell) if "crew/" in s]) == 3


def test_last_expression_display_and_rich_output(k):
    cell = k.execute(
        "%%spawn\n"
        "from IPython.display import HTML, Image, display\n"
        "import base64\n"
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "display(HTML('<b>bold from child</b>'))\n"
        "display(Image(data=png, format='png'))\n"
        "40 + 2"
    )
    displays = cell.of_type("display_data")
    assert any("<b>bold from child</b>" in d["data"].get("text/html", "") for d in displays)
    assert any("image/png" in d["data"] for d in displays)
    results = cell.of_type("execute_result")
    assert results and results[0]["data"]["text/plain"] == "42"


def test_exception_is_a_real_error_output_and_exit_code_1(k):
    cell = k.execute("%%spawn\ndef f():\n    raise ValueError('bad thing in child')\nf()")
    errors = cell.errors()
    assert errors and errors[0]["ename"] == "ValueError" and errors[0]["evalue"] == "bad thing in child"
    assert any("f()" in line for line in errors[0]["traceback"])
    assert any("exited 1" in s for s in statuses(cell))


def test_sys_exit_sets_the_exit_code_without_an_error(k):
    cell = k.execute("%%spawn\nimport sys\nsys.exit(3)")
    assert not cell.errors()
    assert any("exited 3" in s for s in statuses(cell))


def test_syntax_error_is_reported_before_forking(k):
    cell = k.execute("%%spawn\ndef broken(:\n    pass")
    assert cell.errors() and cell.errors()[0]["ename"] == "SyntaxError"
    assert not statuses(cell)


def test_input_transformations_apply(k):
    cell = k.execute("%%spawn\n%time y = sum(range(10))\n!echo shell-escape-works\nprint('y is', y)")
    text = cell.text()
    assert "Wall time" in text
    assert "shell-escape-works" in text
    assert "y is 45" in text


def test_child_sees_the_namespace_at_fork_time_and_cannot_change_the_parent(k):
    k.execute("shared = {'n': 1}")
    cell = k.execute("%%spawn\nshared['n'] = 99\nprint('child sees', shared)")
    assert "child sees {'n': 99}" in cell.text()
    check = k.execute("print('parent sees', shared)")
    assert "parent sees {'n': 1}" in check.text()


def test_handles_both_ways_out_var_write_read_get_join(k):
    cell = k.execute(
        "%%spawn --bg --name echoer --out echo_proc\n"
        "msg = proc.read(timeout=30)\n"
        "proc.write(b'echo:' + msg)"
    )
    assert not cell.errors()
    check = k.execute(
        "import procmagic\n"
        "assert procmagic.get('echoer') is echo_proc\n"
        "assert procmagic.get(echo_proc.id) is echo_proc\n"
        "echo_proc.write(b'ping')\n"
        "print(echo_proc.read(timeout=30))\n"
        "print(echo_proc.join(timeout=30))"
    )
    assert "b'echo:ping'" in check.text()
    assert "exited 0" in check.text()


def test_redirect_stdin_feeds_input(k):
    asker_cell = k.execute("%%spawn --redirect --bg --name asker --out asker\nname = input('name? ')\nprint('hello', name)")
    check = k.execute("asker.write('world\\n')\nprint(asker.join(timeout=30))")
    assert "exited 0" in check.text()
    assert k.wait_for_text(asker_cell.msg_id, "hello world")  # in the spawning cell, not elsewhere


def test_reading_a_redirected_pipe_from_the_notebook_is_refused_with_the_reason(k):
    k.execute("%%spawn --redirect --bg --name busy --out busy\nimport time; time.sleep(30)")
    cell = k.execute("busy.read()")
    assert cell.errors() and "read by procmagic" in cell.errors()[0]["evalue"]
    k.execute("%kill -s KILL busy\n%wait busy")


def test_split_utf8_and_invalid_bytes(k):
    cell = k.execute(
        "%%spawn --redirect\n"
        "import os, time\n"
        "data = 'é€😀'.encode()\n"
        "for i in range(len(data)):\n"
        "    os.write(1, data[i:i+1]); time.sleep(0.01)\n"
        "os.write(1, b'\\n bad:\\xff\\xfe end\\n')"
    )
    text = cell.text("stdout")
    assert "é€😀" in text
    assert "bad:\ufffd\ufffd end" in text


def test_flood_is_coalesced_capped_and_logged(k):
    k.execute("%config ProcMagics.output_cap = 200000")
    cell = k.execute("%%spawn\nfor i in range(100000):\n    print('line %06d ' % i + 'x' * 40)")
    k.execute("%config ProcMagics.output_cap = 4194304")
    streams = [m for m in cell.outputs if m["msg_type"] == "stream"]
    child_text = "".join(m["content"]["text"] for m in streams if not m["content"]["text"].startswith(("[procmagic]", "\n[procmagic]")))
    assert len(child_text) <= 200000
    assert len(streams) < 100, len(streams)  # coalesced: not one message per line
    notice = [m["content"]["text"] for m in streams if "withheld" in m["content"]["text"]]
    assert notice
    path = notice[-1].split(" in ")[-1].strip()
    assert os.path.exists(path)
    with open(path) as f:
        log = f.read()
    assert "line 099999" in log and log.count("\n") == 100000
    os.unlink(path)


def test_kill_wait_and_procs_magics(k):
    k.execute("%%spawn --bg --name sleeper\nimport time; time.sleep(60)")
    procs = k.execute("%procs")
    shown = procs.text() + "".join(d["data"].get("text/plain", "") for d in procs.of_type("display_data"))
    assert "sleeper" in shown and "running" in shown  # the dashboard's text/plain fallback
    killed = k.execute("%kill -s SIGKILL sleeper")
    assert "sent SIGKILL" in killed.text()
    waited = k.execute("%wait sleeper --timeout 30")
    assert "killed by SIGKILL" in waited.text()
    bad = k.execute("%kill nosuchname")
    reply = bad.reply
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert reply["evalue"].startswith("no procmagic child named 'nosuchname'; known names: ["), reply
    assert "'sleeper'" in reply["evalue"], reply  # the names it knows, to pick from
    assert "sent" not in bad.text(), bad.text()  # nothing was signalled


def test_bad_options_raise_usage_error_with_the_usage_line(k):
    for line in ("--pipe bogus", "-n 0", "--timeout -1", "--bogus", "--signal-on-interrupt NOPE", "--queue xyz"):
        cell = k.execute(f"%%spawn {line}\npass")
        out = json.dumps([m["content"] for m in cell.outputs], default=str)
        assert "UsageError" in out, (line, out)
        assert "usage: %spawn" in out, (line, out)


def test_line_magics_without_options_refuse_arguments(k):
    for line in ("%procs --bogus", "%forkcheck 3"):
        reply = k.execute(line).reply
        assert reply["status"] == "error" and reply["ename"] == "UsageError", (line, reply)
        assert f"{line.split()[0]} takes no arguments, not '{line.split()[1]}'" in reply["evalue"], (line, reply)


def test_stale_reference_to_the_kernel_stdout_writes_into_the_spawning_cell(k):
    k.execute("import logging, sys\nlog = logging.getLogger('stale')\nlog.addHandler(logging.StreamHandler(sys.stdout))\nlog.setLevel(logging.INFO)")
    cell = k.execute("%%spawn\nlog.info('logged from the child')")
    assert "logged from the child" in cell.text()


def test_200_spawns_leave_no_zombie_thread_or_fd(k):
    threads = "import threading\nprint(threading.active_count())"
    before_threads, before_fds = k.execute(threads).text().strip(), k.fds_settled()
    cell = k.execute(
        "import time\n"
        "ip = get_ipython()\n"
        "t0 = time.perf_counter()\n"
        "for i in range(200):\n"
        "    ip.run_cell_magic('spawn', '', 'pass')\n"
        "print('elapsed', time.perf_counter() - t0)", timeout=180)
    assert not cell.errors()
    # the last spawns' sockets close on the IOPub thread's loop just after the cell, and the
    # last children are reaped meanwhile: bounded waits for the counts to settle
    kernel = psutil.Process(k.pid)
    deadline = time.monotonic() + 30
    while kernel.children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel.children() == [], f"children left: {kernel.children()}"
    assert k.execute(threads).text().strip() == before_threads
    after_fds = k.fds_settled(most=before_fds + 2)
    assert after_fds <= before_fds + 2, f"fds grew from {before_fds} to {after_fds}: {k.fd_links()}"


def test_queue_is_shared_by_workers_and_reachable_from_the_notebook(k):
    cell = k.execute(
        "%%spawn -n 3 --queue --name producers --out producers\n"
        "proc.push(f'item from worker {proc.worker}')"
    )
    assert not cell.errors(), cell.errors()
    got = k.execute(
        "items = sorted(producers[0].pop() for _ in range(3))\n"
        "print(items)\n"
        "print(producers[0].stat_queue().messages)\n"
        "producers[0].free_queue()"
    )
    assert "item from worker 0" in got.text() and "item from worker 2" in got.text()
    assert got.text().splitlines()[1] == "0"


def test_private_queue_of_a_finished_spawn_is_freed_when_empty(k):
    before = k.execute("import procmagic\nprint(len(procmagic.queues()))").text().strip()
    k.execute("%%spawn --queue\nproc.push(b'x'); proc.pop()")
    after = k.execute("print(len(procmagic.queues()))").text().strip()
    assert before == after


def test_matplotlib_figure_made_in_the_child_appears_in_the_cell(k):
    pytest.importorskip("matplotlib")
    k.execute("%matplotlib inline")
    cell = k.execute("%%spawn\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('from the child')")
    images = [d for d in cell.of_type("display_data") if "image/png" in d["data"]]
    assert images, cell.outputs


def test_child_traceback_names_the_spawning_cell(k):
    cell = k.execute("%%spawn\n1/0")
    number = cell.reply["execution_count"]
    assert any(f"In[{number}]" in line for line in cell.errors()[0]["traceback"]), cell.errors()[0]["traceback"]
