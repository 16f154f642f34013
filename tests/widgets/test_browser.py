"""The widgets in a real browser: JupyterLab and Notebook 7 on localhost, Debian's Chromium
driven by Playwright. One server per frontend and one browser serve every test of the module.

- JupyterLab: a notebook spawns children in the foreground and in the background, uses a queue
  and sets an alarm; the panels and the dashboard must show the pid, the live output, the alarm
  ticks, the queue depth and the final exit status, and the kill buttons must kill on the first
  click (checked from the kernel too).
- A page reloaded and a second tab, both opened while a ``--bg`` spawn runs, must end with its
  final status; then the same panel in JupyterLab's dark theme must read (WCAG contrast).
- Notebook 7: streamed lines, the panel, the dashboard, and its kill button on the first click.

Screenshots go to artifacts/browser/.
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


@pytest.fixture(scope="module")
def pw_browser():
    """Playwright and one Chromium profile for the module's tests."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = browser(pw, profile)
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def lab():
    with Lab("lab") as server:
        yield server


@pytest.fixture(scope="module")
def nb7():
    with Lab("notebook") as server:
        yield server


class Stages:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, name: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {name}", flush=True)


def open_notebook(ctx, server: Lab, name: str, cells: list[str] | None = None):
    """Write ``cells`` as the notebook ``name`` (None: it exists), open it in a new page and wait
    until its kernel is idle; the page."""
    if cells is not None:
        with open(os.path.join(server.root, name), "w") as f:
            json.dump(notebook(cells), f)
    page = ctx.new_page()
    page.set_default_timeout(60 * MS)
    page.goto(server.open_url(name), timeout=120 * MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120 * MS)
    deadline = time.monotonic() + 120
    while True:  # a kernel picker may ask first
        accept = page.locator(".jp-Dialog button.jp-mod-accept")
        if accept.count() and accept.first.is_visible():
            accept.first.click()
        session = server.session(name)
        if session is not None:
            kernel = server.api(f"/api/kernels/{session['kernel']['id']}")
            if kernel.get("execution_state") == "idle" and page.locator(".jp-Notebook .jp-Cell").count():
                break
        assert time.monotonic() < deadline, f"the kernel of {name} did not start within 120 s"
        time.sleep(0.2)
    return page


def run_all(page) -> None:
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")


def stop_kernel(server: Lab, name: str) -> None:
    session = server.session(name)
    if session is not None:
        server.api(f"/api/sessions/{session['id']}", method="DELETE", timeout=60)


def diagnose(server: Lab, client) -> None:
    print("the server's log (with the kernel's stderr):\n" + server.log(), flush=True)
    if client is not None:
        try:
            print("the hub, from the kernel:\n" + execute(client, _DIAGNOSE), flush=True)
        except Exception as exc:
            print(f"(no diagnosis from the kernel: {exc})")


#: WCAG contrast of an element's text against the first opaque background behind it
_CONTRAST = """(el) => {
    const parse = (c) => {
        const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(',').map(x => parseFloat(x));
        return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
    };
    const fg = parse(getComputedStyle(el).color);
    let node = el, bg = null;
    while (node) {
        const c = parse(getComputedStyle(node).backgroundColor);
        if (c.a > 0.5) { bg = c; break; }
        node = node.parentElement;
    }
    bg = bg || {r: 255, g: 255, b: 255, a: 1};
    const mix = (f, b) => f * fg.a + b * (1 - fg.a);
    const text = {r: mix(fg.r, bg.r), g: mix(fg.g, bg.g), b: mix(fg.b, bg.b)};
    const lum = (c) => {
        const v = [c.r, c.g, c.b].map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
    };
    const a = lum(text), b = lum(bg);
    return {ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), color: getComputedStyle(el).color,
            background: `rgb(${bg.r}, ${bg.g}, ${bg.b})`};
}"""


def test_panels_and_dashboard_in_jupyterlab(lab, pw_browser):
    from playwright.sync_api import expect

    stage = Stages()
    ctx = pw_browser
    client = None
    try:
        page = open_notebook(ctx, lab, "demo.ipynb", CELLS)
        stage("kernel up")
        client = lab.kernel_client("demo.ipynb")
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
        # buttons never shrink: in a narrow page, every row's buttons still show their whole label
        page.set_viewport_size({"width": 560, "height": 1400})
        page.wait_for_timeout(300)
        squeezed = board.locator(".pm-row button").evaluate_all(
            "(bs) => bs.filter(b => b.offsetWidth < 24 || b.scrollWidth > b.clientWidth + 1).map(b => b.textContent)")
        _shot(page, board, "dashboard-narrow.png")
        page.set_viewport_size({"width": 1280, "height": 1400})
        assert squeezed == [], f"squeezed buttons in a 560 px page: {squeezed}"
        # a dashboard row's kill button acts on the first click (the row never showed another child)
        board.locator(".pm-row:has(button.pm-kill)").filter(has_text="ticker").locator("button.pm-kill").click()
        expect(cells.nth(4).locator(".procmagic-panel .pm-exit")).to_have_text("SIGKILL", timeout=30 * MS)
        expect(board.locator(".pm-row-facts")).to_have_count(3, timeout=30 * MS)
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
        diagnose(lab, client)
        raise
    finally:
        if client is not None:
            try:  # the qa queue keeps its 5 messages after its spawn: free it here
                left = execute(client, _CLEAN_UP, timeout=60)
                assert left.strip().splitlines()[-1] == "[]", f"queues left in the kernel: {left}"
            finally:
                client.stop_channels()
        stop_kernel(lab, "demo.ipynb")


RELOAD_CELLS = [
    "%load_ext procmagic",
    # prints until the test creates the flag file, then exits 0
    "%%spawn --bg --name slow\nimport os, time\ni = 0\nwhile not os.path.exists('go.flag'):\n"
    "    print(f'slow {i}', flush=True)\n    i += 1\n    time.sleep(0.5)\nprint('slow done')",
    "%procs",
]


def _saved(path: str, timeout: float = 60) -> None:
    """Wait until the notebook at ``path`` was saved with the live panel's widget in it."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            if "application/vnd.jupyter.widget-view+json" in f.read():
                return
        assert time.monotonic() < deadline, f"{path} was not saved with the panel within {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("frontend", ["lab", "nb7"])
def test_a_reloaded_page_and_a_second_tab_end_with_the_final_panel_also_in_dark_theme(frontend, lab, nb7,
                                                                                       pw_browser):
    from playwright.sync_api import expect

    lab = lab if frontend == "lab" else nb7  # (both servers start before the leak check's count)
    stage = Stages()
    ctx = pw_browser
    client = None
    name = "reload.ipynb"
    pages = []
    try:
        first = open_notebook(ctx, lab, name, RELOAD_CELLS)
        pages.append(first)
        client = lab.kernel_client(name)
        run_all(first)
        panel = first.locator(".jp-Notebook .jp-Cell").nth(1).locator(".procmagic-bg-panel")
        expect(panel.locator(".pm-state").first).to_have_text("running", timeout=90 * MS)
        expect(first.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea")).to_contain_text(
            "slow 2", timeout=30 * MS)
        first.keyboard.press("Control+s")  # what a reload and a second tab load
        _saved(os.path.join(lab.root, name))
        stage("spawn running, saved")
        second = open_notebook(ctx, lab, name)  # a second tab, while the spawn runs
        pages.append(second)
        first.reload(timeout=120 * MS)  # and the first page reloaded
        first.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120 * MS)
        for page in pages:  # both rebuild the live panel from the kernel
            cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
            expect(cell.locator(".procmagic-bg-panel .pm-state").first).to_have_text("running", timeout=120 * MS)
        stage("both views show the live panel")
        with open(os.path.join(lab.root, "go.flag"), "w"):
            pass
        for page in pages:  # the spawn ended: its final panel, in both views
            cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
            expect(cell.locator(".procmagic-panel .pm-exit").first).to_have_text("exit 0", timeout=60 * MS)
            expect(cell.locator(".procmagic-panel").first).to_contain_text("wall")
            expect(cell.locator(".procmagic-panel").first).to_contain_text("peak")
        assert execute(client, "import procmagic; print(procmagic.get('slow').exitstatus.how)").strip() == "exited 0"
        stage("final panel in both views")
        final = second.locator(".jp-Notebook .jp-Cell").nth(1).locator(".procmagic-panel").first
        if frontend == "nb7":
            return  # the dark theme is checked in JupyterLab
        _shot(second, final, "theme-light-panel.png")
        _shot(second, second.locator(".jp-Notebook .jp-Cell").nth(1), "theme-light-cell.png")
        light_board = second.locator(".jp-Notebook .jp-Cell").nth(2).locator(".procmagic-dashboard")
        expect(light_board.locator(".pm-reaped")).to_contain_text("slow", timeout=60 * MS)
        _shot(second, light_board, "theme-light-dashboard.png")

        # a third view, opened after the end, in JupyterLab's dark theme: the final panel again
        # (from the kernel's widget: the file on disk was saved while the spawn ran), and it reads
        # (a reload would ask to leave a modified notebook: a new tab does not)
        lab.set_theme("JupyterLab Dark")
        third = open_notebook(ctx, lab, name)
        pages.append(third)
        third.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=120 * MS)
        cell = third.locator(".jp-Notebook .jp-Cell").nth(1)
        final = cell.locator(".procmagic-panel").first
        expect(final.locator(".pm-exit")).to_have_text("exit 0", timeout=90 * MS)
        _shot(third, final, "theme-dark-panel.png")
        _shot(third, cell, "theme-dark-cell.png")
        for part in (".pm-head", ".pm-name", ".pm-exit", ".pm-state"):
            found = final.locator(part).first.evaluate(_CONTRAST)
            assert found["ratio"] >= 4.5, f"{part} in the dark theme: {found}"
        board = third.locator(".jp-Notebook .jp-Cell").nth(2).locator(".procmagic-dashboard")
        expect(board.locator(".pm-reaped")).to_contain_text("slow", timeout=60 * MS)
        _shot(third, board, "theme-dark-dashboard.png")
        for part in (".pm-title", ".pm-reaped td", ".pm-reaped th", ".pm-reaped .pm-state"):
            found = board.locator(part).first.evaluate(_CONTRAST)
            assert found["ratio"] >= 4.5, f"the dashboard's {part} in the dark theme: {found}"
        stage("dark theme checked")
    except BaseException:
        diagnose(lab, client)
        raise
    finally:
        if frontend == "lab":
            try:
                lab.set_theme("JupyterLab Light")
            except OSError:
                pass
        for page in pages:
            page.close()
        if client is not None:
            client.stop_channels()
        stop_kernel(lab, name)


NB7_CELLS = [
    "%load_ext procmagic",
    "%%spawn --name lines\nimport time\nfor i in range(6):\n    print(f'line {i}', flush=True)\n    time.sleep(0.3)",
    "%%spawn --bg --name victim\nimport time\nfor i in range(100000):\n    print(f'tick {i}', flush=True)\n"
    "    time.sleep(0.5)",
    "%procs",
]


def test_notebook7_streams_panels_dashboard_and_kills_on_the_first_click(nb7, pw_browser):
    from playwright.sync_api import expect

    stage = Stages()
    client = None
    name = "nb7.ipynb"
    page = None
    try:
        page = open_notebook(pw_browser, nb7, name, NB7_CELLS)
        client = nb7.kernel_client(name)
        cells = page.locator(".jp-Notebook .jp-Cell")
        expect(cells).to_have_count(len(NB7_CELLS))
        run_all(page)
        stage("run all")
        fg = cells.nth(1)
        expect(fg.locator(".jp-OutputArea")).to_contain_text("line 5", timeout=90 * MS)
        expect(fg.locator(".procmagic-panel .pm-exit")).to_have_text("exit 0", timeout=60 * MS)
        bg = cells.nth(2)
        expect(bg.locator(".procmagic-bg-panel .pm-state").first).to_have_text("running", timeout=60 * MS)
        victim_pid = _int(bg.locator(".procmagic-bg-panel .pm-pid").first.inner_text())
        expect(bg.locator(".jp-OutputArea")).to_contain_text("tick 2", timeout=30 * MS)
        board = cells.nth(3).locator(".procmagic-dashboard")
        row = board.locator(".pm-row:has(button.pm-kill)").filter(has_text="victim")
        expect(row).to_contain_text(str(victim_pid), timeout=60 * MS)
        expect(board.locator(".pm-reaped")).to_contain_text("lines")
        _shot(page, cells.nth(2), "notebook7-panel.png")
        _shot(page, board, "notebook7-dashboard.png")
        stage("panels and dashboard checked")
        row.locator("button.pm-kill").click()  # the first click on a fresh row counts
        expect(bg.locator(".procmagic-panel .pm-exit").first).to_have_text("SIGKILL", timeout=30 * MS)
        assert not psutil.pid_exists(victim_pid), "the killed child is still there (or a zombie)"
        expect(board.locator(".pm-reaped tr").nth(1)).to_contain_text("victim", timeout=30 * MS)
        stage("kill checked")
    except BaseException:
        diagnose(nb7, client)
        raise
    finally:
        if page is not None:
            page.close()
        if client is not None:
            try:
                execute(client, "%kill -s SIGKILL all\n%wait --timeout 20", timeout=60)
            finally:
                client.stop_channels()
        stop_kernel(nb7, name)
