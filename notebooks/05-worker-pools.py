# %% [markdown]
# # Worker pools
#
# Forking is the cheapest way to run the same code many times in parallel on Linux: each
# worker starts with everything the notebook has, and nothing has to be pickled to get
# there. This notebook covers fan-out with `%%spawn -n N`, a shared work queue, and the
# pools (`Pool`, `Manager`) that keep workers alive (respawn) and stop them (shutdown).

# %%
%load_ext procmagic
import os, time
from procmagic import signal
from procmagic import Manager, Pool

# %% [markdown]
# ## `%%spawn -n N`: one body, N workers
#
# Every worker runs the same body; `proc.worker` is its index (0 … N-1), so each can take its
# share of the data. Output lines are labelled with the worker. Each worker sends its result
# back on its pipe, and `--out` gives the notebook the list of workers to collect from:
# a fan-out, then a fan-in. The data (`numbers`) is not sent anywhere: every worker already
# has it, because it is a copy of the kernel.

# %%
numbers = list(range(1, 2_000_001))
N = 4

# %% expect=["\\[3\\] 500000 numbers", "summer/3 .*exited 0"]
%%spawn -n 4 --name summer --out summers
share = numbers[proc.worker::N]
total = sum(x * x for x in share)
proc.write(str(total))
print(f"{len(share)} numbers, sum of squares {total}")

# %% expect=["from the workers: 2666668666667000000", "checked in the kernel:\\s+2666668666667000000"]
parts = [int(w.read(timeout=5)) for w in summers]
print("sum of squares from the workers:", sum(parts))
print("checked in the kernel:          ", sum(x * x for x in numbers))

# %% [markdown]
# Each worker's status line says "peak rss" of well over 100 MB. That is not four copies of
# the kernel: RSS counts every page a process can touch *now*, shared pages included, and all
# of them are shared with the kernel right after the fork. What a worker really costs is its
# private memory (`uss`), the pages it copied. Here that is more than you might think: slicing
# and summing a list of two million Python ints touches their reference counts, which copies
# the pages they sit on. `09-memory-signals-pipes` measures it (lists against arrays).

# %% [markdown]
# ## A work queue
#
# Splitting by index is fine when every item costs the same. When they do not, let the
# workers *take* work from a shared queue (`--queue`, balance mode): a free worker takes the
# next job, so a slow job does not hold up a whole share. The notebook pushes jobs of uneven
# size and one "stop" per worker.

# %% expect=["worker 0 did jobs", "worker 2 did jobs"]
%%spawn --bg -n 3 --queue --name crew --out crew
import time
done = []
while (job := proc.pop()) != b"stop":
    seconds = int(job) / 100
    time.sleep(seconds)                  # a job of uneven size
    done.append(job.decode())
print(f"worker {proc.worker} did jobs {' '.join(done)}")

# %%
for size in [30, 2, 2, 2, 25, 2, 2, 2, 2, 20, 2, 2]:
    crew[0].push(str(size))
for _ in crew:
    crew[0].push("stop")

# %%
%wait crew

# %% [markdown]
# ## `Pool`: workers that are kept running
#
# `%%spawn -n N` runs a body N times and is done. A *pool* (Swoole's `Process\Pool`) keeps
# N workers alive and sends them messages: each worker runs `on_message(pool, data)` for
# every message it receives, and `pool.send(worker_id, data)` addresses one worker (over a
# SysV queue in orient mode, with `ipc="queue"`). The notebook supervises the pool with
# `pool.wait(timeout)`, a loop that sleeps on the workers' pidfds (procmagic starts no
# thread), and stops it with `shutdown()`.
#
# Pool workers are plain `Process` children, not `%%spawn` children: in a kernel, what they
# print would land wherever the kernel's own output capture puts it. So we run each pool
# *inside* a `%%spawn` cell: the spawned child is the pool's parent, the workers inherit its
# output, and everything lands in this cell. The notebook stays free while the pool runs,
# and the pool cannot outlive the kernel.

# %% expect=["worker 1: 4 squared is 16", "workers=3/3"]
%%spawn --name squares
def on_message(pool, data):
    n = int(data)
    print(f"worker {pool.worker_id}: {n} squared is {n * n}", flush=True)

pool = Pool(3, ipc="queue", on_message=on_message, name="squares")
pool.start(block=False)                      # block=True would supervise until shutdown
for n in range(6):
    pool.send(n % 3, str(n))                 # worker n % 3 gets n
pool.wait(timeout=0.5)                       # supervise for half a second
print(pool)
for worker_id, status in sorted(pool.shutdown(timeout=2).items()):
    print(worker_id, status)

# %% [markdown]
# ## Respawn, with a back-off
#
# When a worker ends, the pool forks a new one in its place. Swoole does that at once, so a
# worker that crashes as it starts becomes a fork storm: thousands of forks a second.
# procmagic waits first, and doubles the wait each time the same worker fails again
# (`backoff`, up to `max_backoff`); a worker that lived a while starts again from the
# shortest wait. Below, worker 1 crashes as soon as it starts; watch the gaps grow.

# %% expect=["worker 1 exited 3(.|\\n)*worker 1 exited 3(.|\\n)*worker 1 exited 3", "after shutdown"]
%%spawn --name flaky
started = time.monotonic()

def work(pool, worker_id):
    if worker_id == 1:
        time.sleep(0.05)
        os._exit(3)                          # a crash
    while True:
        time.sleep(0.1)

def on_worker_exit(pool, worker_id, status):
    print(f"{time.monotonic() - started:5.2f} s  worker {worker_id} {status.how}")

pool = Pool(2, work, on_worker_exit=on_worker_exit, backoff=0.1, max_backoff=1.0, name="flaky")
pool.start(block=False)
pool.wait(timeout=2)
final = pool.shutdown(timeout=1)
print("after shutdown:", {wid: st.how for wid, st in final.items()})

# %% [markdown]
# ## `Manager`: different functions, one pool
#
# Swoole's `Process\Manager` runs a *different* function in each worker: `add(func)` one,
# `add_batch(n, func)` n of them; each runs as `func(pool, worker_id)`. With
# `respawn=False` a worker that returns is not replaced, and `wait()` returns True once they
# all have.

# %% expect=["worker 0: fetching", "worker 2: indexing", "all done: True"]
%%spawn --name manager
def fetch(pool, worker_id):
    print(f"worker {worker_id}: fetching", flush=True)

def index(pool, worker_id):
    print(f"worker {worker_id}: indexing", flush=True)

manager = Manager(respawn=False)
manager.add(fetch)
manager.add_batch(2, index)
manager.start(block=False)
print("all done:", manager.wait(timeout=10))
print([(wid, st.how) for wid, st in manager.pool.statuses])

# %% [markdown]
# ## Shutdown: asking, then insisting
#
# To stop workers, ask first (SIGTERM, which a worker may handle to finish cleanly), and
# insist after a grace period (SIGKILL, which it cannot refuse). `Process.stop(grace)` does
# exactly that; `%kill` and `%wait` do it by hand for `%%spawn` children, and a kernel
# shutdown or restart does it for every child left. Below, worker 1 ignores SIGTERM and is
# killed after the grace period.

# %%
%%spawn --bg -n 3 --name service --out service
import time
from procmagic import signal
if proc.worker == 1:
    signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn worker
proc.write("up")
while True:
    time.sleep(0.1)

# %% expect=["service/1.*killed by SIGKILL", "all stopped in"]
for w in service:
    w.read(timeout=5)                        # every worker is up and set
started = time.monotonic()
for w in service:
    print(w.stop(grace=1.0))
print(f"all stopped in {time.monotonic() - started:.1f} s")

# %%
%wait service

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/05-worker-pools-solutions.ipynb`.
#
# **1.** Each of 4 workers appends its index to the list `seen`, defined in the notebook as `[]`.
# What is `seen` in the notebook afterwards?

# %%
# your prediction:

# %%
seen = []

# %%
%%spawn -n 4 --name appender
seen.append(proc.worker)
print("worker", proc.worker, "sees", seen)

# %%
print("in the notebook:", seen)

# %% [markdown]
# **2.** Four workers each sum every fourth number of `range(1000)`, starting at their index, and
# write the partial sum back. What do the four partial sums add up to?

# %%
# your prediction:

# %%
%%spawn -n 4 --name quarter --out quarters
sent = proc.write(str(sum(range(proc.worker, 1000, 4))))

# %%
print(sum(int(w.read(timeout=5)) for w in quarters))
