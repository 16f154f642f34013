"""Without a widget frontend: terminal IPython's %procs prints the dashboard's four parts as
text tables; the HTML and the depth plot are plain functions of the facts."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from procmagic.core.status import ExitStatus
from procmagic.widgets.render import depth_svg, reaped_html
from procmagic.widgets.tables import reaped_text
from tests.kernel.test_terminal import Terminal


@pytest.mark.slow
def test_terminal_procs_prints_the_four_parts_as_text():
    term = Terminal()
    try:
        term.read_until("In [1]:")
        term.send("%load_ext procmagic\n")
        term.read_until("In [2]:")
        term.send("%%spawn --name quick\nprint('done')\n\n\n")
        term.read_until("In [3]:")
        term.send("%%spawn --bg --name lingering\nimport time\ntime.sleep(60)\n\n\n")
        term.read_until("In [4]:")
        term.send("%procs\n")
        term.read_until("In [5]:")
        tail = term.output[term.output.rindex("%procs"):]
        for part in ("processes (1 live)", "queue traffic (0 queues)", "alarms", "reaped exit statuses, newest first"):
            assert part in tail, tail
        assert "lingering" in tail and "running" in tail and "quick" in tail and "exited 0" in tail
        term.send("%kill -s SIGKILL lingering\n")
        term.read_until("In [6]:")
        term.send("%wait lingering\n")
        term.read_until("In [7]:")
    finally:
        term.close()


def test_importing_the_widgets_package_does_not_import_ipywidgets():
    code = "import sys, procmagic.widgets, procmagic.widgets.tables; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out


def _status(id_: int, name: str, code: int | None, sig: int | None = None) -> ExitStatus:
    import signal

    return ExitStatus(pid=1000 + id_, id=id_, code=code, signal=signal.Signals(sig) if sig else None, name=name,
                      wall_time=1.0)


def test_reaped_lists_newest_first_and_filters_failures():
    statuses = [_status(1, "ok", 0), _status(2, "bad", 3), _status(3, "shot", None, 9)]
    html = reaped_html(statuses, failures_only=False)
    assert html.index(">shot<") < html.index(">bad<") < html.index(">ok<")
    assert ">ok<" not in reaped_html(statuses, failures_only=True)
    text = reaped_text(statuses, failures_only=True)
    assert "killed by SIGKILL" in text and "exited 3" in text and " ok " not in text


def test_depth_plot_is_an_svg_polyline_over_the_window():
    now = time.monotonic()
    svg = depth_svg([(now - 70, 9), (now - 30, 2), (now - 10, 6), (now, 4)], now=now)
    assert svg.startswith("<svg") and "<polyline" in svg and "max 6" in svg and "now 4" in svg
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 3  # the sample older than the window is left out
    assert "<polyline" not in depth_svg([], now=now)


def test_panel_of_refuses_what_is_not_a_name():
    from procmagic.widgets import panel_of

    assert panel_of("no such spawn") is None  # a name nobody used: no panel, no error
    with pytest.raises(TypeError, match=r"panel_of\(\) takes a spawn's name \(a str, .*\), not int 3; "
                                        r"e.g. panel_of\('crew'\)"):
        panel_of(3)
