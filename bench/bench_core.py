"""Core benchmark: spawn-to-reap and pipe ping-pong, against their raw baselines, in one run.

Spawn to reap, at a small resident size and with ~1 GB touched:
  - raw:       ``pid = os.fork()``; the child ``os._exit(0)``; ``os.waitpid(pid, 0)``
  - procmagic: ``Process(target).start(); join()`` (the default dgram pipe, the guard, the child's
               whole reset: process group, parent-death signal, signals, fresh stdio)
  - multiprocessing's fork context: ``ctx.Process(target=f).start(); join()``
They run interleaved (a shuffled order each round); each reports its median wall time and its
median CPU time (the parent's and the reaped child's together). On a machine shared with other
work the wall times swing with the scheduler; the CPU times, and their ratios, much less.

Pipe ping-pong: one message goes to a forked child and comes back, through ``Process.write`` and
``Process.read`` on both sides, against two raw socketpairs of the same kind:
  - raw:   plain ``send``/``recv`` on both sides (what a socketpair costs with no guarantees);
  - floor: the system calls procmagic's guarantees need and nothing else, in plain Python. The
           parent waits with ``poll`` on the socket *and* the child's pidfd (a read must end when
           the child dies even if a descendant still holds the child's end, so a bare blocking
           ``recv`` is not allowed), then receives; on a dgram pipe both sides first peek at the
           next message's length (``MSG_PEEK | MSG_TRUNC``), so a message larger than the read's
           ``size`` stays in the pipe whole instead of being cut.
Batches rotate, each with freshly forked pairs whose two processes share one CPU (``--no-pin``:
wherever the scheduler puts them); each reports the median batch's wall time and CPU time (both
processes, from /proc/PID/schedstat) per round trip.

    .venv/bin/python bench/bench_core.py [--quick] [--only spawn|pipe] [--big-mb 1024] [--rounds N]
                                         [--batches N] [--per-batch N] [--no-pin]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import random
import resource
import select
import socket
import statistics
import sys
import time
from typing import Callable

from procmagic import Process
from summary import figure

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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_spawns(rounds: int) -> dict[str, tuple[float, float]]:
    """(wall, cpu) medians in seconds per spawn-to-reap of each spawner, run interleaved in a
    shuffled order. cpu is the parent's and the reaped child's CPU time together: unlike the wall
    time, it hardly moves when other programs compete for the CPUs."""
    walls: dict[str, list[float]] = {name: [] for name, _ in SPAWNERS}
    cpus: dict[str, list[float]] = {name: [] for name, _ in SPAWNERS}
    order = list(SPAWNERS)
    for name, spawn in order:  # warm up: imports, first-use allocations
        spawn()
    gc.collect()
    for _ in range(rounds):
        random.shuffle(order)
        for name, spawn in order:
            c0, p0 = _children_cpu(), time.process_time()
            t0 = time.perf_counter()
            spawn()
            t1 = time.perf_counter()
            cpus[name].append(time.process_time() - p0 + _children_cpu() - c0)
            walls[name].append(t1 - t0)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name, _ in SPAWNERS}


# -- pipe ping-pong ----------------------------------------------------------------------------
KINDS = {"dgram": socket.SOCK_SEQPACKET, "stream": socket.SOCK_STREAM}


def _cpu_ns(pid: int) -> int:
    """Nanoseconds ``pid`` has spent on a CPU (/proc/PID/schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


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

    def run(self, message: bytes, n: int) -> tuple[float, float]:
        send, recv = self.parent.send, self.parent.recv
        c0, p0 = _cpu_ns(self.pid), time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            send(message)
            recv(65536)
        t1 = time.perf_counter()
        cpu = time.process_time() - p0 + (_cpu_ns(self.pid) - c0) / 1e9
        return (t1 - t0) / n, cpu / n

    def close(self) -> None:
        self.parent.close()
        os.waitpid(self.pid, 0)


_PEEK_TRUNC = int(socket.MSG_PEEK | socket.MSG_TRUNC)


class FloorPingPong:
    """The floor: only the system calls procmagic's read guarantees need (see the module's doc),
    with nothing around them: poll on [socket, pidfd], a length peek on dgram pipes, recv."""

    def __init__(self, kind: str) -> None:
        self.parent, child = socket.socketpair(socket.AF_UNIX, KINDS[kind])
        self.peek = kind == "dgram"
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                self.parent.close()
                recv, recv_into, sendall = child.recv, child.recv_into, child.sendall
                length = bytearray(1)
                while True:
                    if self.peek and recv_into(length, 1, _PEEK_TRUNC) > 65536:
                        break
                    data = recv(65536)
                    if not data:
                        break
                    sendall(data)
                code = 0
            finally:
                os._exit(code)
        child.close()
        self.pidfd = os.pidfd_open(self.pid)
        self.poller = select.poll()
        self.poller.register(self.parent.fileno(), select.POLLIN)
        self.poller.register(self.pidfd, select.POLLIN)

    def run(self, message: bytes, n: int) -> tuple[float, float]:
        send, recv, recv_into, poll = self.parent.send, self.parent.recv, self.parent.recv_into, self.poller.poll
        length = bytearray(1)
        c0, p0 = _cpu_ns(self.pid), time.process_time()
        t0 = time.perf_counter()
        if self.peek:
            for _ in range(n):
                send(message)
                poll()
                recv_into(length, 1, _PEEK_TRUNC)
                recv(65536)
        else:
            for _ in range(n):
                send(message)
                poll()
                recv(65536)
        t1 = time.perf_counter()
        cpu = time.process_time() - p0 + (_cpu_ns(self.pid) - c0) / 1e9
        return (t1 - t0) / n, cpu / n

    def close(self) -> None:
        self.parent.close()
        os.waitpid(self.pid, 0)
        os.close(self.pidfd)


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

    def run(self, message: bytes, n: int) -> tuple[float, float]:
        write, read = self.proc.write, self.proc.read
        pid = self.proc.pid
        assert pid is not None
        c0, p0 = _cpu_ns(pid), time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            write(message)
            read(65536)
        t1 = time.perf_counter()
        cpu = time.process_time() - p0 + (_cpu_ns(pid) - c0) / 1e9
        return (t1 - t0) / n, cpu / n

    def close(self) -> None:
        self.proc.close()
        self.proc.join()


PingPong = RawPingPong | FloorPingPong | ProcmagicPingPong


def time_ping_pong(kind: str, message: bytes, batches: int, n: int, pin: bool = True) -> dict[str, tuple[float, float]]:
    """{"raw": (wall, cpu), "floor": (wall, cpu), "procmagic": (wall, cpu)}: median seconds per
    round trip over batches whose order rotates; cpu counts both processes.

    Every batch forks fresh pairs, and with ``pin`` puts each pair's two processes on one CPU
    (the batches take the CPUs in turn): where the scheduler places a ping-pong (one CPU or two,
    beside which other work) sticks to the pair and moved its CPU time by 2-3x on this shared
    machine, so pairs kept for a whole case, unpinned, gave medians off by that much. On one CPU
    a round trip is two context switches and the system calls, the same for all three."""
    makers: list[tuple[str, Callable[[str], PingPong]]] = [
        ("raw", RawPingPong), ("floor", FloorPingPong), ("procmagic", ProcmagicPingPong)]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in makers}
    allowed = sorted(os.sched_getaffinity(0))
    try:
        for i in range(batches):
            if pin:
                os.sched_setaffinity(0, {allowed[i % len(allowed)]})  # the children inherit it
            for name, make in makers[i % 3:] + makers[:i % 3]:
                runner = make(kind)
                try:
                    runner.run(message, max(1, n // 10))  # warm up: first-use allocations, caches
                    samples[name].append(runner.run(message, n))
                finally:
                    runner.close()
    finally:
        os.sched_setaffinity(0, allowed)
    return {name: (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
            for name, rows in samples.items()}


# -- the report --------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.3f} ms"


def report_spawns(args: argparse.Namespace) -> None:
    small_rounds = args.rounds or (60 if args.quick else 400)
    big_rounds = max(5, small_rounds // (12 if args.quick else 20))
    small = time_spawns(small_rounds)
    small_rss = rss_mb()
    ballast = bytearray(args.big_mb << 20)
    ballast[:: os.sysconf("SC_PAGE_SIZE")] = b"\1" * len(range(0, len(ballast), os.sysconf("SC_PAGE_SIZE")))
    big_rss = rss_mb()
    big = time_spawns(big_rounds)
    del ballast
    gc.collect()

    raw = SPAWNERS[0][0]
    print("spawn to reap (medians; cpu = parent + child, the figure that load disturbs least)")
    print(f"{'':46s}small: {small_rss:5.0f} MB RSS, {small_rounds} rounds      big: {big_rss:5.0f} MB RSS, {big_rounds} rounds")
    print(f"{'':46s}{'wall':>14s} {'cpu':>16s}      {'wall':>14s} {'cpu':>16s}")
    for name, _ in SPAWNERS:
        cells = []
        for table in (small, big):
            (wall, cpu), (raw_wall, raw_cpu) = table[name], table[raw]
            cells.append(f"{_ms(wall)} {wall / raw_wall:4.2f}x {_ms(cpu)} {cpu / raw_cpu:4.2f}x")
        print(f"  {name:44s}{cells[0]}      {cells[1]}")
    print()
    ours, mp = SPAWNERS[1][0], SPAWNERS[3][0]
    for size, table, rss in (("small", small, small_rss), ("big", big, big_rss)):
        for kind, index in (("wall", 0), ("cpu", 1)):
            figure(f"Process start+join at {rss:.0f} MB RSS ({kind})", table[ours][index] * 1e3,
                   table[raw][index] * 1e3, "ms", target=1.1, better="lower", baseline_name="raw os.fork", aim=1.05)
        figure(f"Process start+join at {rss:.0f} MB RSS (wall) vs multiprocessing", table[ours][0] * 1e3,
               table[mp][0] * 1e3, "ms", target=1.0, better="lower", baseline_name="multiprocessing fork")


def report_ping_pong(args: argparse.Namespace) -> None:
    batches = args.batches or (5 if args.quick else 9)
    per_batch = args.per_batch or (2000 if args.quick else 10000)
    where = "each pair on one CPU" if not args.no_pin else "unpinned"
    print(f"pipe ping-pong, one message there and back (medians of {batches} batches x {per_batch} round trips, "
          f"{where}; us per round trip, cpu = both processes)")
    print(f"{'':34s}{'raw socketpair':>19s} {'floor':>19s} {'Process.write/read':>19s}   {'/ raw':>11s}   {'/ floor':>11s}")
    print(f"{'':34s}" + f"{'wall':>9s} {'cpu':>9s} " * 3 + f"  {'wall':>5s} {'cpu':>5s}   {'wall':>5s} {'cpu':>5s}")
    for kind in ("dgram", "stream"):
        for size in (64, 4096):
            figures = time_ping_pong(kind, b"m" * size, batches, per_batch, pin=not args.no_pin)
            (raw_wall, raw_cpu), (floor_wall, floor_cpu) = figures["raw"], figures["floor"]
            our_wall, our_cpu = figures["procmagic"]
            label = f"{kind} ({'SOCK_SEQPACKET' if kind == 'dgram' else 'SOCK_STREAM'}), {size} B"
            print(f"  {label:32s}" + "".join(f"{w * 1e6:9.1f} {c * 1e6:9.1f} " for w, c in
                                              (figures["raw"], figures["floor"], figures["procmagic"]))
                  + f"  {our_wall / raw_wall:5.2f} {our_cpu / raw_cpu:5.2f}"
                  + f"   {our_wall / floor_wall:5.2f} {our_cpu / floor_cpu:5.2f}")
            figure(f"pipe ping-pong {kind} {size} B (cpu)", our_cpu * 1e6, raw_cpu * 1e6, "us",
                   target=1.1, better="lower", baseline_name="raw socketpair")
            figure(f"pipe ping-pong {kind} {size} B (cpu) vs floor", our_cpu * 1e6, floor_cpu * 1e6, "us",
                   target=1.1, better="lower",
                   baseline_name=f"floor: poll [socket, pidfd]{' + length peek' if kind == 'dgram' else ''} + recv",
                   note="the floor is a raw socketpair doing only the system calls procmagic's read guarantees need")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a rough figure in seconds)")
    parser.add_argument("--only", choices=("spawn", "pipe"), default=None,
                        help="run only the spawn-to-reap part or only the pipe ping-pong")
    parser.add_argument("--big-mb", type=int, default=1024, help="resident size of the big case, MB (default 1024)")
    parser.add_argument("--rounds", type=int, default=None, help="spawn rounds at the small size")
    parser.add_argument("--batches", type=int, default=None, help="ping-pong batches per case (default 9, --quick 5)")
    parser.add_argument("--per-batch", type=int, default=None,
                        help="round trips per ping-pong batch (default 10000, --quick 2000)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the scheduler place each ping-pong pair (default: both on one CPU, CPUs in turn)")
    args = parser.parse_args()
    for name in ("rounds", "batches", "per_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive count, not {value}")

    print(f"procmagic core benchmark: Python {platform.python_version()}, Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs{', --quick' if args.quick else ''}")
    print()
    if args.only in (None, "spawn"):
        report_spawns(args)
    if args.only in (None, "pipe"):
        report_ping_pong(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
