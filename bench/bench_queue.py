"""Queue throughput: procmagic push/pop (counters on) against raw sysv_ipc, multiprocessing.Queue
and os.pipe, with 64 B and 4 KiB messages, in one run, printed as ratios to raw sysv_ipc.

procmagic's rows run on the default path (the C accelerator, procmagic.core._queue_fast, where
it is built); the rows marked "pure Python" run the same calls on the pure-Python fallback
(``queue_hot.use_accelerator(False)``, what ``PROCMAGIC_PURE_QUEUE=1`` selects), in the same run.

A forked producer sends N messages as fast as it can; the parent receives them. Each variant runs
``REPEATS`` times, interleaved with the others, and reports its median run. Producer and consumer
share one CPU (``--cpus both`` lets the scheduler place them): with 4 KiB messages the default
queue holds only four, and where the scheduler puts the two sides decides the CPU a message
costs more than the code does (measured on 2 shared CPUs: 2.2 to 4.9 us a message for the same
variant from run to run when unpinned, within 3% on one CPU). A second table times one process
sending and receiving in turn, best of ``REPEATS``: the per-call cost of each layer alone.

    unshare --ipc .venv/bin/python bench/bench_queue.py [--quick] [--cpus one|both]
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import struct
import sys
import time
from typing import Any

import sysv_ipc

from procmagic import Process
from procmagic.core import queue as pm_queue
from procmagic.core import queue_hot
from summary import figure

SIZES = (64, 4096)
COUNTS = {64: 200_000, 4096: 40_000}
REPEATS = 5


def _go(fd: int) -> None:
    os.read(fd, 1)


class Variant:
    name = ""

    def setup(self) -> None: ...
    def produce(self, msg: bytes, n: int) -> None: ...  # in the child
    def consume(self, size: int, n: int) -> None: ...  # in the parent
    def teardown(self) -> None: ...


class RawSysv(Variant):
    name = "raw sysv_ipc"

    def setup(self) -> None:
        self.mq = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600,
                                        max_message_size=pm_queue.msgmax())

    def produce(self, msg: bytes, n: int) -> None:
        send = self.mq.send
        for _ in range(n):
            send(msg)

    def consume(self, size: int, n: int) -> None:
        receive = self.mq.receive
        for _ in range(n):
            receive()

    def teardown(self) -> None:
        self.mq.remove()


class ProcmagicProcess(Variant):
    """What a user writes: ``proc.push()`` in the child, ``proc.pop()`` in the parent."""

    name = "procmagic Process.push/pop"
    mode = "balance"
    accelerated = True  # the default path; False: the pure-Python fallback

    def setup(self) -> None:
        self.q: Any = None

    def bind(self, proc: Process) -> None:
        self.proc = proc
        self.q = proc.use_queue(mode=self.mode)

    def produce(self, msg: bytes, n: int) -> None:
        push = self.proc.push
        for _ in range(n):
            push(msg)

    def consume(self, size: int, n: int) -> None:
        pop = self.proc.pop
        for _ in range(n):
            pop()

    def teardown(self) -> None:
        self.q.free()


class ProcmagicQueue(ProcmagicProcess):
    """The Queue handle that use_queue() returns, called directly."""

    name = "procmagic Queue.push/pop"

    def produce(self, msg: bytes, n: int) -> None:
        push = self.proc.queue.push
        for _ in range(n):
            push(msg)

    def consume(self, size: int, n: int) -> None:
        pop = self.q.pop
        for _ in range(n):
            pop()


class ProcmagicOrient(ProcmagicQueue):
    name = "procmagic Queue, orient"
    mode = "orient"


def pure(cls: type[ProcmagicProcess]) -> ProcmagicProcess:
    """The same variant on the pure-Python path."""
    variant = cls()
    variant.name = f"{cls.name}, pure Python"
    variant.accelerated = False
    return variant


class MpQueue(Variant):
    name = "multiprocessing.Queue"

    def setup(self) -> None:
        self.q = multiprocessing.get_context("fork").Queue()

    def produce(self, msg: bytes, n: int) -> None:
        put = self.q.put
        for _ in range(n):
            put(msg)
        self.q.close()
        self.q.join_thread()  # the child ends in os._exit: flush the feeder thread first

    def consume(self, size: int, n: int) -> None:
        get = self.q.get
        for _ in range(n):
            get()

    def teardown(self) -> None:
        self.q.close()
        self.q.join_thread()


class Pipe(Variant):
    name = "os.pipe (fixed-size frames)"

    def setup(self) -> None:
        self.r, self.w = os.pipe()

    def produce(self, msg: bytes, n: int) -> None:
        write, w = os.write, self.w
        for _ in range(n):
            write(w, msg)

    def consume(self, size: int, n: int) -> None:
        read, r = os.read, self.r
        for _ in range(n):
            got = read(r, size)
            while len(got) < size:
                got += read(r, size - len(got))

    def teardown(self) -> None:
        os.close(self.r)
        os.close(self.w)


def run_once(variant: Variant, size: int, n: int) -> tuple[float, float, float]:
    """(wall seconds for the parent to receive n messages from a forked producer, the
    producer's CPU seconds, the consumer's CPU seconds)."""
    variant.setup()
    go_r, go_w = os.pipe()
    cpu_r, cpu_w = os.pipe()
    msg = os.urandom(size)

    def producer(proc: Process) -> None:
        _go(go_r)
        c0 = time.process_time()
        variant.produce(msg, n)
        os.write(cpu_w, struct.pack("d", time.process_time() - c0))

    proc = Process(producer, pipe=None)
    if isinstance(variant, ProcmagicProcess):
        # The handle is built on the path chosen here, and the child inherits it at fork.
        queue_hot.use_accelerator(variant.accelerated and queue_hot.accelerator_available())
        variant.bind(proc)
    try:
        proc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        os.write(go_w, b"g")
        variant.consume(size, n)
        elapsed, consumer_cpu = time.perf_counter() - t0, time.process_time() - c0
        status = proc.join(timeout=60)
        if not status.ok:
            raise RuntimeError(f"{variant.name} producer failed: {status}")
        (producer_cpu,) = struct.unpack("d", os.read(cpu_r, 8))
        if isinstance(variant, ProcmagicProcess):
            counts = proc.counters
            assert counts["pushes"] == n and counts["bytes_pushed"] == n * size, counts
        return elapsed, producer_cpu, consumer_cpu
    finally:
        if proc.exitstatus is None and proc.pid is not None:
            proc.stop(grace=1.0)
        for fd in (go_r, go_w, cpu_r, cpu_w):
            os.close(fd)
        variant.teardown()
        queue_hot.use_accelerator(DEFAULT_ACCELERATED)


def one_process(variant_name: str, size: int, n: int) -> float:
    """CPU seconds for n send+receive pairs in this process (no scheduling: per-call cost only)."""
    msg = os.urandom(size)
    if variant_name == "raw sysv_ipc":
        mq = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600, max_message_size=pm_queue.msgmax())
        send, receive = mq.send, mq.receive
        try:
            t0 = time.process_time()
            for _ in range(n):
                send(msg)
                receive()
            return time.process_time() - t0
        finally:
            mq.remove()
    queue_hot.use_accelerator(DEFAULT_ACCELERATED and not variant_name.endswith(", pure Python"))
    proc = Process(lambda p: None, pipe=None)
    q = proc.use_queue()
    try:
        if variant_name.startswith("procmagic Queue.push/pop"):
            push, pop = q.push, q.pop
        else:
            push, pop = proc.push, proc.pop
        t0 = time.process_time()
        for _ in range(n):
            push(msg)
            pop()
        return time.process_time() - t0
    finally:
        q.free()
        queue_hot.use_accelerator(DEFAULT_ACCELERATED)


#: What this process runs by default (PROCMAGIC_PURE_QUEUE=1, or no extension built: pure Python).
DEFAULT_ACCELERATED = queue_hot.accelerated()


def main() -> None:
    quick = "--quick" in sys.argv
    both = "--cpus" in sys.argv and sys.argv[sys.argv.index("--cpus") + 1:][:1] == ["both"]
    if not both:  # the children inherit it
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    repeats = 3 if quick else REPEATS
    counts = {s: c // (10 if quick else 1) for s, c in COUNTS.items()}
    variants: list[Variant] = [RawSysv(), ProcmagicProcess(), ProcmagicQueue(), ProcmagicOrient()]
    if DEFAULT_ACCELERATED:  # else the rows above are the pure path already
        variants += [pure(ProcmagicProcess), pure(ProcmagicQueue), pure(ProcmagicOrient)]
    variants += [MpQueue(), Pipe()]
    path = ("the C accelerator (procmagic.core._queue_fast)" if DEFAULT_ACCELERATED else
            "pure Python (" + ("PROCMAGIC_PURE_QUEUE is set" if queue_hot.accelerator_available()
                               else "the C accelerator is not built") + ")")
    print(f"procmagic queue bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, kernel.msgmax "
          f"{pm_queue.msgmax()}, load average {os.getloadavg()[0]:.1f}, {repeats} runs of each, "
          + ("producer and consumer where the scheduler puts them" if both else "producer and consumer on one CPU"))
    print(f"procmagic's default queue path here: {path}")
    print("\nproducer child -> parent, median run. wall: messages/s received; cpu: CPU per message of producer and")
    print("consumer, and the rate the busier side allows (steady even when other programs share the CPUs)")
    print(f"  {'size':>6}  {'variant':<41} {'wall':>12} {'ratio':>6}   {'cpu us/msg':>13} {'cpu-bound':>11} {'ratio':>6}")
    for size in SIZES:
        n = counts[size]
        walls: dict[str, list[float]] = {v.name: [] for v in variants}
        cpus: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
        for _ in range(repeats):
            for v in variants:
                t, pc, cc = run_once(v, size, n)
                walls[v.name].append(t)
                cpus[v.name].append((pc, cc))
        wall = {name: statistics.median(times) for name, times in walls.items()}
        # The run whose busier side is the median one (its producer and consumer figures together).
        cpu = {name: sorted(runs, key=max)[(len(runs) - 1) // 2] for name, runs in cpus.items()}
        raw_wall = n / wall["raw sysv_ipc"]
        raw_cpu = n / max(cpu["raw sysv_ipc"])
        for v in variants:
            rate, (pc, cc) = n / wall[v.name], cpu[v.name]
            bound = n / max(pc, cc)
            print(f"  {size:>5}B  {v.name:<41} {rate:>10,.0f}/s {rate / raw_wall:5.2f}x   "
                  f"{pc / n * 1e6:5.2f} / {cc / n * 1e6:5.2f} {bound:>9,.0f}/s {bound / raw_cpu:5.2f}x")
            if v.name.startswith("procmagic"):
                fallback = isinstance(v, ProcmagicProcess) and not v.accelerated
                figure(f"{v.name} {size} B, child -> parent (cpu-bound rate)", bound, raw_cpu, "msg/s",
                       target=0.95, better="higher", baseline_name="raw sysv_ipc",
                       note="the pure-Python fallback, for comparison: the target is the default path's" if fallback
                       else "", comparison=fallback)
    print("\none process, send then receive (pairs per CPU second, best run, ratio to raw sysv_ipc)")
    for size in SIZES:
        n = counts[size] // 2
        names = ["raw sysv_ipc", "procmagic Queue.push/pop", "procmagic Process.push/pop"]
        if DEFAULT_ACCELERATED:
            names += ["procmagic Queue.push/pop, pure Python", "procmagic Process.push/pop, pure Python"]
        best: dict[str, float] = {}
        for _ in range(repeats):
            for name in names:
                t = one_process(name, size, n)
                best[name] = min(best.get(name, t), t)
        raw = n / best["raw sysv_ipc"]
        for name in names:
            rate = n / best[name]
            print(f"  {size:>5}B  {name:<41} {rate:>10,.0f}/s {rate / raw:5.2f}x")


if __name__ == "__main__":
    main()
