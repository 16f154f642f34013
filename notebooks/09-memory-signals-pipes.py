# %% [markdown]
# # Five experiments: copy-on-write, orphans, merged signals, back-pressure, end of file
#
# Each section is a short experiment on something the operating system does to every forked
# process, procmagic's or not. Run them in order; the whole notebook takes a few seconds.

# %%
%load_ext procmagic
import os, signal, time, array, psutil

MiB = 2**20

# %% [markdown]
# ## 1. Copy-on-write, measured
#
# After `fork()` parent and child share every page of memory until one of them writes to it;
# then the kernel copies that page for the writer. psutil's `memory_full_info()` shows it from
# inside the child:
#
# - `uss` (*unique set size*): memory only this process holds, its private copies;
# - `pss` (*proportional set size*): its private memory plus its share of the shared pages
#   (a page shared by two processes counts half).
#
# The kernel holds the same three million numbers three ways. The child only *reads* each one.

# %%
floats = [float(i) for i in range(3_000_000)]   # 3 million float objects (24 bytes each) + pointers
packed = array.array("d", floats)               # 3 million raw doubles in one buffer
blob = packed.tobytes()                          # the same 24 MB as a bytes object
print(f"kernel: uss {psutil.Process().memory_full_info().uss / MiB:.0f} MiB")

# %% expect=["list of floats +: uss \\+ *\\d+\\.\\d MiB.*copied", "array\\('d'\\) +: uss \\+ *\\d\\.\\d MiB.*shared", "bytes +: uss \\+ *\\d\\.\\d MiB.*shared"]
%%spawn
me = psutil.Process()
for name, data, read in [("list of floats", floats, sum),
                         ("array('d')", packed, sum),
                         ("bytes", blob, lambda b: b.count(0))]:
    before = me.memory_full_info()
    read(data)
    after = me.memory_full_info()
    grew = (after.uss - before.uss) / MiB
    print(f"{name:15}: uss +{grew:5.1f} MiB, pss {before.pss / MiB:4.0f} -> {after.pss / MiB:4.0f} MiB"
          f"  ({'copied' if grew > 20 else 'shared'})")

# %% [markdown]
# Reading the list made the child copy most of it: each float object carries a reference
# count, and `sum` increments and decrements it as it takes each number, which writes to the
# page the object sits on. The array and the bytes are single objects whose numbers sit in a
# raw buffer that reading never writes: they stay shared. This is why a notebook that forks
# workers over big data keeps it in NumPy arrays, `array`, `bytes` or Arrow buffers, not in
# lists or dicts of Python objects (and why `gc.freeze()` before forking helps: it stops the
# garbage collector from writing to every tracked object in the child).
#
# ## 2. Orphans and re-parenting
#
# A process whose parent exits first is an *orphan*. Linux gives it a new parent: the nearest
# ancestor that asked to adopt orphans (a *subreaper*, `PR_SET_CHILD_SUBREAPER`), or else
# process 1. The new parent reaps it when it ends. Below, a child forks a grandchild and exits
# at once; the grandchild watches `getppid()` change and reports over a pipe to the kernel.

# %% expect=["grandchild: my parent was \\d+, now it is \\d+ \\(.+\\)"]
r, w = os.pipe()
child = os.fork()
if child == 0:                                   # the child
    try:
        if os.fork() == 0:                       # the grandchild
            try:
                first = os.getppid()
                deadline = time.monotonic() + 5
                while os.getppid() == first and time.monotonic() < deadline:
                    time.sleep(0.005)
                now = os.getppid()
                os.write(w, f"{os.getpid()} {first} {now}".encode())
            finally:
                os._exit(0)
    finally:
        os._exit(0)                               # the child exits right away
os.close(w)
os.waitpid(child, 0)                             # reap the child: the grandchild is an orphan
grandchild, first, now = map(int, os.read(r, 100).split())
os.close(r)
print(f"grandchild: my parent was {first}, now it is {now} ({psutil.Process(now).name()})")
if now == os.getpid():                           # the kernel itself adopted it: reap it
    os.waitpid(grandchild, 0)

# %% [markdown]
# The new parent is whoever is the nearest subreaper above the kernel (a container's init, a
# service manager, a terminal's session) or process 1. procmagic's children lead their own
# process groups and die with the kernel (`PR_SET_PDEATHSIG`), so their orphans do not outlive
# it silently; an orphan you create by hand, as here, is on its own.
#
# ## 3. Signals merge; real-time signals queue
#
# A standard signal is a bit in a mask: while it is *pending* (blocked, or not yet delivered),
# sending it again sets the same bit. Ten SIGUSR1 sent while it is blocked arrive as one. Real-
# time signals (`SIGRTMIN` …) are queued, one delivery per send. (procmagic blocks signals
# around its fork for this reason: a signal that arrives in that window is held, not lost.)
#
# We count with `sigtimedwait`, which takes pending signals straight from the kernel. A Python
# handler would blur the picture: Python's C-level handler only sets a flag, and the Python
# function runs once per flag, so even queued signals can reach Python merged.

# %% expect=["SIGUSR1 sent 10 times while blocked, pending 1 time", "SIGRTMIN sent 10 times while blocked, pending 10 times"]
%%spawn
import signal
for sig, name in [(signal.SIGUSR1, "SIGUSR1"), (signal.SIGRTMIN, "SIGRTMIN")]:
    signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    for _ in range(10):
        os.kill(os.getpid(), sig)
    pending = 0
    while signal.sigtimedwait({sig}, 0) is not None:   # take one pending signal, don't wait
        pending += 1
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    print(f"{name} sent 10 times while blocked, pending {pending} time{'s' * (pending != 1)}")

# %% [markdown]
# ## 4. Back-pressure: a pipe holds only so much
#
# A pipe is a buffer in the kernel, 64 KiB by default on Linux (`fcntl F_GETPIPE_SZ`). A
# writer that gets ahead of its reader fills it and then *blocks* until the reader makes room.
# With the write end non-blocking we can see the limit instead of waiting on it:

# %% expect=["the pipe took 65536 bytes, then: BlockingIOError", "F_GETPIPE_SZ says 65536"]
import fcntl
r, w = os.pipe()
os.set_blocking(w, False)
written = 0
try:
    while True:
        written += os.write(w, b"x" * 4096)
except BlockingIOError as full:
    print(f"the pipe took {written} bytes, then: {type(full).__name__}")
print("F_GETPIPE_SZ says", fcntl.fcntl(w, fcntl.F_GETPIPE_SZ))
os.close(r)
os.close(w)

# %% [markdown]
# This is what slows a fast child down to the speed of its reader, and what deadlocks a
# foreground child that writes megabytes to a pipe nobody reads (`02-pipes-and-redirect`
# reads a bulk writer from the notebook while it runs in the background).
#
# ## 5. End of file needs every write end closed
#
# `read()` returns `b""` (end of file) only when no process holds a write end any more. A
# grandchild that inherited the write end keeps the pipe open after the child has exited, and
# the reader waits for the grandchild too. The child below exits at once; its grandchild sleeps
# a second holding the inherited write end:

# %% expect=["child exited after \\d+\\.\\d+ s", "end of file after [1-9]\\.\\d+ s: when the grandchild exited"]
r, w = os.pipe()
started = time.monotonic()
child = os.fork()
if child == 0:
    try:
        if os.fork() == 0:                       # the grandchild keeps w open for a second
            try:
                time.sleep(1)
            finally:
                os._exit(0)
    finally:
        os._exit(0)
os.close(w)
os.waitpid(child, 0)
print(f"child exited after {time.monotonic() - started:.2f} s")
while os.read(r, 100):
    pass
print(f"end of file after {time.monotonic() - started:.2f} s: when the grandchild exited")
os.close(r)

# %% [markdown]
# procmagic meets this every time a child starts a daemon or a `cmd &` that keeps its stdout:
# after the child exits it reads on for `ProcMagics.drain_timeout` seconds, then stops and says
# that a descendant still holds the pipe.
#
# ## Exercises
#
# Predict, then run. Answers and reasons: `solutions/09-memory-signals-pipes-solutions.ipynb`.
#
# **1.** The child below *changes* one number in the middle of `packed` (the 24 MB `array`).
# How much private memory does it gain: nothing, a page, or the whole 24 MB?

# %%
# your prediction:

# %%
%%spawn
me = psutil.Process()
before = me.memory_full_info().uss
packed[1_500_000] = -1.0
print(f"uss +{(me.memory_full_info().uss - before) / 1024:.0f} KiB")

# %% [markdown]
# **2.** A pipe's size can be raised with `fcntl(fd, F_SETPIPE_SZ, n)`. Ask for 100,000 bytes:
# what does `F_GETPIPE_SZ` answer?

# %%
# your prediction:

# %%
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 100_000)
print(fcntl.fcntl(w, fcntl.F_GETPIPE_SZ))
os.close(r)
os.close(w)

# %% [markdown]
# **3.** In experiment 3, what if the handler is installed but the signal is *not* blocked: ten
# SIGUSR1 sent one after the other from the same process. How many times does the handler run?

# %%
# your prediction:

# %%
%%spawn
import signal
handled = []
signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
for _ in range(10):
    os.kill(os.getpid(), signal.SIGUSR1)
print("handled", len(handled), "times")
