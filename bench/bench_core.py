"""Core benchmark: spawn-to-reap and pipe ping-pong, against their raw baselines, in one run.

Spawn to reap, at a small resident size and with ~1 GB touched:
  - raw:       ``pid = os.fork()``; the child ``os._exit(0)``; ``os.waitpid(pid, 0)``
  - procmagic: ``Process(target).start(); join()`` (the default dgram pipe, the guard, the child's
               whole reset: process group, parent-death signal, signals, fresh stdio)
  - multiprocessing's fork context: ``ctx.Process(target=f).start(); join()``
The three run interleaved (a shuffled order each round), and each reports its median.

Pipe ping-pong: one message goes to a forked child and comes back, through ``Process.write`` and
``Process.read`` on both sides, against a raw socketpair of the same kind driven with plain
``send``/``recv`` on both sides. Batches alternate; each reports the median batch's time per round
trip.

    .venv/bin/python bench/bench_core.py [--quick] [--big-mb 1024] [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import random
import socket
import statistics
import sys
import time
from typing import Callable

from procmagic import Process

# -- spawn to reap -----------------------------------------------------------------------------


def _noop(*args: object) -> None:
    pass


def raw_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def procmagic_process() -> None:
    p = Process(_noop)
    p.start()
    p.join()
    p.close()


def procmagic_no_pipe() -> None:
    p = Process(_noop, pipe=None)
    p.start()
    p.join()


_mp = multiprocessing.get_context("fork")


def mp_fork() -> None:
    p = _mp.Process(target=_noop)
    p.start()
    p.join()
    p.close()


SPAWNERS: list[tuple[str, Callable[[], None]]] = [
    ("raw os.fork + os._exit + waitpid", raw_fork),
    ("procmagic Process(target).start(); join()", procmagic_process),
    ("procmagic, pipe=None", procmagic_no_pipe),
    ("multiprocessing fork context", mp_fork),
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def time_spawns(rounds: int) -> dict[str, float]:
    """Median seconds per spawn-to-reap of each spawner, run interleaved in shuffled order."""
    samples: dict[str, list[float]] = {name: [] for name, _ in SPAWNERS}
    order = list(SPAWNERS)
    for name, spawn in order:  # warm up: imports, first-use allocations
        spawn()
    gc.collect()
    for _ in range(rounds):
        random.shuffle(order)
        for name, spawn in order:
            t0 = time.perf_counter()
            spawn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}


# -- pipe ping-pong ----------------------------------------------------------------------------
KINDS = {"dgram": socket.SOCK_SEQPACKET, "stream": socket.SOCK_STREAM}


class RawPingPong:
    """A raw socketpair and a raw forked echo child, driven with plain send/recv."""

    def __init__(self, kind: str) -> None:
        self.parent, child = socket.socketpair(socket.AF_UNIX, KINDS[kind])
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                self.parent.close()
                while True:
                    data = child.recv(65536)
                    if not data:
                        break
                    child.sendall(data)
                code = 0
            finally:
                os._exit(code)
        child.close()

    def run(self, message: bytes, n: int) -> float:
        send, recv = self.parent.send, self.parent.recv
        t0 = time.perf_counter()
        for _ in range(n):
            send(message)
            recv(65536)
        return (time.perf_counter() - t0) / n

    def close(self) -> None:
        self.parent.close()
        os.waitpid(self.pid, 0)


def _echo(proc: Process) -> None:
    read, write = proc.read, proc.write
    while True:
        data = read(65536)
        if not data:
            return
        write(data)


class ProcmagicPingPong:
    """A procmagic child echoing through Process.read/write, driven with Process.write/read."""

    def __init__(self, kind: str) -> None:
        self.proc = Process(_echo, pipe=kind)
        self.proc.start()

    def run(self, message: bytes, n: int) -> float:
        write, read = self.proc.write, self.proc.read
        t0 = time.perf_counter()
        for _ in range(n):
            write(message)
            read(65536)
        return (time.perf_counter() - t0) / n

    def close(self) -> None:
        self.proc.close()
        self.proc.join()


def time_ping_pong(kind: str, message: bytes, batches: int, n: int) -> tuple[float, float]:
    """(raw, procmagic) median seconds per round trip, batches alternating."""
    raw, ours = RawPingPong(kind), ProcmagicPingPong(kind)
    try:
        raw.run(message, n // 10)
        ours.run(message, n // 10)
        raw_times, our_times = [], []
        for i in range(batches):
            pair = [(raw, raw_times), (ours, our_times)]
            if i % 2:
                pair.reverse()
            for runner, times in pair:
                times.append(runner.run(message, n))
    finally:
        ours.close()  # first: its child holds a copy of the raw pair's parent end
        raw.close()
    return statistics.median(raw_times), statistics.median(our_times)


# -- the report --------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a rough figure in seconds)")
    parser.add_argument("--big-mb", type=int, default=1024, help="resident size of the big case, MB (default 1024)")
    parser.add_argument("--rounds", type=int, default=None, help="spawn rounds at the small size")
    args = parser.parse_args()

    small_rounds = args.rounds or (60 if args.quick else 400)
    big_rounds = max(5, small_rounds // (12 if args.quick else 20))
    batches, per_batch = (5, 2000) if args.quick else (9, 10000)

    print(f"procmagic core benchmark: Python {platform.python_version()}, Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs{', --quick' if args.quick else ''}")
    print()

    small = time_spawns(small_rounds)
    small_rss = rss_mb()
    ballast = bytearray(args.big_mb << 20)
    ballast[:: os.sysconf("SC_PAGE_SIZE")] = b"\1" * len(range(0, len(ballast), os.sysconf("SC_PAGE_SIZE")))
    big_rss = rss_mb()
    big = time_spawns(big_rounds)
    del ballast
    gc.collect()

    raw = SPAWNERS[0][0]
    print(f"spawn to reap, median          small: {small_rss:5.0f} MB RSS, {small_rounds:3d} rounds"
          f"     big: {big_rss:5.0f} MB RSS, {big_rounds:3d} rounds")
    for name, _ in SPAWNERS:
        print(f"  {name:44s} {_ms(small[name])}  {small[name] / small[raw]:5.2f}x"
              f"     {_ms(big[name])}  {big[name] / big[raw]:5.2f}x")
    print()

    print(f"pipe ping-pong, median of {batches} batches x {per_batch} round trips")
    for kind in ("dgram", "stream"):
        for size in (64, 4096):
            message = b"m" * size
            raw_rt, our_rt = time_ping_pong(kind, message, batches, per_batch)
            label = f"{kind} ({'SOCK_SEQPACKET' if kind == 'dgram' else 'SOCK_STREAM'}), {size:4d} B"
            print(f"  {label:34s} raw socketpair {raw_rt * 1e6:6.1f} us   Process.write/read "
                  f"{our_rt * 1e6:6.1f} us   {our_rt / raw_rt:5.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
