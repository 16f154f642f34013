"""A notebook executed headless keeps everything a ``--bg`` spawn printed, and its final status.

papermill and ``jupyter nbconvert --execute`` (both nbclient) file a cell's output only while
the cell runs. The notebook below starts a ``--bg`` spawn that prints for about two seconds,
runs another cell, then waits for it the documented way (``%wait counter``). The saved file must
hold, in the spawning cell, every line (stdout and stderr, in order), the exit status in the
final panel (no "running" left), and an HTML export made from it must show the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(300)]

LINES = [f"counting {i}/6" for i in range(1, 7)]
CELLS = [
    "%load_ext procmagic",
    "%%spawn --bg --name counter\nimport sys, time\nfor i in range(1, 7):\n    print(f'counting {i}/6', flush=True)\n"
    "    if i == 3:\n        print('a line on stderr', file=sys.stderr, flush=True)\n    time.sleep(0.3)",
    "print('another cell runs meanwhile')",
    "%wait counter",
]


def _notebook(path: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, path)


def _run(args: list[str], cwd: str) -> None:
    result = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def _check(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    outputs = nb.cells[1].outputs
    panel = outputs[0]
    assert panel.output_type == "display_data"
    text = panel.data["text/plain"]
    assert "exited" in text and "exit 0" in text and "running" not in text, text
    assert "wall" in text and "peak rss" in text, text
    assert re.search(r"exit 0", panel.data["text/html"]) and "wall" in panel.data["text/html"]
    copies = [o for o in outputs if o.output_type == "display_data" and "its complete output" in o.data.get("text/plain", "")]
    assert len(copies) == 1, [o.get("data", o.get("text")) for o in outputs]
    copy = copies[0].data["text/plain"]
    expected = LINES[:3] + ["a line on stderr"] + LINES[3:] + ["counter (id"]
    at = [copy.index(line) for line in expected]
    assert at == sorted(at), copy  # every line, in order
    assert re.search(r"counter \(id \d+, pid \d+\) exited 0", copy)
    assert "counting 6/6" in copies[0].data["text/html"]
    assert "exited 0" in "".join(o.get("text", "") for o in nb.cells[3].outputs)  # %wait's own table


@pytest.fixture
def workdir(tmp_path):
    _notebook(str(tmp_path / "late.ipynb"))
    return str(tmp_path)


def test_papermill_keeps_late_output_and_the_final_status(workdir):
    _run([sys.executable, "-m", "papermill", "--no-progress-bar", "late.ipynb", "out.ipynb"], workdir)
    _check(os.path.join(workdir, "out.ipynb"))


def test_nbconvert_execute_keeps_late_output_and_the_final_status_also_in_html(workdir):
    _run([_bin("jupyter-nbconvert"), "--to", "notebook", "--execute", "late.ipynb", "--output", "out.ipynb"], workdir)
    out = os.path.join(workdir, "out.ipynb")
    _check(out)
    _run([_bin("jupyter-nbconvert"), "--to", "html", out, "--output", "out.html"], workdir)
    with open(os.path.join(workdir, "out.html"), encoding="utf-8") as f:
        page = f.read()
    assert "exit 0" in page and "counting 6/6" in page and "a line on stderr" in page
