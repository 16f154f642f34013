"""Bounded memory (docs/reliability.md): whatever a child prints, and however it writes it, the
kernel's resident memory grows by at most a few tens of MB."""

from __future__ import annotations

import os

import pytest

from .conftest import SOAK

BOUND_MB = 48  # docs/reliability.md: the promise


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _mem(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


@pytest.fixture
def peak(kernel):
    """``peak()``: the kernel's peak RSS growth in MB since the fixture started."""
    if not _reset_peak(kernel.pid):
        pytest.skip("cannot reset the kernel's peak RSS (/proc/PID/clear_refs)")
    # the first spawns' imports (ipywidgets for a --bg panel) and buffers are not growth
    kernel.execute("%%spawn --bg -n 2\nprint('warm')")
    kernel.execute("%wait", timeout=120)
    kernel.execute("%%spawn\nprint('warm')", timeout=120)
    _reset_peak(kernel.pid)
    start = _mem(kernel.pid)["VmRSS"]
    return lambda: _mem(kernel.pid)["VmHWM"] - start


_HUGE_WRITES = {
    "sys.stdout.write": ("", "import sys\nsys.stdout.write('h' * {size})\nsys.stdout.flush()"),
    "os.write(1) (C-level)": ("", "import os\ndata = b'h' * {size}\nview = memoryview(data)\n"
                                  "while view: view = view[os.write(1, view):]"),
    "--redirect": ("--redirect ", "import sys\nsys.stdout.write('h' * {size})\nsys.stdout.flush()"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", sorted(_HUGE_WRITES))
def test_one_huge_write_costs_the_kernel_a_bounded_amount(kernel, peak, figure, how):
    size = 300_000_000 * SOAK
    options, body = _HUGE_WRITES[how]
    cell = kernel.execute(f"%%spawn {options}\n" + body.format(size=size), timeout=240)
    grown = peak()
    figure(f"kernel peak RSS growth for one 300 MB write, {how}", grown, "MB")
    text = cell.text()
    assert "withheld past the cap" in text and "exited 0" in text, text[-500:]
    assert grown < BOUND_MB, f"kernel grew {grown} MB (871 MB before the fix)"


@pytest.mark.timeout(300)
def test_a_flood_of_printing_children_costs_the_kernel_a_bounded_amount(kernel, peak, figure):
    seconds = 5 * SOAK
    # published output waits in zmq until the frontend takes it: bounded by output_cap per
    # spawn, not by procmagic's buffers (docs/reliability.md); 4 spawns x 1 MB here
    kernel.execute("%config ProcMagics.output_cap = 1_000_000\n%config ProcMagics.log_limit = 2_000_000")
    cells = [kernel.execute(f"%%spawn --bg --name flood{i} -n 2\nimport time\nend = time.time() + {seconds}\n"
                            "while time.time() < end: print('flood ' * 20)") for i in range(4)]
    kernel.execute("%wait", timeout=240)
    grown = peak()
    figure("children flooding", 8, "children")
    figure("kernel peak RSS growth while they flood", grown, "MB")
    assert all("exited 0" in kernel.stream_text(c.msg_id) for c in cells)
    assert grown < BOUND_MB
    # and the disk: each spawn's log stops at log_limit, and its cell says so
    logs = [line.split(" of output are in ")[1].strip() for c in cells
            for line in kernel.stream_text(c.msg_id).splitlines() if " of output are in " in line]
    assert len(logs) == len(cells), [kernel.stream_text(c.msg_id)[-300:] for c in cells]
    sizes = [os.path.getsize(path) for path in logs]
    figure("largest log of a flooding spawn (log_limit 2 MB)", max(sizes) // 1024, "KB")
    assert max(sizes) <= 2_000_000 * 1.01 + 200


@pytest.mark.timeout(300)
def test_a_display_past_the_message_bound_is_refused_in_the_child(kernel, peak, figure):
    cell = kernel.execute("%%spawn\nfrom IPython.display import display\n"
                          "display({'text/plain': 'x' * 10_000_000}, raw=True)\nprint('after')", timeout=240)
    grown = peak()
    figure("kernel peak RSS growth for a 10 MB display (refused)", grown, "MB")
    assert "larger than the 8 MB one message from a child may take" in cell.text()
    assert "after" in cell.text() and "exited 0" in cell.text()
    assert grown < BOUND_MB


@pytest.mark.timeout(300)
def test_the_largest_display_allowed_costs_a_few_times_its_size(kernel, peak, figure):
    cell = kernel.execute("%%spawn\nfrom IPython.display import display\n"
                          "display({'text/plain': 'x' * 7_500_000}, raw=True)", timeout=240)
    grown = peak()
    figure("kernel peak RSS growth for a 7.5 MB display (published)", grown, "MB")
    assert any(len(d["data"].get("text/plain", "")) == 7_500_000 for d in cell.of_type("display_data"))
    assert grown < BOUND_MB  # the payload, its JSON, the message sent, zmq's copy: ~5x
