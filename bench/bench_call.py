"""procmagic.map / call against multiprocessing.Pool and ProcessPoolExecutor (both in the fork
context), on the same work, in one run.

Two figures, each as a ratio to the fork-context Pool (the aim: no slower):
  - per-item cost of mapping a small function over many small items, with 2 workers and the same
    chunk size for all three (Pool.map's own default; ProcessPoolExecutor's default of 1 would
    only measure its per-chunk overhead). The whole call is timed: forking the workers, mapping,
    and ending them (``with Pool(...)``, ``with ProcessPoolExecutor(...)``), as a notebook user
    runs one map in a cell.
  - transfer time of one 100 MB result (``bytes``, made in the worker), through
    ``procmagic.call``, ``Pool.apply`` and ``executor.submit().result()``, and of a 100 MB numpy
    array, which procmagic sends as an out-of-band pickle protocol 5 buffer.
The function is defined in this script's ``__main__``, as a notebook cell's would be. Rounds
interleave the contenders in a shuffled order; medians are reported.

    .venv/bin/python bench/bench_call.py [--quick] [--items N] [--rounds N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
from typing import Any, Callable

import procmagic
from summary import figure

MB = 1024 * 1024
WORKERS = 2


def add_one(x: int) -> int:
    return x + 1


def big_bytes(n: int = 100) -> bytes:
    return b"x" * (n * MB)


def big_array(n: int = 100) -> Any:
    import numpy as np

    return np.ones(n * MB // 8, dtype=np.float64)


def chunk_for(n: int) -> int:
    return max(1, math.ceil(n / (WORKERS * 4)))


def run_map(items: list[int]) -> dict[str, Callable[[], Any]]:
    ctx = multiprocessing.get_context("fork")
    chunk = chunk_for(len(items))

    def ours() -> Any:
        return procmagic.map(add_one, items, workers=WORKERS, chunksize=chunk)

    def pool() -> Any:
        with ctx.Pool(WORKERS) as p:
            return p.map(add_one, items, chunksize=chunk)

    def executor() -> Any:
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            return list(ex.map(add_one, items, chunksize=chunk))

    return {"procmagic.map": ours, "Pool.map": pool, "ProcessPoolExecutor.map": executor}


def run_big(make: Callable[[], Any]) -> dict[str, Callable[[], Any]]:
    ctx = multiprocessing.get_context("fork")

    def ours() -> Any:
        return procmagic.call(make)

    def pool() -> Any:
        with ctx.Pool(1) as p:
            return p.apply(make)

    def executor() -> Any:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            return ex.submit(make).result()

    return {"procmagic.call": ours, "Pool.apply": pool, "ProcessPoolExecutor.submit": executor}


def measure(contenders: dict[str, Callable[[], Any]], rounds: int, check: Callable[[Any], bool]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        order = list(contenders.items())
        random.shuffle(order)
        for name, fn in order:
            started = time.perf_counter()
            value = fn()
            times[name].append(time.perf_counter() - started)
            if not check(value):
                raise SystemExit(f"{name} returned a wrong value")
            del value
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(title: str, medians: dict[str, float], per: int, unit: str, scale: float) -> None:
    base = medians[next(n for n in medians if n.startswith("Pool"))]
    print(f"\n{title}")
    for name, t in medians.items():
        print(f"  {name:28s} {t * scale / per:10.2f} {unit}   ratio to Pool {t / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    items = args.items or 100_000  # fewer make the two forks dominate: a per-item figure needs many
    rounds = args.rounds or (3 if args.quick else 7)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {WORKERS} workers, {items} items, "
          f"chunksize {chunk_for(items)}, {rounds} rounds (medians)")

    data = list(range(items))
    expected = [x + 1 for x in data]
    small = measure(run_map(data), rounds, lambda v: v == expected)
    report("map of a small function: cost per item", small, items, "us/item", 1e6)

    big = measure(run_big(big_bytes), rounds, lambda v: len(v) == 100 * MB)
    report("one 100 MB bytes result", big, 1, "ms", 1e3)

    try:
        import numpy  # noqa: F401
    except ImportError:
        arr = None
    else:
        arr = measure(run_big(big_array), rounds, lambda v: v.nbytes == 100 * MB)
        report("one 100 MB numpy array result", arr, 1, "ms", 1e3)

    figure("map, small items: cost per item", small["procmagic.map"] / items * 1e6, small["Pool.map"] / items * 1e6,
           "us/item", target=1.0, better="lower", baseline_name="Pool.map (fork)")
    figure("map, small items vs ProcessPoolExecutor", small["procmagic.map"] / items * 1e6,
           small["ProcessPoolExecutor.map"] / items * 1e6, "us/item", target=1.0, better="lower",
           baseline_name="ProcessPoolExecutor.map (fork)")
    figure("100 MB bytes result", big["procmagic.call"] * 1e3, big["Pool.apply"] * 1e3, "ms", target=1.0,
           better="lower", baseline_name="Pool.apply (fork)")
    if arr is not None:
        figure("100 MB numpy result", arr["procmagic.call"] * 1e3, arr["Pool.apply"] * 1e3, "ms", target=1.0,
               better="lower", baseline_name="Pool.apply (fork)")


if __name__ == "__main__":
    main()
