"""Run every bench in ``bench/`` and print one table: figure, procmagic, baseline, ratio, target,
met or missed. ``make bench`` runs this.

Each bench runs in its own process, one after the other (they would disturb each other side by
side), with the arguments below, which keep the whole run to about ten minutes on two CPUs. Its
own report is saved to ``build/bench/<name>.txt``; the rows it records through
:mod:`bench.summary` make the final table, which is also written to ``build/bench/summary.md``
with the machine it ran on. A bench that fails or records no rows is named in the table, so a
missing figure is never mistaken for a met one.

    .venv/bin/python bench/run_all.py [--only core,queue] [--full]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "build" / "bench"

#: Arguments for the ten-minute run; ``--full`` drops them (each bench's own defaults).
QUICK_ARGS: dict[str, list[str]] = {
    "core": ["--rounds", "200", "--big-mb", "512"],
    "queue": ["--quick"],
    "kernel": ["--quick"],
    "dashboard": ["--n", "100", "--children", "100", "--rounds", "2"],
    "engines": ["--rounds", "5", "--stream-reps", "2"],  # it has no --quick
}
#: Order: the cheap, steady ones first; anything else found in bench/ runs after these.
ORDER = ["core", "queue", "kernel", "many", "dashboard"]
#: Benches whose SysV queues must not be mistaken for another program's: their own IPC namespace.
ISOLATED = {"queue"}
TIMEOUT = 900.0


def benches() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [b for b in ORDER if b in found] + [b for b in found if b not in ORDER]


def command(name: str, full: bool) -> list[str]:
    cmd = [sys.executable, str(HERE / f"bench_{name}.py")]
    if not full:
        cmd += QUICK_ARGS.get(name, ["--quick"])
    if name in ISOLATED and shutil.which("unshare") and subprocess.run(
            ["unshare", "--ipc", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "--ipc", *cmd]
    return cmd


def run_one(name: str, full: bool, rows_file: Path) -> tuple[int | None, float]:
    """Run one bench, its output both shown and saved; returns (exit code or None, seconds)."""
    env = dict(os.environ, PROCMAGIC_BENCH_SUMMARY=str(rows_file), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    print(f"\n==== bench_{name}.py: {' '.join(command(name, full)[1:])}", flush=True)
    with open(OUT / f"{name}.txt", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command(name, full), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=ROOT, text=True)
        assert proc.stdout is not None
        deadline = started + TIMEOUT
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            if time.monotonic() > deadline:
                proc.kill()
                break
        try:
            code: int | None = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    return code, time.monotonic() - started


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1e5:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def table(rows: list[dict], problems: list[str]) -> list[str]:
    head = ["figure", "procmagic", "baseline", "ratio", "target", "result"]
    body = []
    for r in rows:
        sign = "<=" if r["better"] == "lower" else ">="
        scale = f" {r['unit']}" if r.get("absolute") else "x"
        aim = f" (aim {r['aim']:g}{scale})" if r.get("aim") else ""
        body.append([r["figure"], fmt(r["procmagic"], r["unit"]),
                     f"{fmt(r['baseline'], r['unit'])} ({r['baseline_name']})",
                     f"{r['ratio']:.2f}x", f"{sign} {r['target']:g}{scale}{aim}",
                     "comparison" if r.get("comparison") else "met" if r["met"] else "MISSED"])
    for problem in problems:
        body.append([problem, "-", "-", "-", "-", "NOT MEASURED"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated bench names (core, queue, kernel, ...)")
    parser.add_argument("--full", action="store_true", help="each bench's full defaults (much longer)")
    args = parser.parse_args()
    names = benches()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"--only: no bench named {', '.join(unknown)}; the benches are {', '.join(names)}")
        names = [n for n in names if n in wanted]
    OUT.mkdir(parents=True, exist_ok=True)
    machine = (f"Python {platform.python_version()}, Linux {platform.release()}, {os.cpu_count()} CPUs, "
               f"load average {os.getloadavg()[0]:.1f} at the start, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rows: list[dict] = []
    problems: list[str] = []
    total = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows_file = Path(tmp) / f"{name}.jsonl"
            code, seconds = run_one(name, args.full, rows_file)
            got = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
            for row in got:
                row["figure"] = f"{name}: {row['figure']}"
            rows += got
            if code != 0:
                problems.append(f"bench_{name}.py {'timed out' if code is None else f'failed (exit {code})'} "
                                f"after {seconds:.0f} s: see build/bench/{name}.txt")
            elif not got:
                problems.append(f"bench_{name}.py recorded no summary figures (see build/bench/{name}.txt)")
    lines = table(rows, problems)
    report = [f"make bench, {machine}; {time.monotonic() - total:.0f} s in all", "", *lines]
    (OUT / "summary.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n" + "\n".join(report))
    print(f"\n(also in {OUT.relative_to(ROOT) / 'summary.md'})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
