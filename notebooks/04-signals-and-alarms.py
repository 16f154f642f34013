# %% [markdown]
# # Signals, alarms, time-outs and zombies
#
# A signal is the operating system's way of poking a process: `SIGTERM` asks it to end,
# `SIGKILL` ends it without asking, `SIGUSR1` means whatever the program decides, `SIGALRM`
# is a timer going off. A process can install a *handler* for most signals; `SIGKILL` and
# `SIGSTOP` can never be caught.
#
# procmagic's `signal()`, `alarm()`, `kill()` and `wait()` follow `swoole_process`'s, in
# Python's idiom.

# %%
%load_ext procmagic
import asyncio, os, time, warnings
import psutil
from procmagic import Process, alarm, kill, signal, wait

# %% [markdown]
# Where signals meet a child's life, from the fork to the moment its parent reaps it:

# %%
from IPython.display import SVG
SVG(filename="../docs/diagrams/fork-to-reap.svg")   # drawn from docs/diagrams/fork-to-reap.dot

# %% [markdown]
# ## Handlers in a child
#
# The child below handles `SIGUSR1` (it counts) and `SIGTERM` (it cleans up and exits 0
# instead of dying). A signal sent *before* the handler is installed would still meet the
# default action, so the child tells the notebook over its pipe when it is ready, and the
# notebook waits for that before signalling.

# %% expect=["got SIGUSR1 #1", "got SIGUSR1 #2", "SIGTERM: cleaning up", "patient .*exited 0"]
%%spawn --bg --name patient --out patient
import time
from procmagic import signal
count = 0
def on_usr1(signum):
    global count
    count += 1
    print(f"got {signal.Signals(signum).name} #{count}", flush=True)
def on_term(signum):
    print("SIGTERM: cleaning up, exiting 0", flush=True)
    raise SystemExit(0)
signal(signal.SIGUSR1, on_usr1)
signal(signal.SIGTERM, on_term)
proc.write("ready")
while True:
    time.sleep(0.1)

# %% expect=["b'ready'"]
print(patient.read(timeout=5))             # wait until the handlers are in place
kill(patient.pid, signal.SIGUSR1)          # procmagic.kill, swoole's Process::kill
time.sleep(0.2)

# %%
%kill -s USR1 patient

# %%
%kill patient

# %%
%wait patient

# %% [markdown]
# `signal(sig, None)` restores the default, `signal.SIG_IGN` ignores a signal, and a
# second registration replaces the first. Some signals are refused, with the reason:

# %% expect=["cannot install a handler for SIGCHLD", "cannot install a handler for SIGINT", "cannot install a handler for SIGKILL"]
for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGKILL):
    try:
        signal(sig, print)
    except ValueError as err:
        print(err)

# %% [markdown]
# ## Alarms: interval timers and their ticks
#
# `alarm(usec)` starts a repeating interval timer, in microseconds like swoole's (it is
# `setitimer`): every `usec` the process gets `SIGALRM`; `alarm(0)` clears it. Install a
# handler first: at its default action the first tick would kill the process, so procmagic
# refuses an alarm without one.

# %% expect=["no handler for SIGALRM"]
try:
    alarm(100_000)
except ValueError as err:
    print(err)

# %% expect=["1[3-6] ticks in 1.55 s"]
%%spawn --bg --name metronome --out metronome
import time
from procmagic import signal, alarm
ticks = 0
def tick(signum):
    global ticks
    ticks += 1
signal(signal.SIGALRM, tick)
alarm(100_000)            # every 100 ms
time.sleep(1.55)
alarm(0)
print(f"{ticks} ticks in 1.55 s")

# %% [markdown]
# While it runs, the notebook can watch the ticks: procmagic counts them in shared memory
# (the same counters as the queues' traffic), with the timer's interval.

# %% expect=["after about 0.5 s: \\d+ ticks, interval 100000 us"]
time.sleep(0.5)
counters = metronome.counters
print(f"after about 0.5 s: {counters['alarm_ticks']} ticks, interval {counters['alarm_interval_us']} us")

# %%
%wait metronome

# %% [markdown]
# ## Time-outs
#
# `%%spawn --timeout S` sends SIGTERM after `S` seconds, then SIGKILL if the child is still
# alive after a grace period (`%config ProcMagics.term_grace`, 2 s by default). The status
# says it timed out. The second child ignores SIGTERM, so it takes the SIGKILL.

# %% expect=["killed by SIGTERM, timed out"]
%%spawn --timeout 0.5
import time
time.sleep(30)

# %% expect=["killed by SIGKILL, timed out"]
%%spawn --timeout 0.5
import time
from procmagic import signal
signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(30)

# %% [markdown]
# ## Interrupts: what the ■ button sends
#
# Interrupting the notebook while a foreground `%%spawn` runs forwards a signal to the child:
# SIGINT by default (a `KeyboardInterrupt` in the child), or the one `--signal-on-interrupt`
# names. SIGTERM suits a child that saves its work before it goes. Below, the child interrupts
# its own kernel (`os.kill(os.getppid(), SIGINT)` is what the button does) so that the notebook
# runs without you: the kernel forwards SIGTERM, the child's handler saves and exits 0, and the
# cell ends with the `KeyboardInterrupt` an interrupted cell shows.

# %% expect=["got SIGTERM: saving my work", "exited 0", "KeyboardInterrupt"] tags=["raises-exception"]
%%spawn --signal-on-interrupt TERM
import os, signal, time

def save_and_quit(signum, frame):
    print("got SIGTERM: saving my work, then exiting", flush=True)
    raise SystemExit(0)

signal.signal(signal.SIGTERM, save_and_quit)
os.kill(os.getppid(), signal.SIGINT)     # stands in for your click on the interrupt button
time.sleep(30)

# %% [markdown]
# ## `kill` and `wait` from Python
#
# `kill(pid, sig)` sends a signal and answers whether it was sent; signal 0 only probes.
# `wait()` reaps the next of *procmagic's* children to end and returns its `ExitStatus`.
# Unlike swoole's `wait()` (and `os.wait()`), it never reaps a child that belongs to someone
# else, such as `subprocess`'s or `multiprocessing`'s.

# %% expect=["alive\\? True", "sleeper-0.*killed by SIGTERM", "sleeper-1.*killed by SIGKILL", "sleeper-2.*killed by SIGHUP", "anything left\\? None"]
sleepers = [Process(lambda p: time.sleep(60), name=f"sleeper-{i}") for i in range(3)]
for s in sleepers:
    s.start()
print("alive?", kill(sleepers[0].pid, 0))
kill(sleepers[0].pid, signal.SIGTERM)
kill(sleepers[1].pid, signal.SIGKILL)
sleepers[2].kill(signal.SIGHUP)            # the same, from the Process
for _ in range(3):
    print(wait())
print("anything left?", wait(blocking=False))

# %% [markdown]
# ## What a zombie is, and why procmagic leaves none
#
# When a process ends, the kernel keeps a small record of it (its pid and exit status) until
# its parent collects it with `wait`. Until then it is a *zombie*: dead, but still in the
# process table. A Jupyter kernel never collects children it did not expect, so every child
# forked by hand stays a zombie until the kernel exits: 200 forks, 200 zombies.
#
# Here is one, made with a raw `os.fork()` (safe only because the child exits at once and
# touches nothing):

# %% expect=["is a zombie", "still there\\? False"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12+ warns about fork
    pid = os.fork()
if pid == 0:
    os._exit(0)
time.sleep(0.2)
print(f"pid {pid} is a {psutil.Process(pid).status()}")
print("collected:", os.waitpid(pid, 0))
print("still there?", psutil.pid_exists(pid))

# %% [markdown]
# procmagic opens a *pidfd* for each child (a file descriptor that becomes readable when the
# child ends) and the kernel's event loop watches it, so each child is reaped as soon as it
# ends and the kernel is idle, with no `SIGCHLD` handler and no `waitpid(-1)` that could steal
# other libraries' children. `await asyncio.sleep` below lets the loop run:

# %%
%%spawn --bg --name brief --out brief
pass

# %% expect=["still in the process table\\? False", "zombie children of this kernel: \\[\\]"]
await asyncio.sleep(0.3)
print(brief.exitstatus)
print("still in the process table?", psutil.pid_exists(brief.pid))
zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
print("zombie children of this kernel:", zombies)

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/04-signals-and-alarms-solutions.ipynb`.
#
# **1.** A child sends itself SIGTERM and installed no handler. What does its status line say?

# %%
# your prediction:

# %%
%%spawn --name self-terminator
import os, signal
os.kill(os.getpid(), signal.SIGTERM)
print("is this printed?")

# %% [markdown]
# **2.** The child ignores SIGINT, then gets one. Does it carry on?

# %%
# your prediction:

# %%
%%spawn --name stoic
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
os.kill(os.getpid(), signal.SIGINT)
print("still here after SIGINT")
