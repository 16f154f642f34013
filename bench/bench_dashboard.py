"""Dashboard benchmark: is the kernel still responsive with the ``%procs`` dashboard open over
200 children? One kernel, one run, measured at the client (jupyter_client).

Phases, each ``--n`` execute round trips of a trivial cell (``1``: execute request -> reply and
idle), in this order:

A. no children (the kernel idle);
B. 200 sleeping children (``%%spawn --bg -n 200``), their panel live, no dashboard;
C. the same with the ``%procs`` dashboard live (it refreshes twice a second).

B and C alternate in ``--rounds`` blocks (the dashboard opened, then retired to a snapshot), so
the drift of a shared machine falls on both alike. Printed: p50 / p95 / mean per phase, the
ratio C against B, and what the hub did meanwhile (refreshes, state messages, and its CPU time
per second of wall clock).

    .venv/bin/python bench/bench_dashboard.py [--n 200] [--children 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import sys
import time
from typing import Any

from jupyter_client.manager import KernelManager
from summary import figure


class Client:
    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=dict(os.environ), cwd=os.getcwd())
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def roundtrip(self, code: str, timeout: float = 120) -> tuple[float, str]:
        """Seconds from the execute request to both its reply and its idle status; its stdout."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False)
        reply = idle = None
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while reply is None or idle is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{code!r} did not finish within {timeout} s")
            if reply is None:
                try:
                    msg = self.kc.get_shell_msg(timeout=0.001 if idle is None else 1)
                    if msg["parent_header"].get("msg_id") == msg_id:
                        reply = time.perf_counter()
                        if msg["content"].get("status") == "error":
                            raise RuntimeError(f"{code!r}: {msg['content'].get('evalue')}")
                except queue.Empty:
                    pass
            while idle is None:
                try:
                    msg = self.kc.get_iopub_msg(timeout=0.001 if reply is None else 1)
                except queue.Empty:
                    break
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    raise RuntimeError("\n".join(msg["content"]["traceback"]))
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = time.perf_counter()
        return max(reply, idle) - t0, "".join(out)

    def run(self, code: str, timeout: float = 120) -> str:
        return self.roundtrip(code, timeout)[1]

    def value(self, expr: str) -> Any:
        text = self.run(f"import json as _j\nprint('@@' + _j.dumps({expr}))")
        return json.loads([l for l in text.splitlines() if l.startswith("@@")][-1][2:])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def phase(client: Client, n: int) -> list[float]:
    times = []
    for _ in range(n):
        times.append(client.roundtrip("1")[0])
        time.sleep(0.005)
    return times


def stats(times: list[float]) -> dict[str, float]:
    s = sorted(times)
    return {"p50": statistics.median(s) * 1e3, "p95": s[int(0.95 * (len(s) - 1))] * 1e3,
            "mean": statistics.fmean(s) * 1e3}


HUB = "__import__('procmagic.widgets').widgets.current_hub()"
#: Retire the live dashboard (as a newer %procs would), on the hub's loop.
CLOSE_DASHBOARD = (f"_h = {HUB}\n"
                   "[_h.call(lambda v=v: (_h._drop(v), v.retire(_h))) for v in list(_h.views) if v.kind == 'dashboard']")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="round trips per phase (default 200)")
    parser.add_argument("--children", type=int, default=200, help="sleeping children (default 200)")
    parser.add_argument("--rounds", type=int, default=4, help="B and C alternate this many times (default 4)")
    args = parser.parse_args()
    print(f"bench_dashboard: Python {platform.python_version()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}, {args.children} children, {args.n} round trips per phase")
    c = Client()
    try:
        c.run("%load_ext procmagic")
        phase(c, 20)  # warm up
        results: dict[str, dict[str, float]] = {}
        hub: dict[str, dict[str, float]] = {}

        times: dict[str, list[float]] = {}
        totals: dict[str, dict[str, float]] = {}

        def measured(name: str, n: int) -> None:
            before = c.value(f"{HUB}.stats") if c.value(f"{HUB} is not None") else None
            t0 = time.monotonic()
            times.setdefault(name, []).extend(phase(c, n))
            wall = time.monotonic() - t0
            results[name] = stats(times[name])
            if before is not None:
                after = c.value(f"{HUB}.stats")
                t = totals.setdefault(name, {"wall": 0.0, "refreshes": 0, "messages": 0, "seconds": 0.0, "errors": 0})
                t["wall"] += wall
                for key in ("refreshes", "messages", "seconds", "errors"):
                    t[key] += after[key] - before[key]
                hub[name] = {"refreshes/s": t["refreshes"] / t["wall"], "messages/s": t["messages"] / t["wall"],
                             "hub cpu ms/s": t["seconds"] / t["wall"] * 1e3, "errors": t["errors"]}

        measured("A  idle, no children", args.n)
        c.run(f"%%spawn --bg -n {args.children} --name sleepers\nimport time\ntime.sleep(3600)", timeout=300)
        deadline = time.monotonic() + 120
        while c.value("len(__import__('procmagic').children())") < args.children:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args.children} children did not start within 120 s")
            time.sleep(0.2)
        time.sleep(1.0)
        # B and C alternate in blocks, so the machine's drift falls on both alike
        chunk = max(1, args.n // args.rounds)
        for r in range(args.rounds):
            measured("B  200 children, panel only", chunk)
            c.run("%procs")
            time.sleep(0.5)
            measured("C  200 children + dashboard", chunk)
            c.run(CLOSE_DASHBOARD)
            time.sleep(0.5)
        c.run("%kill -s SIGKILL sleepers\n%wait --timeout 60", timeout=120)
    finally:
        c.close()

    print(f"\n{'phase':34} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}   hub: refreshes/s  msgs/s  cpu ms/s")
    for name, r in results.items():
        h = hub.get(name)
        extra = f"   {h['refreshes/s']:8.1f} {h['messages/s']:7.1f} {h['hub cpu ms/s']:8.2f}" if h else ""
        print(f"{name:34} {r['p50']:8.2f} {r['p95']:8.2f} {r['mean']:8.2f}{extra}")
    b = results["B  200 children, panel only"]
    cc = results["C  200 children + dashboard"]
    figure("round trip p95 over 100s of children, with %procs / without", cc["p95"], b["p95"], "ms",
           target=1.2, better="lower", baseline_name="panel only")
    print(f"\nwith the dashboard / without: p50 {cc['p50'] / b['p50']:.2f}x, "
          f"p95 {cc['p95'] / b['p95']:.2f}x, mean {cc['mean'] / b['mean']:.2f}x")
    a = results["A  idle, no children"]
    print(f"200 children with their panel / no children: p50 {b['p50'] / a['p50']:.2f}x, p95 {b['p95'] / a['p95']:.2f}x")
    if any(h.get("errors") for h in hub.values()):
        print("the hub recorded refresh errors: see current_hub().errors in the kernel", file=sys.stderr)


if __name__ == "__main__":
    main()
