"""No unused imports, undefined names or other pyflakes findings in the project's Python files
(notebooks are left out: names bound by `%%spawn --out` are invisible to a linter)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ruff_pyflakes_rules_pass():
    pytest.importorskip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F", "--output-format", "concise",
         "procmagic", "bench", "tests", "examples", *glob.glob(os.path.join(ROOT, "notebooks", "*.py"))],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
