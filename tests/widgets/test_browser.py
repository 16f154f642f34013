"""The widgets in a real browser: JupyterLab on localhost, Debian's Chromium driven by
Playwright. A notebook spawns children in the foreground and in the background, uses a queue
and sets an alarm; the panels and the dashboard must show the pid, the live output, the alarm
ticks, the queue depth and the final exit status, and the kill button must kill (checked from
the kernel too). Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time

import psutil
import pytest

from .lab import CHROMIUM, Lab, browser, execute, notebook

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(420)]

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "artifacts", "browser")

CELLS = [
    "%load_ext procmagic",
    # 1: foreground, prints for 8 s
    "%%spawn --name fgdemo\nimport time\nfor i in range(16):\n    print(f'line {i}', flush=True)\n    time.sleep(0.5)",
    # 2: background, prints until killed
    "%%spawn --bg --name victim\nimport time\nfor i in range(100000):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.5)",
    # 3: two workers on a queue; worker 0 leaves 5 messages in it
    "%%spawn --bg -n 2 --queue --name qa\nimport time\nif proc.worker == 0:\n    for i in range(5):\n"
    "        proc.push(f'message {i}')\ntime.sleep(300)",
    # 4: an interval timer of 100 ms
    "%%spawn --bg --name ticker\nimport time, procmagic\nprocmagic.signal(procmagic.signal.SIGALRM, lambda signum: None)\n"
    "procmagic.alarm(100_000)\ntime.sleep(300)",
    # 5: reads its stdin (--redirect): the panel's input box feeds it
    "%%spawn --bg --redirect --name echo\nimport sys\nfor line in sys.stdin:\n    print('got', line.strip(), flush=True)\n"
    "print('stdin closed')",
    # 6: a failure for the reaped list
    "%%spawn --name oops\nproc.exit(2)",
    # 7: the dashboard
    "%procs",
]
MS = 1000  # Playwright counts milliseconds
_LIVE_OUTPUT = """() => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
    const state = cell && cell.querySelector('.procmagic-panel .pm-state');
    const out = cell && cell.querySelector('.jp-OutputArea');
    return !!(state && out && state.textContent === 'running' && out.textContent.includes('line 2'));
}"""
_CLEAN_UP = """
%kill -s SIGKILL all
%wait --timeout 20
import procmagic
for s in procmagic.kernel.spawn.spawns():
    if s.queue is not None and not s.queue.freed:
        s.queue.free()
print([q.id for q in procmagic.queues() if q.mine])
"""
_DIAGNOSE = """
from procmagic.widgets import current_hub
hub = current_hub()
print(hub.stats, list(hub.errors))
for v in hub.views:
    print(v.kind, getattr(getattr(v, 'spawn', None), 'name', ''), 'live', v.live, 'dirty', v.dirty, 'refreshed', v.refreshed)
    w = getattr(v, 'widget', None) or v
    for part in ('head', 'title', 'queues'):
        if hasattr(w, part):
            print('  ', part, getattr(w, part).value[-300:])
import procmagic, traceback
for s in procmagic.kernel.spawn.spawns():
    if s.queue is not None:
        print('queue of', s.name, s.queue, s.queue.freed)
        try:
            print('  ', s.queue.stat())
        except Exception:
            traceback.print_exc(file=__import__('sys').stdout)
print(hub.queue_watch.sample())
"""


def _shot(page, locator, name: str) -> None:
    """Screenshot of what ``locator`` shows now. Live parts re-render (an updated display is a new
    element), so this clips the page to the element's box instead of waiting for it to settle."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    for attempt in range(5):
        try:
            locator.scroll_into_view_if_needed(timeout=10 * MS)
            box = locator.bounding_box(timeout=10 * MS)
            if box and box["width"] > 0 and box["height"] > 0:
                page.screenshot(path=os.path.join(ARTIFACTS, name), clip=box, timeout=30 * MS)
                return
        except Exception:
            if attempt == 4:
                raise
        page.wait_for_timeout(200)
    raise AssertionError(f"nothing to screenshot for {name}")


def _int(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_panels_and_dashboard_in_jupyterlab():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()

    def stage(name: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {name}", flush=True)
    with Lab() as lab, sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        with open(os.path.join(lab.root, "demo.ipynb"), "w") as f:
            json.dump(notebook(CELLS), f)
        ctx = browser(pw, profile)
        client = None
        try:
            page = ctx.new_page()
            page.set_default_timeout(60 * MS)
            stage("lab up")
            page.goto(f"{lab.url}/lab/tree/demo.ipynb", timeout=120 * MS)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120 * MS)
            deadline = time.monotonic() + 120
            while True:  # a kernel picker may ask first
                accept = page.locator(".jp-Dialog button.jp-mod-accept")
                if accept.count() and accept.first.is_visible():
                    accept.first.click()
                if lab.api("/api/sessions") and page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
                    break
                assert time.monotonic() < deadline, "the notebook's kernel did not start within 120 s"
                time.sleep(0.2)
            stage("kernel up")
            client = lab.kernel_client()
            page.keyboard.press("Control+b")  # fold the file browser: wider cells, wider screenshots
            cells = page.locator(".jp-Notebook .jp-Cell")
            expect(cells).to_have_count(len(CELLS))
            page.click("li.lm-MenuBar-item:has-text('Run')")
            page.click("li.lm-Menu-item[data-command='runmenu:run-all']")

            stage("run all")
            # the foreground panel, live: pid and running, while the output streams
            fg = cells.nth(1)
            fg_panel = fg.locator(".procmagic-panel").first
            expect(fg_panel.locator(".pm-state").first).to_have_text("running", timeout=90 * MS)
            fg_pid = _int(fg_panel.locator(".pm-pid").first.inner_text())
            # the output streams in while the panel still says running (both seen in one frame)
            page.wait_for_function(_LIVE_OUTPUT, timeout=60 * MS)
            assert psutil.pid_exists(fg_pid)
            _shot(page, fg_panel, "panel-foreground-live.png")
            expect(fg_panel.locator(".pm-exit")).to_have_text("exit 0", timeout=30 * MS)
            _shot(page, fg.locator(".jp-Cell-outputWrapper"), "panel-foreground-final.png")

            stage("foreground panel checked")
            # the background panel: a widget with the pid, output streaming below it
            bg = cells.nth(2)
            bg_panel = bg.locator(".procmagic-bg-panel")
            expect(bg_panel.locator(".pm-state").first).to_have_text("running", timeout=60 * MS)
            victim_pid = _int(bg_panel.locator(".pm-pid").first.inner_text())
            assert execute(client, "import procmagic; print(procmagic.get('victim').pid)").strip() == str(victim_pid)
            expect(bg.locator(".jp-OutputArea")).to_contain_text("tick 3", timeout=30 * MS)

            stage("background panel checked")
            # workers on a queue, and the ticker's panel counting alarm ticks
            qa_panel = cells.nth(3).locator(".procmagic-bg-panel")
            expect(qa_panel.locator(".pm-row-facts")).to_have_count(2, timeout=60 * MS)
            expect(qa_panel.locator(".pm-depth")).to_have_text("5", timeout=30 * MS)
            ticker_ticks = cells.nth(4).locator(".procmagic-bg-panel .pm-ticks")
            expect(ticker_ticks).to_have_count(1, timeout=60 * MS)

            stage("workers and ticker checked")
            # a line typed in the input box reaches the child's stdin; "close stdin" ends it
            echo = cells.nth(5)
            box = echo.locator(".procmagic-bg-panel .pm-stdin input")
            box.fill("hello from the browser")
            _shot(page, echo.locator(".procmagic-bg-panel"), "panel-redirect.png")
            box.press("Enter")
            expect(echo.locator(".jp-OutputArea")).to_contain_text("got hello from the browser", timeout=30 * MS)
            expect(box).to_have_value("", timeout=30 * MS)
            echo.locator(".procmagic-bg-panel button.pm-close-stdin").click()
            expect(echo.locator(".jp-OutputArea")).to_contain_text("stdin closed", timeout=30 * MS)
            expect(echo.locator(".procmagic-panel .pm-exit")).to_have_text("exit 0", timeout=30 * MS)
            stage("stdin checked")
            # the dashboard: processes, queue depth and its plot, alarm ticks, reaped statuses
            board = cells.nth(7).locator(".procmagic-dashboard")
            expect(board.locator(".pm-queues .pm-depth")).to_have_text("5", timeout=90 * MS)
            expect(board.locator(".pm-queues polyline")).to_have_count(1)
            ticks = board.locator(".pm-alarms .pm-ticks").first
            expect(ticks).not_to_have_text("0", timeout=30 * MS)
            first = _int(ticks.inner_text())
            page.wait_for_timeout(1500)
            assert _int(ticks.inner_text()) >= first + 5, "alarm ticks did not advance on the dashboard"
            expect(board.locator(".pm-row-facts")).to_have_count(4)  # victim, qa/0, qa/1, ticker
            expect(board.locator(".pm-row-facts").first).to_contain_text(str(victim_pid))
            reaped = board.locator(".pm-reaped")
            expect(reaped).to_contain_text("exit 2")
            expect(reaped).to_contain_text("exit 0")
            _shot(page, board, "dashboard.png")
            _shot(page, bg_panel, "panel-background.png")
            _shot(page, qa_panel, "panel-workers.png")

            stage("dashboard checked")
            # the kill button kills: the panel's final status, the dashboard, and the kernel agree
            bg_panel.locator("button.pm-kill").click()
            expect(bg.locator(".procmagic-panel .pm-exit")).to_have_text("SIGKILL", timeout=30 * MS)
            how = execute(client, "print(procmagic.get('victim').exitstatus.how)").strip()
            assert how == "killed by SIGKILL"
            assert not psutil.pid_exists(victim_pid), "the killed child is still there (or a zombie)"
            expect(reaped.locator("tr").nth(1)).to_contain_text("victim", timeout=30 * MS)
            expect(reaped.locator("tr").nth(1)).to_contain_text("SIGKILL")
            _shot(page, bg.locator(".jp-Cell-outputWrapper"), "panel-background-killed.png")
            _shot(page, bg.locator(".procmagic-panel"), "panel-final.png")

            stage("kill checked")
            # the failures filter
            board.locator(".pm-failures input").check()
            expect(reaped).not_to_contain_text("fgdemo", timeout=30 * MS)
            expect(reaped).to_contain_text("oops")
            _shot(page, board, "dashboard-failures.png")
            page.screenshot(path=os.path.join(ARTIFACTS, "notebook.png"))
        except BaseException:
            print("JupyterLab's log (with the kernel's stderr):\n" + lab.log(), flush=True)
            if client is not None:
                try:
                    print("the hub, from the kernel:\n" + execute(client, _DIAGNOSE), flush=True)
                except Exception as exc:
                    print(f"(no diagnosis from the kernel: {exc})")
            raise
        finally:
            if client is not None:
                try:  # the qa queue keeps its 5 messages after its spawn: free it here
                    left = execute(client, _CLEAN_UP, timeout=60)
                    assert left.strip().splitlines()[-1] == "[]", f"queues left in the kernel: {left}"
                finally:
                    client.stop_channels()
            ctx.close()
    elapsed = time.monotonic() - started
    print(f"browser test: {elapsed:.1f} s")
