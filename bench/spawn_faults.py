"""Where a spawn's cost goes: CPU time and page faults per spawn-to-reap, parent and child,
for a raw fork, procmagic and multiprocessing, then the parent's faults by phase.

Not a side-by-side figure for ``make bench`` (``bench_core.py`` has those): the diagnostic the
spawn-cost steps in docs/performance.md were measured with. The parent's figures come from
``getrusage(RUSAGE_SELF)``, the children's from ``RUSAGE_CHILDREN`` (reaped children only); the
phases from ``procmagic.core.fork.set_fault_hook``'s points around the fork.

    .venv/bin/python bench/spawn_faults.py [--spawns 200] [--ballast-mb 20]
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from procmagic.core import Process  # noqa: E402
from procmagic.core import fork as core_fork  # noqa: E402

# the same spawners bench_core.py times side by side
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import _noop, mp_fork, procmagic_process, raw_fork  # noqa: E402


def per_spawn(spawn, n: int) -> tuple[float, float, float, float]:
    """(parent ms, parent faults, child ms, child faults) per spawn over ``n`` spawns."""
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        spawn()
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = lambda a, b: (b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime) / n * 1e3  # noqa: E731
    return cpu(s0, s1), (s1.ru_minflt - s0.ru_minflt) / n, cpu(c0, c1), (c1.ru_minflt - c0.ru_minflt) / n


def phases(n: int) -> dict[str, tuple[float, float]]:
    """The parent's faults and CPU microseconds per phase of one procmagic spawn."""
    marks: list[tuple[str, int, float]] = []

    def mark(name: str) -> None:
        marks.append((name, resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.thread_time()))

    total: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    core_fork.set_fault_hook(mark)
    try:
        for i in range(n + 20):
            marks.clear()
            mark("begin")
            p = Process(_noop)
            mark("Process()")
            p.start()
            mark("start() returned")
            p.join()
            mark("join()")
            p.close()
            mark("close()")
            if i >= 20:  # warmed up
                for (_, fa, ta), (b, fb, tb) in zip(marks, marks[1:]):
                    total[b][0] += fb - fa
                    total[b][1] += (tb - ta) * 1e6
    finally:
        core_fork.set_fault_hook(None)
    return {name: (f / n, us / n) for name, (f, us) in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=200, help="spawns per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per spawner (medians shown)")
    parser.add_argument("--ballast-mb", type=int, default=20, help="extra resident memory of the parent, MB")
    args = parser.parse_args()
    ballast = [bytearray(1000) for _ in range(args.ballast_mb * 1000)]  # many small objects, like a session
    spawners = [("raw os.fork + _exit + waitpid", raw_fork), ("procmagic Process", procmagic_process),
                ("multiprocessing fork", mp_fork)]
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _ in spawners}
    for name, spawn in spawners:
        per_spawn(spawn, 20)  # warm up
    for _ in range(args.repeats):
        for name, spawn in spawners:
            results[name].append(per_spawn(spawn, args.spawns))
    print(f"per spawn-to-reap, medians of {args.repeats} x {args.spawns} (parent RSS "
          f"{int(open('/proc/self/statm').read().split()[1]) * 4096 / 1e6:.0f} MB)")
    print(f"  {'':32s} {'parent ms':>10s} {'faults':>7s} {'child ms':>9s} {'faults':>7s}")
    for name, rows in results.items():
        cols = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"  {name:32s} {cols[0]:10.3f} {cols[1]:7.0f} {cols[2]:9.3f} {cols[3]:7.0f}")
    print("\nprocmagic's parent by phase (faults, CPU us per spawn; the fork's points: blocked, forked, "
          "registered, unblocked)")
    for name, (faults, us) in phases(args.spawns).items():
        print(f"  up to {name:24s} {faults:6.1f} {us:8.1f}")
    del ballast


if __name__ == "__main__":
    main()
