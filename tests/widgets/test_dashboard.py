"""The %procs dashboard: its four parts after real events in a real kernel (no frontend)."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.slow


def _ticks(html: str, pid: int) -> int:
    row = next(r for r in html.split("<tr>") if re.search(rf"<td[^>]*>{pid}</td>", r))
    return int(re.search(r'class="pm-ticks">(\d+)<', row).group(1))


def test_dashboard_shows_processes_queue_traffic_alarms_and_reaped_statuses(wk):
    wk.execute("import procmagic\nfrom procmagic.widgets import dashboards, current_hub")
    wk.execute("%%spawn --name fine\npass")
    wk.execute("%%spawn --name broken\nproc.exit(3)")
    wk.execute("%%spawn --bg -n 2 --queue --name qa\nimport time\nif proc.worker == 0:\n"
               "    for i in range(5):\n        proc.push(b'message %d' % i)\ntime.sleep(120)")
    wk.execute("%%spawn --bg --name ticker\nimport time, procmagic\n"
               "procmagic.signal(procmagic.signal.SIGALRM, lambda signum: None)\nprocmagic.alarm(50_000)\ntime.sleep(120)")
    try:
        _check_dashboard(wk)
    finally:  # the queue keeps the messages nobody popped: free it, whatever happened
        wk.execute("%kill -s SIGKILL all\n%wait --timeout 30\n"
                   "[s.queue.free() for s in procmagic.kernel.spawn.spawns() if s.queue is not None and not s.queue.freed]")


def _check_dashboard(wk):
    cell = wk.execute("%procs")
    shown = [d for d in cell.of_type("display_data")]
    assert len(shown) == 1 and "application/vnd.jupyter.widget-view+json" in shown[0]["data"]
    text = shown[0]["data"]["text/plain"]  # what a frontend without widgets shows
    for part in ("processes (", "queue traffic (", "alarms", "reaped exit statuses, newest first"):
        assert part in text, text
    assert "qa/0" in text and "ticker" in text and "exited 3" in text
    wk.wait_value("len(dashboards()) == 1")
    wk.execute("d = dashboards()[0]\nqa = procmagic.get('qa')\nticker = procmagic.get('ticker')")
    qa_pids, ticker_pid = wk.value("[p.pid for p in qa]"), wk.value("ticker.pid")

    # processes: a row per live child, with its pid
    rows = wk.wait_value("' '.join(r.html.value for r in d.pool.rows if r.proc is not None)")
    for pid in qa_pids + [ticker_pid]:
        assert f"<b class='pm-pid'>{pid}</b>" in rows
    assert wk.value("'3</span> live' in d.title.value") or wk.value("'pm-live\">3<' in d.title.value")

    # queue traffic: depth, the pusher's count, and the depth plot
    queues = wk.wait_value("'class=\"pm-depth\">5</b>' in d.queues.value and d.queues.value")
    assert f"qa/0 (pid {qa_pids[0]})" in queues and "pm-depth-plot" in queues and "<polyline" in queues
    assert re.search(rf"qa/0 \(pid {qa_pids[0]}\)</td><td[^>]*>5</td>", queues), queues
    assert f"qa/0 (pid {qa_pids[0]})" in queues.split("last sender")[1]  # the last sender, by name

    # alarms: the ticker's timer, and ticks that keep coming
    alarms = wk.wait_value("'pm-ticks' in d.alarms.value and d.alarms.value")
    assert ">real<" in alarms and ">50 ms<" in alarms
    first = _ticks(alarms, ticker_pid)
    deadline = time.monotonic() + 30  # 5 more ticks take 0.25 s at 50 ms; a loaded machine is slower
    while (later := _ticks(wk.value("d.alarms.value"), ticker_pid)) < first + 5:
        assert time.monotonic() < deadline, f"the ticks went from {first} to only {later} in 30 s"
        time.sleep(0.2)

    # the ticker's own kill button in the processes part
    kill = wk.value("[b.model_id for r in d.pool.rows if r.proc is ticker for b in r.buttons if 'pm-kill' in b._dom_classes][0]")
    wk.click(kill)  # at once: the first click on a row that never showed another child counts
    assert wk.wait_value("ticker.exitstatus and ticker.exitstatus.how") == "killed by SIGKILL"

    # reaped: newest first, with the failures filter
    reaped = wk.wait_value("'SIGKILL' in d.reaped.value and d.reaped.value")
    assert reaped.index(">ticker<") < reaped.index(">broken<") < reaped.index(">fine<")
    assert "exit 3" in reaped and "exit 0" in reaped
    wk.set_state(wk.value("d.failures.model_id"), value=True)  # the frontend ticks the box
    failures = wk.wait_value("d.failures.value and '>fine<' not in d.reaped.value and d.reaped.value")
    assert ">broken<" in failures and ">ticker<" in failures

    wk.execute("%kill -s SIGKILL qa")
    wk.wait_value("all(p.exitstatus for p in qa) and all(s.done for s in __import__('procmagic').kernel.spawn.spawns())")
    assert wk.value("qa[0].stat_queue().messages") == 5  # left for the notebook: the queue outlives its spawn
    wk.execute("qa[0].free_queue()")
    wk.wait_value("'no procmagic queues' in d.queues.value")


def test_a_new_dashboard_leaves_the_previous_one_as_a_snapshot(wk):
    wk.execute("from procmagic.widgets import dashboards, current_hub")
    first = wk.execute("%procs")
    display_id = first.of_type("display_data")[0]["transient"]["display_id"]
    wk.wait_value("len(dashboards()) == 1")
    wk.execute("d1 = dashboards()[0]\nids = [w.model_id for w in d1.owned]")
    second = wk.execute("%procs")
    wk.wait_value("d1.final and dashboards() and dashboards()[0] is not d1")
    # the display becomes the snapshot, under the latest cell's header (frontends apply it by
    # display id; nbclient only while that cell runs)
    assert wk.collect_until(lambda: any(
        m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
        and "a newer %procs is live" in m["content"]["data"].get("text/html", "")
        for m in wk.outputs(second.msg_id)), timeout=10)
    # the widget stays open and shows the same snapshot to views restored from the kernel
    assert wk.value("[m for m in ids if m not in __import__('ipywidgets').Widget.widgets]") == []
    assert "a newer %procs is live" in wk.value("d1.box.children[0].value")
    # past KEEP_FINISHED, the oldest snapshot's widgets close
    wk.execute("current_hub().KEEP_FINISHED = 1")
    wk.execute("%procs")
    wk.wait_value("not [m for m in ids if m in __import__('ipywidgets').Widget.widgets]")
    wk.execute("current_hub().KEEP_FINISHED = type(current_hub()).KEEP_FINISHED")
