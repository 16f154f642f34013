# %% [markdown]
# # Solutions: five experiments
#
# The answers to the exercises at the end of `09-memory-signals-pipes`, each with the reason and
# a cell that checks it.

# %%
%load_ext procmagic
import os, signal, array, fcntl, psutil

packed = array.array("d", range(3_000_000))

# %% [markdown]
# **1. Changing one number of a 24 MB array** copies one page (4 KiB on x86-64 and most ARM
# systems), not the array: copy-on-write works page by page. The measurement shows a few KiB
# (psutil's own bookkeeping in the child adds a little), far below a MiB.

# %% expect=["one page or so, not the array: True"]
%%spawn
me = psutil.Process()
before = me.memory_full_info().uss
packed[1_500_000] = -1.0
grew = me.memory_full_info().uss - before
print("one page or so, not the array:", grew < 2**20)

# %% [markdown]
# **2. `F_SETPIPE_SZ` with 100,000 bytes** gives 131,072: the kernel rounds a pipe's size up to
# a power-of-two number of pages (here 32 pages of 4 KiB). An unprivileged process may go up to
# `/proc/sys/fs/pipe-max-size` (1 MiB by default).

# %% expect=["131072"]
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 100_000)
print(fcntl.fcntl(w, fcntl.F_GETPIPE_SZ))
os.close(r)
os.close(w)

# %% [markdown]
# **3. Ten unblocked SIGUSR1 sent to itself** run the handler ten times. Merging happens only
# while a signal is *pending*: here each one is delivered when `kill` returns, and Python runs
# the handler before the next line of the loop, so there is never a second one waiting. Signals
# sent from elsewhere while the handler is busy (or the process is not running) can merge.

# %% expect=["handled 10 times"]
%%spawn
import signal
handled = []
signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
for _ in range(10):
    os.kill(os.getpid(), signal.SIGUSR1)
print("handled", len(handled), "times")
