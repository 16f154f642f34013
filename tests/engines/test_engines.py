"""%%spawn --engines on a real local ipyparallel cluster (controller and two engines over TCP),
driven from a real notebook kernel. Output is checked by parent header: the spawning cell's.

The tests share one cluster and one notebook kernel (module fixtures); the test that kills an
engine runs last."""

from __future__ import annotations

import re
import time


from tests.kernel.conftest import Kernel


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def no_forks_left(cluster, timeout: float = 15.0) -> bool:
    return wait_until(lambda: not cluster.forked(0) and not cluster.forked(1), timeout)


def display_text(cell) -> str:
    """The text/plain of a cell's displays (``%procs``' fallback: its tables as text)."""
    return "".join(m["content"]["data"].get("text/plain", "") for m in cell.outputs if m["msg_type"] == "display_data")


def widget_states(nb) -> dict[str, dict]:
    """Every widget model the kernel opened, with its latest state (from every IOPub message)."""
    states: dict[str, dict] = {}
    for m in nb.all:
        if m["msg_type"] == "comm_open":
            states[m["content"]["comm_id"]] = dict(m["content"]["data"].get("state", {}))
        elif m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update":
            states.setdefault(m["content"]["comm_id"], {}).update(m["content"]["data"].get("state", {}))
    return states


def row_buttons(nb, text: str) -> dict[str, str] | None:
    """The INT/TERM/KILL buttons of the widget row whose facts contain ``text``: {label: comm id}."""
    states = widget_states(nb)
    for html_id, state in states.items():
        if state.get("_model_name") == "HTMLModel" and text in str(state.get("value", "")):
            for box in states.values():
                children = box.get("children") or []
                if box.get("_model_name") == "HBoxModel" and f"IPY_MODEL_{html_id}" in children:
                    ids = [c.removeprefix("IPY_MODEL_") for c in children]
                    return {states[i].get("description"): i for i in ids if states.get(i, {}).get("description")}
    return None


def click(nb, comm_id: str) -> None:
    nb.kc.shell_channel.send(nb.kc.session.msg("comm_msg", {"comm_id": comm_id,
                                                            "data": {"method": "custom", "content": {"event": "click"}}}))


def test_foreground_output_is_labelled_by_engine_and_worker(nb, cluster):
    cell = nb.execute("%%spawn --engines all --view rc -n 2\n"
                      "import os\nprint('hello', proc.engine, proc.worker, os.getppid())\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    text = cell.text()
    for engine in (0, 1):
        for worker in (0, 1):
            # forked from the engine itself: the child's parent is the engine's pid
            assert f"[engine {engine}] [{worker}] hello {engine} {worker} {cluster.pids[engine]}\n" in text, text
    assert text.count("exited 0") == 4, text
    # the live table above the output: a row per remote child, redrawn in place as they end
    shown = cell.of_type("display_data")
    assert shown and "on engines 0, 1" in shown[0]["data"]["text/plain"], shown
    display_id = shown[0]["transient"]["display_id"]
    last = [m for m in cell.of_type("update_display_data") if m["transient"]["display_id"] == display_id][-1]
    table = last["data"]["text/plain"]
    assert "4 exited" in table and table.count("exited 0") == 4, table
    assert all(f"@e{e}" in table for e in (0, 1)) and "host" in table, table
    assert no_forks_left(cluster)


def test_rich_output_and_tracebacks_arrive_as_they_do_locally(nb, cluster):
    cell = nb.execute("%%spawn --engines 1 --view rc\nfrom IPython.display import HTML, display\n"
                      "display(HTML('<b>rich from an engine</b>'))\n1 / 0\n", timeout=90)
    shown = [m["data"].get("text/html", "") for m in cell.of_type("display_data")]
    assert any("<b>rich from an engine</b>" in html for html in shown), shown
    errors = cell.errors()
    assert errors and errors[0]["ename"] == "ZeroDivisionError", cell.outputs
    assert "exited 1" in cell.text(), cell.text()


def test_background_output_lands_in_the_spawning_cell_after_other_cells(nb, cluster):
    spawning = nb.execute("%%spawn --engines all --view rc --bg --name late\n"
                          "import time\nprint('early', proc.engine, flush=True)\ntime.sleep(1.5)\n"
                          "print('late', proc.engine, flush=True)\n", timeout=90)
    assert spawning.reply["status"] == "ok", spawning.outputs
    # other cells run meanwhile, one of them blocking the main thread past the children's end
    other = nb.execute("import time\ntime.sleep(2.5)\nprint('other cell')", timeout=60)
    third = nb.execute("print('third cell')", timeout=60)
    assert nb.wait_for_text(spawning.msg_id, "[engine 1] late 1", timeout=30)
    assert nb.wait_for_text(spawning.msg_id, "[engine 0] late 0", timeout=30)
    assert nb.collect_until(lambda: nb.stream_text(spawning.msg_id).count("exited 0") == 2, timeout=30)
    assert "late" not in other.text() and "late" not in third.text()
    assert other.text() == "other cell\n" and third.text() == "third cell\n"
    assert no_forks_left(cluster)


def test_a_local_spawn_still_forks_beside_the_ipyparallel_client(nb):
    # the client's own I/O thread is declared to the guard, as the kernel's threads are
    cell = nb.execute("%%spawn\nprint('local child')\n", timeout=60)
    assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
    assert "local child" in cell.text()


def test_result_binds_values_keyed_by_engine_and_worker(nb, cluster):
    cell = nb.execute("%%spawn --engines all --view rc -n 2 --result pairs\n(proc.engine, proc.worker)\n", timeout=90)
    assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
    shown = nb.execute("print(pairs)", timeout=30).text()
    assert shown == "{0: [(0, 0), (0, 1)], 1: [(1, 0), (1, 1)]}\n", shown
    cell = nb.execute("%%spawn --engines all --view rc --bg --result hosts\nimport time, os\ntime.sleep(0.5)\n"
                      "os.getppid()\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    nb.execute("%wait", timeout=60)
    shown = nb.execute("print(hosts)", timeout=30).text()
    assert shown == f"{{0: {cluster.pids[0]}, 1: {cluster.pids[1]}}}\n", shown
    cell = nb.execute("%%spawn --engines all --view rc --result nope\n1 / proc.engine\n", timeout=90)
    text = cell.text()
    assert "--result nope: nothing bound: engine 0 bound nothing" in text, text
    assert "ZeroDivisionError" in text, text
    assert "nope" not in nb.execute("print(sorted(globals()))", timeout=30).text()


def test_push_sends_notebook_variables_and_functions(nb, cluster):
    nb.execute("base = 40\ndef plus(k):\n    return base + k\n", timeout=30)
    cell = nb.execute("%%spawn --engines 0, --view rc --push base,plus\nprint('answer', plus(2))\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    assert "[engine 0] answer 42\n" in cell.text()
    assert "[engine 1]" not in cell.text()  # "0," is engine 0 alone


def test_queue_redirect_and_timeout_compose_on_each_engine(nb, cluster):
    # a queue on each engine's host, shared by that engine's two children; --redirect carries
    # a subprocess's output; the --timeout is the engine's own
    cell = nb.execute("%%spawn --engines all --view rc -n 2 --queue --redirect --timeout 20\n"
                      "import os\nif proc.worker == 0:\n    proc.push(f'hello from engine {proc.engine}')\n"
                      "else:\n    os.system(f'echo worker 1 got {proc.pop().decode()!r}')\n", timeout=90)
    assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
    text = cell.text()
    for engine in (0, 1):
        assert f"[engine {engine}] [1] worker 1 got hello from engine {engine}" in text, text
    cell = nb.execute("%%spawn --engines 1 --view rc --timeout 1\nimport time\nprint('waiting', flush=True)\n"
                      "time.sleep(60)\n", timeout=90)
    text = cell.text()
    assert "[engine 0] [procmagic] time-out after 1.0 s" in text and "killed by SIGTERM" in text, text
    assert no_forks_left(cluster)


def test_kill_of_a_remote_child_leaves_its_engine_running(nb, cluster):
    cell = nb.execute("%%spawn --engines 1 --view rc --bg --name sleeper\n"
                      "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    assert nb.wait_for_text(cell.msg_id, "[engine 0] sleeping", timeout=30)
    assert cluster.forked(0)
    procs = nb.execute("%procs", timeout=30)
    rows = [line for line in display_text(procs).splitlines() if "sleeper@e0" in line]
    assert rows and "running" in rows[0] and "e0:" in rows[0], display_text(procs)
    killed = nb.execute("%kill sleeper", timeout=30)
    assert re.search(r"sent SIGTERM to sleeper@e0 \(engine 0 on \S+, id e0:\d+, pid \d+\)", killed.text()), killed.outputs
    assert nb.wait_for_text(cell.msg_id, "killed by SIGTERM", timeout=30)
    assert no_forks_left(cluster)
    assert cluster.engine_alive(0)
    assert cluster.client[0].apply_sync(lambda: "still here") == "still here"
    waited = nb.execute("%wait sleeper", timeout=30)
    assert "killed by SIGTERM" in waited.text(), waited.outputs


def test_the_terminate_button_of_a_background_spawn_signals_its_remote_children(nb, cluster):
    cell = nb.execute("%%spawn --engines all --view rc --bg --name buttoned\nimport time\n"
                      "print('waiting for a click', flush=True)\ntime.sleep(120)\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    assert nb.collect_until(lambda: nb.stream_text(cell.msg_id).count("waiting for a click") == 2, timeout=30)
    buttons = {m["content"]["data"]["state"].get("description"): m["content"]["comm_id"] for m in cell.outputs
               if m["msg_type"] == "comm_open" and m["content"]["data"]["state"].get("_model_name") == "ButtonModel"}
    assert set(buttons) >= {"interrupt", "terminate", "kill", "INT", "TERM", "KILL"}, buttons  # all, and a row each
    click = nb.kc.session.msg("comm_msg", {"comm_id": buttons["terminate"],
                                           "data": {"method": "custom", "content": {"event": "click"}}})
    nb.kc.shell_channel.send(click)
    assert nb.collect_until(lambda: nb.stream_text(cell.msg_id).count("killed by SIGTERM") == 2, timeout=30), \
        nb.stream_text(cell.msg_id)
    assert no_forks_left(cluster)
    assert cluster.engine_alive(0) and cluster.engine_alive(1)


def test_a_busy_engine_makes_the_start_fail_without_leaving_children(nb, cluster):
    busy = cluster.client[1].apply_async(__import__("time").sleep, 8)
    try:
        nb.execute("import procmagic.engines.remote as _r\n_r.START_TIMEOUT = 2.0", timeout=30)
        cell = nb.execute("%%spawn --engines all --view rc\nimport time\ntime.sleep(30)\n", timeout=90)
        message = cell.text() + str(cell.reply.get("evalue"))
        assert "engine 1: no answer" in message and "were stopped" in message, message
    finally:
        nb.execute("_r.START_TIMEOUT = 60.0", timeout=30)
        busy.get(timeout=30)
    time.sleep(1.0)  # the aborted start request would have run now, after the busy task
    assert no_forks_left(cluster)


def test_bad_options_say_what_to_do(nb):
    cell = nb.execute("%%spawn --engines some --view rc\npass\n", timeout=30)
    assert "--engines must be 'all', a count N" in cell.text() + str(cell.errors()), cell.outputs
    cell = nb.execute("%%spawn --engines 5 --view rc\npass\n", timeout=30)
    assert "only 2 engines are available" in cell.text() + str(cell.errors()), cell.outputs
    cell = nb.execute("%%spawn --engines all --view nothing_here\npass\n", timeout=30)
    assert "--view nothing_here: no such variable" in cell.text() + str(cell.errors()), cell.outputs
    cell = nb.execute("%%spawn --push rc\npass\n", timeout=30)
    assert "--push goes with --engines" in cell.text() + str(cell.errors()), cell.outputs


def test_view_may_be_a_directview_or_a_cluster(nb, cluster):
    cell = nb.execute("dv = rc[[1]]\n"
                      f"cl = ipp.Cluster.from_file(profile_dir={cluster.cluster.profile_dir!r}, "
                      f"cluster_id={cluster.cluster.cluster_id!r})", timeout=60)
    assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
    cell = nb.execute("%%spawn --engines all --view dv\nprint('on', proc.engine)\n", timeout=90)
    assert "[engine 1] on 1" in cell.text() and "[engine 0]" not in cell.text(), cell.text()
    cell = nb.execute("%%spawn --engines 2 --view cl\nprint('on', proc.engine)\n", timeout=90)
    assert "[engine 0] on 0" in cell.text() and "[engine 1] on 1" in cell.text(), (cell.text(), cell.reply.get("evalue"))


def test_call_and_map_with_view_fork_on_the_engines(nb, cluster):
    cell = nb.execute(
        "import os, procmagic\nfactor = 3\n"
        "values = procmagic.map(lambda x: (x * factor, os.getppid()), range(7), workers=2, view=rc)\n"
        "print('squares', [v for v, _ in values])\nprint('parents', sorted({p for _, p in values}))\n"
        "print('call', procmagic.call(lambda a, b=0: (a + b, os.getppid()), 40, b=2, view=rc[1]))\n", timeout=90)
    assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
    text = cell.text()
    assert "squares [0, 3, 6, 9, 12, 15, 18]" in text, text
    # each block was mapped by children forked from its engine
    assert f"parents {sorted(cluster.pids.values())}" in text, text
    assert f"call (42, {cluster.pids[1]})" in text, text
    assert no_forks_left(cluster)


def test_interrupting_a_foreground_spawn_signals_the_remote_children(nb, cluster):
    msg_id = nb.kc.execute("%%spawn --engines all --view rc --name napper\nimport time\n"
                           "print('napping', flush=True)\ntime.sleep(120)\n")
    assert nb.collect_until(lambda: nb.stream_text(msg_id).count("napping") == 2, timeout=60)
    nb.km.interrupt_kernel()
    from tests.kernel.conftest import Cell

    cell = nb.finish(Cell(msg_id), timeout=60)
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "KeyboardInterrupt", cell.reply
    text = cell.text()
    assert text.count("killed by SIGINT") == 2, text
    assert no_forks_left(cluster)
    assert cluster.engine_alive(0) and cluster.engine_alive(1)


def test_the_guard_runs_on_each_engine_and_names_the_refusing_one(nb, cluster):
    cluster.client[1].execute("import threading\nstop_it = threading.Event()\n"
                              "t = threading.Thread(target=stop_it.wait, name='busy-worker')\nt.start()", block=True)
    try:
        cell = nb.execute("%%spawn --engines all --view rc\nprint('forked')\n", timeout=90)
        message = cell.text() + str(cell.reply.get("evalue"))
        assert cell.reply["status"] == "error", cell.outputs
        assert "engine 1:" in message and "busy-worker" in message, message
        assert "engine 0:" not in message, message
    finally:
        cluster.client[1].execute("stop_it.set()\nt.join()", block=True)
    assert no_forks_left(cluster)


def test_kernel_restart_and_shutdown_stop_remote_children_and_leave_engines_up(cluster):
    k = Kernel()

    def spawn_sleepers() -> None:
        k.execute("%load_ext procmagic", timeout=60)
        k.execute(f"import ipyparallel as ipp\nrc = ipp.Client({cluster.url_file!r})\nrc.wait_for_engines(2, timeout=60)",
                  timeout=90)
        cell = k.execute("%%spawn --engines all --view rc --bg -n 2\nimport time\nprint('up', flush=True)\n"
                         "time.sleep(300)\n", timeout=90)
        assert cell.reply["status"] == "ok", (cell.text(), cell.reply.get("evalue"))
        assert k.collect_until(lambda: k.stream_text(cell.msg_id).count("up") == 4, timeout=30)
        assert len(cluster.forked(0)) == 2 and len(cluster.forked(1)) == 2

    try:
        spawn_sleepers()
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        assert no_forks_left(cluster, timeout=20), [c.cmdline() for e in (0, 1) for c in cluster.forked(e)]
        spawn_sleepers()
    finally:
        k.close()
    assert no_forks_left(cluster, timeout=20), [c.cmdline() for e in (0, 1) for c in cluster.forked(e)]
    assert cluster.engine_alive(0) and cluster.engine_alive(1)


def test_procs_rows_signal_one_remote_child_through_its_engine(nb, cluster):
    cell = nb.execute("%%spawn --engines 1, --view rc -n 2 --bg --name rowed\nimport time\n"
                      "print('up', proc.worker, flush=True)\ntime.sleep(120)\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    assert nb.collect_until(lambda: "up 0" in nb.stream_text(cell.msg_id) and "up 1" in nb.stream_text(cell.msg_id), 30)
    procs = nb.execute("%procs", timeout=30)
    text = display_text(procs)
    for worker in (0, 1):  # the text fallback: a row per remote child, with its engine and host
        assert any(f"rowed/{worker}@e1" in line and "running" in line for line in text.splitlines()), text
    found: dict = {}
    assert nb.collect_until(lambda: found.update(row_buttons(nb, "rowed/0@e1") or {}) or "TERM" in found, 30), \
        widget_states(nb)
    row = [str(s.get("value")) for s in widget_states(nb).values() if "rowed/0@e1" in str(s.get("value", ""))]
    assert row and "engine <b class='pm-engine'>1</b>" in row[-1] and "running" in row[-1], row
    click(nb, found["TERM"])

    def values() -> list[str]:
        return [str(s.get("value", "")) for s in widget_states(nb).values()]

    assert nb.collect_until(lambda: any("sent SIGTERM to rowed/0@e1 (engine 1" in v for v in values()), 30), \
        "the dashboard's note says the engine sent it"
    assert nb.collect_until(lambda: any("rowed/0@e1" in v and "killed by SIGTERM" in v for v in values()), 30), \
        "the row shows the exit status"
    assert wait_until(lambda: len(cluster.forked(1)) == 1), "only the clicked row's child was signalled"
    assert any("rowed/1@e1" in v and "running" in v for v in values())
    assert cluster.engine_alive(1)
    nb.execute("%kill rowed", timeout=30)
    assert nb.collect_until(lambda: nb.stream_text(cell.msg_id).count("killed by SIGTERM") == 2, 30), \
        nb.stream_text(cell.msg_id)
    assert no_forks_left(cluster)


def test_a_busy_engine_shows_as_not_answering_then_answers_again(nb, cluster):
    import os

    marker = os.path.join(cluster.profile_dir, "go-on-")
    cell = nb.execute("%%spawn --engines 1, --view rc -n 2 --bg --name patient\nimport os, time\n"
                      "print('started', proc.worker, flush=True)\n"
                      f"while not os.path.exists({marker!r} + str(proc.worker)): time.sleep(0.1)\n"
                      "print('done', proc.worker, flush=True)\n", timeout=90)
    assert cell.reply["status"] == "ok", cell.outputs
    assert nb.collect_until(lambda: nb.stream_text(cell.msg_id).count("started") == 2, 60), nb.stream_text(cell.msg_id)
    # the engine cannot answer until the test lets it go (a shell waiting for a file, bounded)
    busy = cluster.client[1].apply_async(os.system, f"timeout 120 sh -c 'until [ -e {marker}busy ]; do sleep 0.1; done'")
    try:
        assert nb.wait_for_text(cell.msg_id, "has not answered for 5 s", timeout=60), nb.stream_text(cell.msg_id)
        open(marker + "0", "w").close()
        # the busy engine still forwards output and reaps (from its IOPub thread): worker 0's end arrives
        assert nb.wait_for_text(cell.msg_id, "[engine 1] [0] done 0", timeout=30), nb.stream_text(cell.msg_id)
        ask = "import procmagic.engines as _e\nprint([c.how for c in _e.remote_spawns()[-1].children])"
        assert wait_until(lambda: "exited 0" in nb.execute(ask, timeout=30).text(), 30)
        assert not busy.ready(), "the exit status came while the engine was busy"
        open(marker + "busy", "w").close()
        assert busy.get(timeout=60) == 0
        assert nb.wait_for_text(cell.msg_id, "answers again", timeout=60), nb.stream_text(cell.msg_id)
    finally:
        for end in ("busy", "0", "1"):
            open(marker + end, "w").close()
    waited = nb.execute("%wait patient --timeout 60", timeout=90)
    text = nb.stream_text(cell.msg_id) + waited.text()
    assert "[engine 1] [1] done 1" in text and "is lost" not in text, text
    assert waited.text().count("exited 0") == 2, waited.text()
    for end in ("busy", "0", "1"):
        os.unlink(marker + end)
    assert no_forks_left(cluster)


def test_an_interrupt_after_sigkill_stops_waiting_for_a_stopped_engine(nb, cluster):
    """A stopped engine is not lost until the controller unregisters it (~33 s): the cell's
    interrupts go INT, TERM, KILL, and one more stops waiting for it."""
    import os
    import signal

    from tests.kernel.conftest import Cell

    msg_id = nb.kc.execute("%%spawn --engines 1, --view rc --name stuck\nimport time\n"
                           "print('stuck up', flush=True)\ntime.sleep(300)\n")
    assert nb.wait_for_text(msg_id, "[engine 1] stuck up", timeout=60), nb.stream_text(msg_id)
    os.kill(cluster.pids[1], signal.SIGSTOP)
    try:
        assert nb.wait_for_text(msg_id, "has not answered for 5 s", timeout=60), nb.stream_text(msg_id)
        said = lambda: nb.stream_text(msg_id).count("[procmagic] interrupted:") + ("is lost" in nb.stream_text(msg_id))  # noqa: E731
        for _ in range(8):  # each interrupt escalates one step (INT, TERM, KILL); the fourth stops waiting
            before = said()
            nb.km.interrupt_kernel()
            assert nb.collect_until(lambda: said() > before, timeout=30), nb.stream_text(msg_id)
            if "is lost" in nb.stream_text(msg_id):
                break
        cell = Cell(msg_id)
        while True:  # the shell reply (the idle status may have been pumped already)
            reply = nb.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        cell.reply, cell.outputs = reply["content"], nb.outputs(msg_id)
    finally:
        os.kill(cluster.pids[1], signal.SIGCONT)
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "KeyboardInterrupt", cell.reply
    assert "engine 1" in cell.text() and "is lost (the notebook stopped waiting for it after SIGKILL)" in cell.text(), \
        cell.text()
    assert no_forks_left(cluster, timeout=30), "the signals asked for reach the child once the engine runs again"
    assert cluster.client[1].apply_sync(lambda: "back") == "back"


def test_an_engine_killed_mid_spawn_shows_as_lost(nb, cluster):
    """Last: it kills engine 1."""
    import os
    import signal

    msg_id = nb.kc.execute("%%spawn --engines all --view rc --name doomed\nimport time\n"
                           "print('running', proc.engine, flush=True)\ntime.sleep(2 if proc.engine == 0 else 300)\n")
    assert nb.collect_until(lambda: "running 1" in nb.stream_text(msg_id), timeout=60)
    os.kill(cluster.pids[1], signal.SIGKILL)
    from tests.kernel.conftest import Cell

    cell = nb.finish(Cell(msg_id), timeout=60)  # the cell ends: nothing waits for the dead engine
    text = cell.text()
    assert cell.reply["status"] == "ok", (text, cell.reply.get("evalue"))
    assert "[engine 0] [procmagic] doomed (id" in text and "exited 0" in text, text
    assert "engine 1" in text and "lost" in text, text
    procs = display_text(nb.execute("%procs", timeout=30))
    assert any("doomed@e1" in line and "lost" in line for line in procs.splitlines()), procs
