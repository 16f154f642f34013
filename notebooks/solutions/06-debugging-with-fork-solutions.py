# %% [markdown]
# # Solutions: debugging with fork
#
# The answers to the exercises at the end of `06-debugging-with-fork`.

# %%
%load_ext procmagic

# %% [markdown]
# **1. A child deletes `prices` and crashes:** the notebook still has `prices`. The child
# deleted a name in its own copy of the namespace and then died with exit code 1; neither
# reaches the kernel. This is what makes a fork a safe place for experiments that may break
# things.

# %%
prices = [10.0, 11.0]

# %% expect=["RuntimeError: the child broke everything", "wrecker .*exited 1"] tags=["raises-exception"]
%%spawn --name wrecker
del prices
raise RuntimeError("the child broke everything")

# %% expect=["\\[10.0, 11.0\\]"]
print(prices)

# %% [markdown]
# **2. `os.abort()`** raises SIGABRT in the process, whose default action is to terminate (and
# dump core where core dumps are enabled): the status line says `killed by SIGABRT`. C
# libraries call `abort()` on a failed assertion or a corrupted heap, so this status in a
# child usually points at native code.

# %% expect=["aborter .*killed by SIGABRT"]
%%spawn --name aborter
import os
os.abort()
