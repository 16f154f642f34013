"""--engines TARGETS parsing and the message without ipyparallel: no cluster needed."""

from __future__ import annotations

import sys

import pytest

from procmagic.engines.targets import INSTALL_HINT, TargetError, parse_targets, require_ipyparallel


@pytest.mark.parametrize("text, expected", [
    ("all", "all"), ("ALL", "all"), ("3", 3), ("0,2,5", [0, 2, 5]), ("3,", [3]), (" 1, 1 ,0 ", [1, 0]),
])
def test_targets_are_all_a_count_or_ids(text, expected):
    assert parse_targets(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "some", "1,x", ",", "1.5"])
def test_bad_targets_say_the_rule(text):
    with pytest.raises(TargetError, match=r"--engines must be 'all', a count N .* not "):
        parse_targets(text)


def test_without_ipyparallel_engines_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipyparallel", None)  # what an absent package looks like to import
    with pytest.raises(ImportError) as info:
        require_ipyparallel()
    assert str(info.value) == INSTALL_HINT
    assert "pip install 'procmagic[engines]'" in INSTALL_HINT


def test_importing_procmagic_engines_does_not_import_ipyparallel():
    import subprocess

    code = "import sys, procmagic.engines, procmagic.magics; print('ipyparallel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
