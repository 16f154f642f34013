"""Interrupts, time-outs, restarts, a SIGKILLed kernel, shutdown, the guard and unloading,
each in a kernel of its own."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from .conftest import Kernel


@pytest.fixture
def k():
    kernel = Kernel()
    try:
        kernel.execute("%load_ext procmagic")
        yield kernel
    finally:
        kernel.close()


def _pid_of(kernel: Kernel, name: str) -> int:
    cell = kernel.execute(f"import procmagic\nprint(procmagic.get({name!r}).pid)")
    return int(cell.text().strip())


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True  # dead; its parent (not us) reaps it
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_interrupt_is_forwarded_to_a_foreground_child(k):
    cell = k.execute("%%spawn --name napper\nimport time\nprint('started', flush=True)\ntime.sleep(120)", wait=False)
    assert k.wait_for_text(cell.msg_id, "started")
    k.km.interrupt_kernel()
    k.finish(cell, timeout=60)
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "KeyboardInterrupt"
    assert "killed by SIGINT" in cell.text()


def test_interrupt_escalates_to_sigterm_when_the_child_ignores_sigint(k):
    k.execute("%config ProcMagics.interrupt_grace = 0.5")
    cell = k.execute(
        "%%spawn\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('deaf', flush=True)\ntime.sleep(120)",
        wait=False)
    assert k.wait_for_text(cell.msg_id, "deaf")
    k.km.interrupt_kernel()
    k.finish(cell, timeout=60)
    assert "killed by SIGTERM" in cell.text()


def test_background_children_are_not_hit_by_an_interrupt_aimed_at_another_cell(k):
    k.execute("%%spawn --bg --name survivor\nimport time; time.sleep(120)")
    pid = _pid_of(k, "survivor")
    cell = k.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(120)", wait=False)
    assert k.wait_for_text(cell.msg_id, "sleeping")
    k.km.interrupt_kernel()
    k.finish(cell, timeout=60)
    assert cell.reply["status"] == "error"
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    k.execute("%kill -s KILL survivor\n%wait survivor")
    assert _gone(pid)


def test_timeout_terminates_and_the_status_says_so(k):
    cell = k.execute("%%spawn --timeout 0.5\nimport time; time.sleep(60)")
    assert "time-out after 0.5 s" in cell.text()
    assert "killed by SIGTERM, timed out" in cell.text()


def test_background_timeout_fires_while_a_synchronous_cell_runs(k):
    bg = k.execute("%%spawn --bg --timeout 0.5 --name late\nimport time; time.sleep(60)")
    k.execute("import time; time.sleep(2)")
    assert k.wait_for_text(bg.msg_id, "timed out", 30)


def test_restart_with_a_live_child_stops_it_and_the_new_kernel_starts(k):
    k.execute("%%spawn --bg --name stubborn\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)")
    pid = _pid_of(k, "stubborn")
    k.km.restart_kernel(now=False)
    k.kc.wait_for_ready(timeout=60)
    assert _gone(pid), "the child outlived its kernel's restart"
    k.execute("%load_ext procmagic")
    cell = k.execute("%%spawn\nprint('after restart')")
    assert "after restart" in cell.text()


def test_a_child_surviving_restart_would_not_hold_the_kernel_ports(k):
    # the child closes the kernel's sockets: it holds none of the kernel's listening ports
    cell = k.execute(
        "%%spawn\n"
        "import os\n"
        "links = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd') if os.path.exists(f'/proc/self/fd/{fd}')]\n"
        "inodes = {l[8:-1] for l in links if l.startswith('socket:[')}\n"
        "listening = [line.split()[9] for line in open('/proc/self/net/tcp').read().splitlines()[1:] if line.split()[3] == '0A']\n"
        "print('held listeners:', len(inodes & set(listening)))\n"
        "print('zmq fds:', sum(1 for l in links if l in ('anon_inode:[eventfd]', 'anon_inode:[eventpoll]')))"
    )
    assert "held listeners: 0" in cell.text()
    assert "zmq fds: 0" in cell.text()


def test_kernel_killed_with_sigkill_leaves_no_child_alive(k):
    k.execute("%%spawn --bg --name orphan -n 2\nimport time; time.sleep(300)")
    pids = [int(x) for x in k.execute("import procmagic\nprint(*[p.pid for p in procmagic.get('orphan')])").text().split()]
    os.kill(k.pid, signal.SIGKILL)
    for pid in pids:
        assert _gone(pid), f"child {pid} outlived a SIGKILLed kernel"


def test_graceful_shutdown_stops_and_reaps_every_child(k):
    k.execute("%%spawn --bg --name leftover\nimport time; time.sleep(300)")
    pid = _pid_of(k, "leftover")
    k.km.shutdown_kernel(now=False)
    assert _gone(pid)


def test_guard_refuses_a_user_thread_and_names_it_then_passes_once_it_ends(k):
    k.execute("import threading\nev = threading.Event()\nworker = threading.Thread(target=ev.wait, name='my-worker')\nworker.start()")
    cell = k.execute("%%spawn\nprint('must not run')")
    assert cell.errors() and cell.errors()[0]["ename"] == "ForkRefused"
    assert "my-worker" in cell.errors()[0]["evalue"] + "".join(cell.errors()[0]["traceback"])
    assert "must not run" not in cell.text()
    check = k.execute("%forkcheck")
    assert "NOT ALLOWED" in check.text() and "my-worker" in check.text()
    forced = k.execute("%%spawn --force\nprint('forced through')")
    assert "forced through" in forced.text()
    assert "ForkWarning" in forced.text("stderr") or "forking anyway" in forced.text("stderr")
    k.execute("ev.set(); worker.join()")
    ok = k.execute("%%spawn\nprint('guard passes again')")
    assert "guard passes again" in ok.text()


def test_guard_refuses_a_live_thread_pool_executor(k):
    k.execute("from concurrent.futures import ThreadPoolExecutor\nex = ThreadPoolExecutor(2)\nex.submit(sum, [1, 2]).result()")
    cell = k.execute("%%spawn\npass")
    assert cell.errors() and "ThreadPoolExecutor" in "".join(cell.errors()[0]["traceback"])
    k.execute("ex.shutdown(wait=True)")
    assert not k.execute("%%spawn\npass").errors()


def test_guard_refuses_after_the_script_magic_started_its_event_loop_thread(k):
    k.execute("%%bash\necho hi")
    cell = k.execute("%%spawn\npass")
    assert cell.errors() and cell.errors()[0]["ename"] == "ForkRefused"
    assert "%%script" in "".join(cell.errors()[0]["traceback"])


def test_a_cell_in_a_subshell_is_refused(k):
    kc = k.kc
    kc.kernel_info()
    info = kc.get_shell_msg(timeout=30)["content"]
    if "kernel subshells" not in info.get("supported_features", []):
        pytest.skip("this ipykernel has no subshells (ipykernel 6)")
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=30)
    subshell_id = reply["content"].get("subshell_id")
    if not subshell_id:
        pytest.skip(f"this ipykernel has no subshells: {reply['content']}")
    execute = kc.session.msg("execute_request", {"code": "%%spawn\nprint('from subshell')", "silent": False,
                                                  "store_history": True, "user_expressions": {},
                                                  "allow_stdin": False, "stop_on_error": False})
    execute["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(execute)
    from .conftest import Cell

    cell = k.finish(Cell(execute["header"]["msg_id"]), timeout=60)
    assert cell.errors() and cell.errors()[0]["ename"] == "ForkRefused"
    assert "main thread" in cell.errors()[0]["evalue"]


def test_unload_removes_the_magics_and_reload_works(k):
    k.execute("%unload_ext procmagic")
    gone = k.execute("%%spawn\npass")
    assert "spawn" in (gone.text() + str(gone.errors())) and ("not found" in gone.text() + str(gone.errors()))
    k.execute("%load_ext procmagic")
    back = k.execute("%%spawn\nprint('back')")
    assert "back" in back.text()


def test_plain_process_api_works_in_a_kernel_without_the_extension():
    kernel = Kernel()
    try:
        cell = kernel.execute(
            "from procmagic import Process\n"
            "def child(proc):\n"
            "    proc.write(b'from a plain Process')\n"
            "p = Process(child)\n"
            "p.start()\n"
            "print(p.read(timeout=30), p.join(timeout=30).code)"
        )
        assert not cell.errors(), cell.errors()
        assert "b'from a plain Process' 0" in cell.text()
    finally:
        kernel.close()


def test_a_failed_exec_is_one_error_and_exit_127_and_the_other_worker_is_kept(k):
    cell = k.execute("%%spawn -n 2 --name ex\nif proc.worker == 0:\n    proc.exec('/no/such/program')\nprint('healthy', proc.worker)")
    assert cell.reply["status"] == "ok" and not cell.errors(), cell.errors()
    err = cell.text("stderr")
    assert err.count("exec failed: [Errno 2] No such file or directory: '/no/such/program'") == 1, err
    assert "Traceback" not in err and "ExecFailed" not in err
    assert "ex/0" in err and "exited 127, exec failed" in err
    assert "[1] healthy 1" in cell.text("stdout") and "ex/1" in cell.text("stdout")
    assert "exited 0" in cell.text("stdout")


def test_kill_of_an_ended_child_says_so_in_a_sentence(k):
    k.execute("%%spawn --name ticker\npass")
    cell = k.execute("%kill ticker")
    line = cell.text().strip()
    assert line.startswith("SIGTERM not sent to ticker (id ") and line.endswith("it has already ended"), line


@pytest.mark.timeout(600)
def test_a_long_session_stays_flat(k):
    # Hundreds of spawns: once every bound is full (ProcMagics.history finished children for
    # the spawn records, the widgets' last panels), the kernel's fds and procmagic.procs() stop
    # growing, what is dropped is freed at once, and %procs says how many were dropped.
    k.execute("%config ProcMagics.history = 40")
    loop = ("import gc, os, time, procmagic\n"
            "from procmagic.kernel import spawn as spawn_records\n"
            "def fds():\n"
            "    gc.collect()  # what is left is held, not garbage waiting for the collector\n"
            "    return len(os.listdir('/proc/self/fd'))\n"
            "def fds_settled(most=None, within=10.0):\n"
            "    # the last spawns' sockets close on the IOPub thread's loop just after the cell:\n"
            "    # wait (bounded) until the count is at most `most`, or the same twice in a row\n"
            "    deadline, last = time.monotonic() + within, fds()\n"
            "    while time.monotonic() < deadline and (last > most if most is not None else True):\n"
            "        time.sleep(0.2)\n"
            "        n = fds()\n"
            "        if most is None and n == last:\n"
            "            break\n"
            "        last = n\n"
            "    return last\n"
            "def burst(n):\n"
            "    for i in range(n):\n"
            "        get_ipython().run_cell_magic('spawn', '--name soak' + ('' if i % 3 else ' -n 2'), 'pass')\n"
            "def cyclic_garbage(n):\n"
            "    # procmagic's objects that only the collector could free (reference cycles)\n"
            "    gc.collect()\n"
            "    gc.set_debug(gc.DEBUG_SAVEALL)\n"
            "    try:\n"
            "        burst(n)\n"
            "        gc.collect()\n"
            "        return sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith('procmagic')})\n"
            "    finally:\n"
            "        gc.set_debug(0)\n"
            "        gc.garbage.clear()\n")
    k.execute(loop)
    k.execute("burst(300)", timeout=600)
    base = [int(x) for x in k.execute("print(fds_settled(), len(procmagic.procs()))").text().split()]
    k.execute("burst(150)", timeout=600)
    after = [int(x) for x in k.execute(f"print(fds_settled({base[0] + 2}), len(procmagic.procs()), "
                                       "len(spawn_records.spawns()))").text().split()]
    assert after[0] <= base[0] + 2, f"fds grew from {base[0]} to {after[0]} over 150 spawns"
    assert after[1] <= base[1] + 3, f"procmagic.procs() grew from {base[1]} to {after[1]} over 150 spawns"
    assert after[2] <= 40, f"{after[2]} spawn records kept with ProcMagics.history = 40"
    # The spawns dropped meanwhile (from the history and from the widgets' last panels) are freed
    # as they go, not left in cycles for CPython's next full collection (kernel memory stays flat).
    # Counted after the fds: with DEBUG_SAVEALL the collector keeps every object it finds.
    garbage = k.execute("print(cyclic_garbage(60))").text().strip().splitlines()[-1]  # after the statuses
    assert garbage == "[]", f"spawns dropped from the history left reference cycles of {garbage}"
    procs = k.execute("%procs")
    assert "dropped from the history; ProcMagics.history keeps the newest 40" in procs.text(), procs.text()


_STATUS = re.compile(r"\[procmagic\] (\S+) \(id \d+, pid \d+\) (exited \d+|killed by \w+)[^\n]* after ([0-9.]+) s")


def _statuses(text: str) -> list[tuple[str, str, float]]:
    return [(m.group(1), m.group(2), float(m.group(3))) for m in _STATUS.finditer(text)]


@pytest.mark.timeout(400)
def test_an_interrupt_storm_right_after_a_spawn_leaves_no_child_behind(k):
    kernel = psutil.Process(k.pid)
    for storm in range(6):
        cell = k.execute(f"%%spawn -n 4 --name storm{storm}\nimport time; time.sleep(60)", wait=False)
        for i in range(10):
            time.sleep(0.005 * ((storm + i) % 5))  # interrupts at every point of the fork path
            k.km.interrupt_kernel()
        idle = k.collect_until(lambda: any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                                           for m in k.by_parent.get(cell.msg_id, [])), timeout=60)
        if not idle:  # an interrupt landing in ipykernel's own dispatch can cost a cell its reply and idle
            assert k.execute("print('answering')", timeout=60).text() == "answering\n", f"storm {storm}: stuck"
        assert k.collect_until(lambda: not kernel.children(recursive=True), timeout=30), \
            f"storm {storm}: {[(c.pid, c.status()) for c in kernel.children(recursive=True)]} left"
    left = k.execute("import procmagic\nprint('live', len(procmagic.children()))")
    assert "live 0" in left.text(), left.text()
@pytest.mark.timeout(400)
def test_background_workers_always_report_every_exit_status(k):
    # -n 4 --bg: a sibling's start() may reap a child that exits at once, before the spawn's
    # driver exists; every one of the four statuses must still reach the cell.
    def soak(count: int, first: int) -> list[str]:
        cells = [k.execute(f"%%spawn -n 4 --bg --name soak{first + i}\npass") for i in range(count)]
        for cell in cells:
            ok = k.collect_until(lambda: len(_statuses(k.stream_text(cell.msg_id))) >= 4, timeout=60)
            assert ok, f"a -n 4 --bg spawn reported {_statuses(k.stream_text(cell.msg_id))}"
        return [cell.msg_id for cell in cells]

    soak(5, 0)
    before = k.fds_settled()
    for msg_id in soak(45, 5):
        assert [s[1] for s in _statuses(k.stream_text(msg_id))] == ["exited 0"] * 4
    waited = k.execute("%wait")
    assert "no live procmagic children" in waited.text()
    after = k.fds_settled(most=before + 2)
    assert after <= before + 2, f"the kernel's fds grew from {before} to {after}: {k.fd_links()}"






def test_a_background_exit_is_reported_while_another_cell_blocks(k):
    bg = k.execute("%%spawn --bg --name quick\nimport time; time.sleep(1)")
    blocker = k.execute("import time; time.sleep(10)", wait=False)
    k.finish(blocker, timeout=120)
    assert k.collect_until(lambda: _statuses(k.stream_text(bg.msg_id)), timeout=30)
    name, how, wall = _statuses(k.stream_text(bg.msg_id))[0]
    assert (name, how) == ("quick", "exited 0")
    assert 0.9 <= wall < 8, f"the child slept 1 s; its status says {wall} s"
    # the status reached the frontend while the blocking cell still ran
    order = [(m["parent_header"].get("msg_id"), m["msg_type"], m["content"]) for m in k.all]
    status_at = next(i for i, (parent, kind, content) in enumerate(order)
                     if parent == bg.msg_id and kind == "stream" and "quick (id" in content.get("text", ""))
    idle_at = next(i for i, (parent, kind, content) in enumerate(order)
                   if parent == blocker.msg_id and kind == "status" and content["execution_state"] == "idle")
    assert status_at < idle_at, "the exit status waited for the blocking cell to end"


_GRANDCHILD = ("import subprocess\n"
               "p = subprocess.Popen(['sh', '-c', 'trap \"\" TERM; exec sleep 300'])  # deaf to SIGTERM\n"
               "print('grandchild', p.pid, flush=True)\n")


def _grandchild(kernel: Kernel, msg_id: str) -> int:
    assert kernel.wait_for_text(msg_id, "grandchild ", 60)
    return int(kernel.stream_text(msg_id).split("grandchild ")[1].split()[0])


def test_a_grandchild_ends_with_its_foreground_cell(k):
    cell = k.execute("%%spawn --name gp\n" + _GRANDCHILD, timeout=120)
    pid = _grandchild(k, cell.msg_id)
    assert _gone(pid), "the grandchild outlived its cell"
    assert "stopping what the child left running in its process group" in cell.text()


def test_a_background_grandchild_is_stopped_at_shutdown(k):
    cell = k.execute("%%spawn --bg --name gpbg\n" + _GRANDCHILD + "import time; time.sleep(300)")
    pid = _grandchild(k, cell.msg_id)
    child = _pid_of(k, "gpbg")
    k.km.shutdown_kernel(now=False)
    assert _gone(child) and _gone(pid), "a child or its grandchild outlived the kernel's shutdown"


def test_a_grandchild_left_by_an_ended_background_child_is_stopped_at_restart(k):
    cell = k.execute("%%spawn --bg --name gpleft\n" + _GRANDCHILD)
    pid = _grandchild(k, cell.msg_id)
    assert k.collect_until(lambda: "gpleft (id" in k.stream_text(cell.msg_id), 60)  # the child ended
    assert not _gone(pid, timeout=0.5), "the documented rule: a --bg child's leftovers run on meanwhile"
    k.km.restart_kernel(now=False)
    k.kc.wait_for_ready(timeout=60)
    assert _gone(pid), "the grandchild outlived the kernel's restart"


def test_a_grandchild_does_not_outlive_a_sigkilled_kernel(k):
    cell = k.execute("%%spawn --bg --name gpkill\n" + _GRANDCHILD + "import time; time.sleep(300)")
    pid = _grandchild(k, cell.msg_id)
    os.kill(k.pid, signal.SIGKILL)
    assert _gone(pid, timeout=60), "the grandchild outlived a SIGKILLed kernel"


def test_kill_reaches_what_an_ended_background_child_left_running(k):
    cell = k.execute("%%spawn --bg --name gpkilled\n" + _GRANDCHILD)
    pid = _grandchild(k, cell.msg_id)
    assert k.collect_until(lambda: "gpkilled (id" in k.stream_text(cell.msg_id), 60)  # the child ended
    killed = k.execute("%kill -s KILL gpkilled")
    assert "sent SIGKILL to what gpkilled (id" in killed.text() and "left running in its process group" in killed.text()
    assert _gone(pid), "the grandchild outlived %kill"
