"""Private files against a hostile local user (docs/reliability.md): a symlink planted where
procmagic's runtime directory goes, a file squatting there, and the log size limit."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from .conftest import Kernel

_FLOOD = "%%spawn --name flood\nfor i in range(2000): print(f'line {i:05d} ' + 'x' * 40)"


@pytest.fixture
def planted(tmp_path: Path, request):
    """A kernel whose XDG_RUNTIME_DIR holds what an attacker planted at procmagic's name."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "bashrc").write_text("precious\n")
    base = tmp_path / "procmagic"
    if request.param == "symlink":
        base.symlink_to(victim)
    elif request.param == "file":
        base.write_text("squatter\n")
    else:  # a directory open to others, where anyone could plant a log's name in advance
        base.mkdir()
        os.chmod(base, 0o777)
    k = Kernel(extra_env={"XDG_RUNTIME_DIR": str(tmp_path), "TMPDIR": str(tmp_path)})
    try:
        k.execute("%load_ext procmagic\n%config ProcMagics.output_cap = 4096")
        yield k, tmp_path, victim
    finally:
        k.close()


@pytest.mark.parametrize("planted", ["symlink", "file", "open-dir"], indirect=True)
def test_planted_runtime_dir_is_never_written_through_and_nothing_is_lost(planted, figure):
    k, tmp_path, victim = planted
    cell = k.execute(_FLOOD, timeout=120)
    text = cell.text()
    match = re.search(r"the full output is in (\S+)", text)
    assert match, text[-2000:]
    log = Path(match.group(1))
    assert not str(log).startswith(str(tmp_path / "procmagic") + os.sep)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    lines = log.read_text().splitlines()
    assert lines[0] == "line 00000 " + "x" * 40 and lines[1999] == "line 01999 " + "x" * 40
    assert sorted(p.name for p in victim.iterdir()) == ["bashrc"]
    assert (victim / "bashrc").read_text() == "precious\n"
    figure("log lines kept of 2000", len([line for line in lines if line.startswith("line ")]), "lines")


def test_a_log_stops_at_its_limit_and_the_cell_says_so(kernel, figure):
    kernel.execute("%config ProcMagics.output_cap = 4096\n%config ProcMagics.log_limit = 20000")
    cell = kernel.execute(_FLOOD, timeout=120)
    text = cell.text()
    assert "reached its limit of 19.5 KB (%config ProcMagics.log_limit)" in text
    match = re.search(r"the first 19.5 KB of output are in (\S+)", text)
    assert match, text[-2000:]
    size = os.path.getsize(match.group(1))
    figure("log size with log_limit = 20000", size, "bytes")
    assert size < 20000 + 200


def test_logs_are_private_and_go_with_the_kernel(tmp_path: Path, figure):
    k = Kernel(extra_env={"XDG_RUNTIME_DIR": str(tmp_path)})
    try:
        k.execute("%load_ext procmagic\n%config ProcMagics.output_cap = 4096")
        kept = k.execute(_FLOOD, timeout=120)
        full = k.execute("%%spawn\nprint('small')", timeout=120)  # all of it reached the notebook
        log = Path(re.search(r"the full output is in (\S+)", kept.text()).group(1))
        assert log.exists() and log.parent.parent == tmp_path / "procmagic"
        assert len(list(log.parent.iterdir())) == 1  # the small spawn's log was deleted
        assert "small" in full.text()
    finally:
        k.close()
    assert not log.parent.exists()  # the kernel's directory went with it
    figure("kernel directories left after shutdown", len(list((tmp_path / "procmagic").iterdir())), "dirs")
