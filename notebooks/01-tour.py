# %% [markdown]
# # A tour of procmagic
#
# procmagic forks the Jupyter kernel you are talking to and runs a cell in the copy. It is
# Swoole's `swoole_process` brought to notebooks: the child gets a pipe and, if you want, a
# message queue to talk to the notebook; you can signal it, set alarms in it and get a real
# exit status back; and a guard refuses to fork when forking would be dangerous.
#
# This tour takes about ten seconds to run top to bottom. Each section shows one idea; the
# other notebooks in this folder go deeper.

# %%
%load_ext procmagic

# %% [markdown]
# ## A fork is a snapshot of the kernel
#
# `fork()` makes a copy of the whole kernel process: its memory, your variables, the modules
# you imported, open files. The copy (the *child*) runs the body of a `%%spawn` cell; the
# original (the kernel, the *parent*) waits for it, or not (see `--bg` below). Memory is
# copied lazily (copy-on-write), so forking takes a millisecond or two even when the kernel
# holds gigabytes.
#
# Because it is a copy, nothing the child does changes the notebook.

# %%
import os
scores = {"alice": 3, "bob": 5}
print("the kernel is pid", os.getpid())

# %% expect=["in the child: \\{'alice': 3, 'bob': 5, 'carol': 7\\}", "spawn-1 \\(id 1, pid \\d+\\) exited 0"]
%%spawn
print("the child is pid", os.getpid(), "and its parent is", os.getppid())
scores["carol"] = 7          # changes the child's copy only
print("in the child:", scores)

# %% [markdown]
# The child saw `os` and `scores` without importing or defining anything: it *is* the kernel
# as it was when the cell ran. Above the output, procmagic shows a panel for the spawn (in
# JupyterLab a live widget: pid, state, CPU, memory, and buttons to interrupt, terminate or
# kill the child). The last line, `[procmagic] spawn-1 (id 1, pid …) exited 0 after …`, is
# the child's exit status, shown when it ended. In the notebook `scores` is untouched:

# %% expect=["\\{'alice': 3, 'bob': 5\\}"]
scores

# %% [markdown]
# ## Where output goes, and `--redirect`
#
# A forked child's output is a classic trap in Jupyter: ipykernel drops what a child sends
# on the kernel's sockets, and text written at the file-descriptor level lands in whichever
# cell happens to be running. procmagic carries everything the child prints over sockets of
# its own, and the kernel publishes it *in the cell that spawned the child*:

# %%
from IPython.display import SVG
SVG(filename="../docs/diagrams/output-path.svg")   # drawn from docs/diagrams/output-path.dot

# %% [markdown]
# Without options, Python's `print` and `sys.stderr` travel on procmagic's channel and
# C-level writes to fds 1 and 2 on a socket of their own. With `--redirect` the child's
# fds 0, 1 and 2 *are* its pipe to the notebook (as `swoole_process` does with
# `redirect_stdin_stdout`): `print`, `printf` in C code, `os.system` and every subprocess
# arrive in order, and the notebook can feed the child's stdin.

# %% expect=["print\\(\\) from Python", "a line on stderr", "a subprocess writes to the same pipe", "Linux"]
%%spawn --redirect
import subprocess, sys
print("print() from Python", flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
subprocess.run(["echo", "a subprocess writes to the same pipe"])
exit_code = os.system("uname -s")

# %% [markdown]
# ## Exit statuses: how a child ended
#
# Every child ends in exactly one of two ways: it *exits* with a code (0 for success), or it
# is *killed by a signal*. procmagic reports which, with the wall time, CPU time and peak
# memory (from `wait4`). The body's `sys.exit(n)` is the exit code; an uncaught exception
# shows its traceback in the cell and exits 1 (see `06-debugging-with-fork`). `--out VAR`
# hands you the child's `Process` object in the notebook.

# %% expect=["exited 3"]
%%spawn --out quitter
import sys
print("giving up with code 3")
sys.exit(3)

# %% expect=["ExitStatus\\(name='spawn-3'.*exited 3"]
quitter.exitstatus

# %% expect=["doomed .*killed by SIGKILL"]
%%spawn --name doomed
import signal
os.kill(os.getpid(), signal.SIGKILL)   # nothing runs after this, not even a finally:

# %% [markdown]
# ## Background children: `--bg`, `%procs`, `%wait`
#
# With `--bg` the cell returns at once and the child keeps running. Its output still lands
# in *its own* cell, even while other cells run: procmagic remembers which cell spawned it
# (the cell's parent header) and publishes everything under it. `%procs` lists the children,
# `%kill` signals them and `%wait` waits for them and shows how they ended.
#
# A notebook that runs top to bottom, like this one, should `%wait` for its background
# children so that their output is complete before the notebook ends.

# %% expect=["counting 1/5(.|\\n)*counting 5/5", "counter \\(id \\d+, pid \\d+\\) exited 0"]
%%spawn --bg --name counter
import time
for i in range(1, 6):
    print(f"counting {i}/5", flush=True)
    time.sleep(0.4)

# %%
print("this cell runs while the child counts in the cell above")

# %%
%procs

# %% expect=["counter .* exited 0"]
%wait counter

# %% [markdown]
# ## The guard: why procmagic sometimes refuses to fork
#
# `fork()` copies only the thread that calls it. If another thread holds a lock at that
# moment (the import lock, a logging handler's lock, `malloc`'s lock inside some C library),
# the child gets the lock *locked*, with no thread left to release it, and hangs the first
# time it needs it. That is why Python 3.12+ warns about forking a process with threads.
#
# A kernel always has threads, but ipykernel's own (IOPub, heartbeat, control, output
# capture, …) never run in the child and hold nothing it needs. procmagic's guard counts
# every live thread, allows the kernel's, and refuses when anything else is alive.
# `%forkcheck` shows what it sees:

# %% expect=["fork verdict: ok"]
%forkcheck

# %% [markdown]
# Now start a thread of our own, the kind a library might start behind your back:

# %%
import threading
stop = threading.Event()
watcher = threading.Thread(target=stop.wait, name="my-watcher")
watcher.start()

# %% expect=["fork verdict: refused", "'my-watcher'.*NOT ALLOWED"]
%forkcheck

# %% [markdown]
# The verdict is now *refused*, and `%%spawn` raises `ForkRefused` naming the thread. In
# your own notebook you would simply see that as the cell's error; here we run the magic
# through `run_cell_magic` and catch the refusal, so that the tour goes on when you run
# all cells.

# %% expect=["refusing to fork: 1 thread besides the main thread is alive", "'my-watcher'"]
import procmagic
try:
    get_ipython().run_cell_magic("spawn", "", "print('never printed')")
except procmagic.ForkRefused as refusal:
    print(refusal)

# %% [markdown]
# The fix is the one the message gives: stop the thread (or pass `--force` and accept the
# risk; `06-debugging-with-fork` shows a child deadlocking that way).

# %%
stop.set()
watcher.join()

# %% expect=["forking is safe again", "exited 0"]
%%spawn
print("the thread is gone: forking is safe again")

# %% [markdown]
# ## Where next
#
# - `02-pipes-and-redirect`: stream and dgram pipes, `write`/`read`, feeding stdin, `exec`.
# - `03-message-queues`: SysV queues, balance and orient modes, producers and consumers.
# - `04-signals-and-alarms`: handlers, interval timers, time-outs, `kill`/`wait`, zombies.
# - `05-worker-pools`: `%%spawn -n N`, work queues, respawn and shutdown.
# - `06-debugging-with-fork`: experiments on a copy of your state, crashes, deadlocks.
# - `08-fork-by-hand`: the same system calls made by hand, with the fd table before and after.
# - `09-memory-signals-pipes`: copy-on-write measured, orphans, merged signals, back-pressure.
#
# The documentation (`make docs`, then `build/site/index.html`) has the full reference.

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/01-tour-solutions.ipynb`.
#
# **1.** A child empties `scores`. What does it print, and what is `scores` in the notebook after?

# %%
# your prediction:

# %%
%%spawn
scores.clear()
print("in the child:", scores)

# %%
print("in the notebook:", scores)

# %% [markdown]
# **2.** A child divides by zero. How does the cell show it, and what exit status does the last line
# report?

# %%
# your prediction:

# %% tags=["raises-exception"]
%%spawn --name divider
print(1 / 0)
