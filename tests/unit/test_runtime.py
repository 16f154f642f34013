"""procmagic's private files (core/runtime.py) against a hostile local user: planted symlinks,
squatting files and directories, and leftovers of dead processes. Each case runs in a fresh
interpreter with its own ``XDG_RUNTIME_DIR``, as a kernel would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procmagic.core import runtime

_SCRIPT = """
import json, os, sys
from procmagic.core import runtime
out = {{"base": runtime.runtime_dir()}}
{body}
print(json.dumps(out))
"""


def _run(xdg: Path, body: str = "", tmp: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    done = subprocess.run([sys.executable, "-c", _SCRIPT.format(body=body)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_base_is_made_0700_in_the_users_runtime_dir(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out["base"] == str(tmp_path / "procmagic")
    assert _mode(out["base"]) == 0o700


def test_a_symlink_planted_at_the_base_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (tmp_path / "procmagic").symlink_to(victim)
    out = _run(tmp_path, "path, f = runtime.open_private(runtime.process_dir(), 'a.log'); f.write('x'); f.close()\n"
                         "out['file'] = path", tmp=tmp_path)
    assert not out["file"].startswith(str(tmp_path / "procmagic") + os.sep)
    assert list(victim.iterdir()) == []
    assert "is a symlink" in out["stderr"]


def test_a_base_of_ours_that_others_may_only_read_is_tightened(tmp_path: Path) -> None:
    base = tmp_path / "procmagic"
    base.mkdir()
    os.chmod(base, 0o755)  # as the first procmagic left them: nobody else could write into it
    out = _run(tmp_path, "out['dir'] = runtime.process_dir()", tmp=tmp_path)
    assert out["dir"].startswith(str(base) + os.sep)
    assert _mode(base) == 0o700 and "not using" not in out["stderr"]


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o757])
def test_a_base_open_to_others_is_not_used(tmp_path: Path, mode: int) -> None:
    base = tmp_path / "procmagic"
    base.mkdir()
    os.chmod(base, mode)
    out = _run(tmp_path, "out['dir'] = runtime.process_dir()", tmp=tmp_path)
    assert not out["dir"].startswith(str(base) + os.sep)
    assert Path(out["dir"]).parent.name.startswith(f"procmagic-{os.geteuid()}-")  # a fresh mkdtemp
    assert not Path(out["dir"]).parent.exists()  # removed at exit with what was in it
    assert list(base.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's takes root")
def test_a_base_owned_by_someone_else_is_not_used(tmp_path: Path) -> None:
    base = tmp_path / "procmagic"
    base.mkdir(mode=0o700)
    os.chown(base, 65534, 65534)
    out = _run(tmp_path, "out['dir'] = runtime.process_dir()", tmp=tmp_path)
    assert not out["dir"].startswith(str(base) + os.sep)
    assert "belongs to uid 65534" in out["stderr"]


def test_a_squatting_file_at_the_base_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "procmagic").write_text("squatter")
    out = _run(tmp_path, "out['dir'] = runtime.process_dir()", tmp=tmp_path)
    assert not out["dir"].startswith(str(tmp_path / "procmagic") + os.sep)
    assert (tmp_path / "procmagic").read_text() == "squatter"


def test_private_files_skip_planted_symlinks_and_squatters(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    target = tmp_path / "bashrc"
    target.write_text("precious\n")
    (directory / "spawn-1.log").symlink_to(target)
    (directory / "spawn-1-1.log").write_text("squatter")
    path, f = runtime.open_private(str(directory), "spawn-1.log")
    with f:
        f.write("output\n")
    assert path == str(directory / "spawn-1-2.log")
    assert target.read_text() == "precious\n"
    assert (directory / "spawn-1-1.log").read_text() == "squatter"
    assert _mode(path) == 0o600 and Path(path).read_text() == "output\n"


def test_the_process_dir_goes_at_exit_and_dead_ones_are_swept(tmp_path: Path) -> None:
    base = tmp_path / "procmagic"
    base.mkdir(mode=0o700)
    dead = base / "999999999.1"  # no such pid
    dead.mkdir(mode=0o700)
    (dead / "old.log").write_text("old")
    mine = base / f"{os.getpid()}.{runtime.start_ticks(os.getpid())}"  # alive: this test's process
    mine.mkdir(mode=0o700)
    foreign = base / "notes"
    foreign.mkdir(mode=0o700)
    old_layout = base / "999999998"  # the first procmagic's <pid> directories
    old_layout.mkdir(mode=0o700)
    old_alive = base / str(os.getpid())
    old_alive.mkdir(mode=0o700)
    out = _run(tmp_path, "out['dir'] = runtime.process_dir(); runtime.open_private(out['dir'], 'x.log')[1].close()")
    assert out["dir"].startswith(str(base))
    assert not os.path.exists(out["dir"])  # removed at the interpreter's exit
    assert not dead.exists() and not old_layout.exists()
    assert mine.exists() and foreign.exists() and old_alive.exists()


@pytest.mark.parametrize("fallback", [True, False])
def test_fallback_directories_of_dead_kernels_are_swept(tmp_path: Path, fallback: bool) -> None:
    if fallback:
        (tmp_path / "procmagic").symlink_to(tmp_path)  # forces the fallback this time too
    dead = tmp_path / f"procmagic-{os.geteuid()}-deadbeef"
    (dead / "999999999.1").mkdir(parents=True, mode=0o700)
    (dead / "queues").mkdir(mode=0o700)  # an empty record directory
    os.chmod(dead, 0o700)
    live = tmp_path / f"procmagic-{os.geteuid()}-alive000"
    (live / f"{os.getpid()}.{runtime.start_ticks(os.getpid())}").mkdir(parents=True, mode=0o700)
    os.chmod(live, 0o700)
    _run(tmp_path, "out['dir'] = runtime.process_dir()", tmp=tmp_path)
    assert not dead.exists()
    assert live.exists()
