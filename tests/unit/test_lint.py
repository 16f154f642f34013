"""No unused imports, undefined names or other pyflakes findings in the project's Python files
(notebooks' py:percent sources are left out: they hold cell magics, and names bound by
`%%spawn --out` are invisible to a linter)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plain_scripts(folder: str) -> list[str]:
    """The .py files of ``folder`` that are not one half of a jupytext pair (NN-name.py/.ipynb)."""
    return [path for path in glob.glob(os.path.join(folder, "*.py"))
            if not os.path.exists(path[:-3] + ".ipynb")]


def test_ruff_pyflakes_rules_pass():
    pytest.importorskip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F", "--output-format", "concise",
         "procmagic", "bench", "tests", "examples", *_plain_scripts(os.path.join(ROOT, "notebooks"))],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
