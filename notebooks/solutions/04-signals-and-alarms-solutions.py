# %% [markdown]
# # Solutions: signals and alarms
#
# The answers to the exercises at the end of `04-signals-and-alarms`.

# %%
%load_ext procmagic

# %% [markdown]
# **1. SIGTERM with no handler** ends the child at once: the default action of SIGTERM is to
# terminate, so `print` never runs, and the status line says `killed by SIGTERM` (there is no
# exit code: a process killed by a signal did not exit).

# %% expect=["self-terminator .*killed by SIGTERM"]
%%spawn --name self-terminator
import os, signal
os.kill(os.getpid(), signal.SIGTERM)
print("is this printed?")

# %% [markdown]
# **2. SIGINT ignored:** yes, it carries on and exits 0. `SIG_IGN` tells the kernel to drop
# the signal before it reaches the process. SIGKILL and SIGSTOP are the two signals that cannot
# be ignored or handled, which is why a stop ladder ends with SIGKILL.

# %% expect=["still here after SIGINT", "stoic .*exited 0"]
%%spawn --name stoic
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
os.kill(os.getpid(), signal.SIGINT)
print("still here after SIGINT")
