# %% [markdown]
# # Message queues
#
# A pipe joins two processes. A *message queue* is a mailbox that lives in the operating
# system: any number of processes can put messages in and take them out, each message has a
# positive *type*, and a reader can ask for one type only. `swoole_process` offers System V
# queues (`useQueue`, `push`, `pop`); procmagic does too, through the `sysv_ipc` package.
#
# Worth knowing about SysV queues before using them:
#
# - a message is at most `kernel.msgmax` bytes (8192 here) and a queue holds `kernel.msgmnb`
#   bytes (16 KiB); raising that needs privilege. A full queue makes `push` wait;
# - a queue has no file descriptor, so an event loop cannot watch it;
# - a queue outlives the process that made it. Swoole made them world-writable and let them
#   leak until the system ran out; procmagic makes them private to your user (`0o600`),
#   records every queue it creates and removes it when it is freed, when its owner exits,
#   or with `sweep_queues()` once its owner is dead.

# %%
%load_ext procmagic
import time
from procmagic import Process, queues, sweep_queues

# %% [markdown]
# ## Push, pop, and a look inside
#
# `use_queue()` with no key creates a private queue. `nowait=True` makes `pop` raise
# `QueueEmpty` (and `push` raise `QueueFull`) instead of waiting. `stat_queue()` is
# swoole's `statQueue`: what waits, the capacity, who sent and received last.

# %% expect=["QueueStat\\(.*messages=3", "\\[b'job 0', b'job 1', b'job 2'\\]", "QueueEmpty: no message"]
box = Process(lambda p: None)           # a Process that owns the queue handle; never started
box.use_queue(nowait=True)
for i in range(3):
    box.push(f"job {i}")
print(box.stat_queue())
print([box.pop() for _ in range(3)])
try:
    box.pop()
except Exception as err:
    print(type(err).__name__ + ":", err)

# %% expect=["pushed message 2", "QueueFull: queue \\d+ is full", "after free_queue\\(\\):\\s+\\[\\]"]
chunk = b"x" * 8192                      # the largest message allowed here
try:
    for n in range(1, 4):
        box.push(chunk)
        print(f"pushed message {n}")
except Exception as err:
    print(type(err).__name__ + ":", err)
print("queues this kernel made:", [q.id for q in queues() if q.mine])
box.free_queue()
print("after free_queue():     ", [q.id for q in queues() if q.mine])

# %% [markdown]
# ## Balance mode: producers and consumers
#
# In `mode="balance"` (the default) `pop()` takes the oldest message of any type, so
# whichever consumer is free takes the next job: that is how a queue shares work.
#
# `%%spawn --queue` gives all the children of a spawn one private queue, reachable in the
# body as `proc.push()` / `proc.pop()`, removed when the spawn ends (if it is empty). With `-n 4`, worker 0
# is the producer here and workers 1 to 3 are cooks. Each cook stops at the "closing time"
# note, so the producer pushes one per cook.

# %% expect=["producer: 12 orders", "cook 1 served", "cook 2 served", "cook 3 served", "kitchen/3 .*exited 0"]
%%spawn -n 4 --queue --name kitchen
import time
if proc.worker == 0:
    for order in range(12):
        proc.push(f"order {order}")
    for _ in range(3):
        proc.push("closing time")
    print("producer: 12 orders and 3 closing notes pushed")
else:
    served = []
    while (note := proc.pop().decode()) != "closing time":
        served.append(note.split()[1])
        time.sleep(0.05)                 # cooking takes a while
    print(f"cook {proc.worker} served orders {', '.join(served)}")

# %% [markdown]
# Each line is labelled with the worker that printed it (`[1]`, `[2]`, …). Which cook got
# which order depends on timing; together they served all twelve. The queue is gone:

# %% expect=["^\\[\\]$"]
[q.id for q in queues() if q.mine]

# %% [markdown]
# The notebook can be the producer too. `--out` gives it the workers' `Process` objects, and
# any of them reaches the spawn's queue; here three background workers wait for jobs that
# the next cell sends.

# %% expect=["worker 0: total \\d+", "worker 2: total \\d+", "crew/2 .*exited 0"]
%%spawn --bg -n 3 --queue --name crew --out crew
import time
done = 0
while (job := proc.pop()) != b"stop":
    done += int(job)
    time.sleep(0.02)
print(f"worker {proc.worker}: total {done}")

# %%
for n in range(1, 31):
    crew[0].push(str(n))
for _ in crew:
    crew[0].push("stop")
print("pushed the numbers 1..30 (they add up to 465) and one stop per worker")

# %%
%wait crew


# %% [markdown]
# ## Orient mode: addressed messages
#
# In `mode="orient"` every message is typed with its receiver's id and each process pops
# only its own (swoole's `MSGQUEUE_ORIENT`). In the parent, `p.push(data)` goes to `p`'s
# child and `p.pop()` takes what children sent to the parent; in a child, `proc.push()` goes
# to the parent and `proc.pop()` takes what was sent to `proc.id`. `to=` addresses any
# process explicitly.
#
# Two children share one queue here (`use_queue(q)` joins an existing queue). Each one only
# sees the numbers sent to it.

# %% expect=["b'a squared 2: 4'", "b'a squared 3: 9'", "b'b squared 10: 100'"]
def squarer(p):
    while (msg := p.pop()) != b"stop":
        n = int(msg)
        p.push(f"{p.name} squared {n}: {n * n}")

a = Process(squarer, name="a")
b = Process(squarer, name="b")
q = a.use_queue(mode="orient")
b.use_queue(q, mode="orient")
a.start(); b.start()
a.push("2"); a.push("3")
b.push("10")
a.push("stop"); b.push("stop")
for _ in range(3):
    print(a.pop())                     # everything addressed to the parent
print(a.join())
print(b.join())
a.free_queue()

# %% [markdown]
# ## Traffic counters
#
# Each child counts its pushes and pops (and bytes) in a small block of shared memory that
# the parent reads at any moment, without a system call on the hot path. These are the
# figures the `%procs` dashboard's queue part is built on:

# %% expect=["a \\{'pushes': 2, 'pops': 3", "b \\{'pushes': 1, 'pops': 2"]
for p in (a, b):
    c = p.counters
    print(p.name, {k: c[k] for k in ("pushes", "pops", "bytes_pushed", "bytes_popped")})

# %% [markdown]
# ## Cleaning up
#
# - A private `%%spawn --queue` is removed when the spawn ends, if it is empty then; one still
#   holding messages stays until `free_queue()` or the kernel's shutdown.
# - A queue you create with `use_queue()` lives until `free_queue()`, or until the kernel
#   exits (procmagic removes it then).
# - `queues()` lists the queues procmagic made for your user that still exist (`mine` marks
#   this kernel's);
#   `sweep_queues()` removes those whose owner died without cleaning up (a kernel killed
#   with SIGKILL, say). It recognises them by the records procmagic keeps, and never touches
#   anyone else's queue.

# %% expect=["queues this kernel still has: \\[\\]"]
print("queues this kernel still has:", [q for q in queues() if q.mine])
print("leftovers of dead owners swept:", sweep_queues())

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/03-message-queues-solutions.ipynb`.
#
# **1.** A queue gets `b"a"`, `b"b"`, `b"c"` pushed in that order. In which order do three `pop()`s
# return them?

# %%
# your prediction:

# %%
box = Process(lambda p: None)
box.use_queue(nowait=True)
for word in ["a", "b", "c"]:
    box.push(word)
print([box.pop() for _ in range(3)])
box.free_queue()

# %% [markdown]
# **2.** Three messages are pushed and one is popped. How many messages does `stat_queue()`
# report, and how many bytes?

# %%
# your prediction:

# %%
box = Process(lambda p: None)
box.use_queue(nowait=True)
for word in ["one", "two", "three"]:
    box.push(word)
box.pop()
stat = box.stat_queue()
print("messages:", stat.messages, "bytes:", stat.bytes)
box.free_queue()
