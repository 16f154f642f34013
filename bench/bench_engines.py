"""Engines benchmark: ``%%spawn --engines all`` against ipyparallel's own ``%%px``, on the same local
cluster (a controller and two engines over TCP on 127.0.0.1), from one real notebook kernel.

- Round trip of an empty body: from the execute request to the cell's reply and idle, as the
  client sees it. ``%%spawn --engines`` forks a child on every engine and waits for each one's exit
  status; ``%%px --block`` runs the body in the engines themselves. Interleaved rounds, medians. A
  local ``%%spawn`` of the same body and a bare ``apply`` on both engines are timed beside them
  for context: a remote spawn costs about an ipyparallel round trip plus a local spawn's whole
  life on the engine, which the second figure compares.
- 20 MB of output streamed to the client: the body prints 10 MB on each of the two engines (100-byte
  lines written in 1 MB blocks); timed until the cell is idle with all 20 MB received by the
  client, reported as MB/s.

    .venv/bin/python bench/bench_engines.py [--rounds 15] [--mb 20] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import time

from jupyter_client.manager import KernelManager

from summary import figure


class Kernel:
    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 300) -> tuple[float, int, str]:
        """Seconds from request to reply and idle, characters of output received (stream text, and
        the text/plain of display data, which is how %%px shows engines' output), and that text
        when it is short (errors)."""
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        received = 0
        short: list[str] = []
        idle = False
        reply = None
        deadline = time.monotonic() + timeout
        while not (idle and reply is not None):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
            if not idle:
                try:
                    msg = self.kc.get_iopub_msg(timeout=1)
                except queue.Empty:
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    received += len(msg["content"]["text"])
                    if received < 4000:
                        short.append(msg["content"]["text"])
                elif msg["msg_type"] == "display_data":  # %%px shows each engine's output as display data
                    received += len(msg["content"].get("data", {}).get("text/plain", ""))
                elif msg["msg_type"] == "error":
                    short.append("\n".join(msg["content"]["traceback"]))
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            else:
                reply = self.kc.get_shell_msg(timeout=timeout)
        elapsed = time.perf_counter() - start
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code[:80]!r}\n{''.join(short)[-2000:]}")
        return elapsed, received, "".join(short)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--stream-reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="9 rounds and one 20 MB stream each (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.stream_reps = min(args.rounds, 9), 1

    import ipyparallel as ipp

    profile_dir = tempfile.mkdtemp(prefix="procmagic-bench-ipp-")
    cluster = ipp.Cluster(n=2, profile_dir=profile_dir, controller_ip="127.0.0.1", log_level=40)
    cluster.start_cluster_sync()
    k = None
    try:
        client = cluster.connect_client_sync()
        client.wait_for_engines(2, timeout=120)
        client.close()
        url = glob.glob(os.path.join(cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-client.json"))[0]
        k = Kernel()
        k.run("%load_ext procmagic\n%config ProcMagics.output_cap = 200_000_000\n")
        k.run(f"import ipyparallel as ipp\nrc = ipp.Client({url!r})\nrc.wait_for_engines(2, timeout=60)\n"
              "rc[:].activate()\n")
        cells = {
            "%%spawn --engines all": "%%spawn --engines all --view rc --name bench\npass\n",
            "%%px": "%%px --block\npass\n",
            "local %%spawn (context)": "%%spawn --name local\npass\n",
            "apply, no fork (context)": "rc[:].apply_sync(lambda: None)\n",
        }
        for code in cells.values():  # warm up: procmagic loads on the engines on first use
            k.run(code)
            k.run(code)
        times: dict[str, list[float]] = {name: [] for name in cells}
        for r in range(args.rounds):
            order = list(cells) if r % 2 == 0 else list(reversed(cells))
            for name in order:
                times[name].append(k.run(cells[name])[0])
        per_engine = args.mb * 1_000_000 // 2
        blocks = max(1, per_engine // 1_000_000)
        body = (f"import sys\n_b = ('x' * 99 + '\\n') * 10000\nfor _i in range({blocks}):\n"
                "    sys.stdout.write(_b)\nsys.stdout.flush()\n")
        streams = {
            "%%spawn --engines all": f"%%spawn --engines all --view rc --name stream\n{body}",
            "%%px": f"%%px --block\n{body}",
        }
        rates: dict[str, list[float]] = {name: [] for name in streams}
        got: dict[str, int] = {}
        for r in range(args.stream_reps):
            order = list(streams) if r % 2 == 0 else list(reversed(streams))
            for name in order:
                elapsed, received, _ = k.run(streams[name])
                got[name] = received
                rates[name].append(received / 1e6 / elapsed)
    finally:
        if k is not None:
            k.close()
        cluster.stop_cluster_sync()
        shutil.rmtree(profile_dir, ignore_errors=True)

    print(f"# engines bench: Python {platform.python_version()}, {os.cpu_count()} CPUs, 2 engines on 127.0.0.1")
    ours, px, local, _ = (statistics.median(times[n]) for n in cells)
    print(f"empty body round trip (median of {args.rounds}):")
    for name in cells:
        print(f"  {name:<24} {statistics.median(times[name]) * 1e3:8.1f} ms   (p90 {sorted(times[name])[int(0.9 * (len(times[name]) - 1))] * 1e3:.1f} ms)")
    ratio = figure("empty body round trip, 2 engines", ours * 1e3, px * 1e3, "ms", target=1.2, better="lower",
                   baseline_name="%%px")
    print(f"  ratio %%spawn --engines / %%px: {ratio:.2f}x (aim: at most 1.2x)")
    # Where the time goes: a remote spawn is an ipyparallel round trip plus a whole local spawn
    # on the engine (fork, the child's body, its exit reaped, its status after the output).
    parts = figure("empty body round trip, 2 engines, vs %%px plus a local %%spawn", ours * 1e3, (px + local) * 1e3,
                   "ms", target=1.2, better="lower", baseline_name="%%px + local %%spawn")
    print(f"  ratio %%spawn --engines / (%%px + local %%spawn): {parts:.2f}x")
    ours_rate, px_rate = (statistics.median(rates[n]) for n in streams)
    print(f"{args.mb} MB of output to the client (median of {args.stream_reps}):")
    for name in streams:
        print(f"  {name:<24} {statistics.median(rates[name]):8.1f} MB/s   ({got[name] / 1e6:.1f} MB of stream text received)")
    ratio = figure(f"{args.mb} MB output from 2 engines to the client", ours_rate, px_rate, "MB/s", target=1.0,
                   better="higher", baseline_name="%%px")
    print(f"  ratio %%spawn --engines / %%px: {ratio:.2f}x (aim: at least 1.0x)")


if __name__ == "__main__":
    sys.exit(main())
