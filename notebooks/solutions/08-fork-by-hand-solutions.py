# %% [markdown]
# # Solutions: forking by hand
#
# The answers to the exercises at the end of `08-fork-by-hand`, each with the reason and a
# cell that checks it.

# %%
import os, select

# %% [markdown]
# **1. You close fd 0 and then call `os.pipe()`.** The kernel gives the lowest free numbers:
# the read end gets 0 (just freed), the write end the lowest number free after that. This is
# the rule that makes the classic `close(1); dup(fd)` idiom work, and why `dup2` (which names
# the target explicitly) is safer.

# %% expect=["read end: 0"]
saved = os.dup(0)
os.close(0)
r2, w2 = os.pipe()
print("read end:", r2)
os.dup2(saved, 0)
os.close(saved)
os.close(w2)

# %% [markdown]
# **2. `os._exit(300)`.** An exit status carries only 8 bits: the parent sees `300 % 256 = 44`.
# Exit codes above 255 are a classic source of "it exited 44?" puzzles; keep them in 0-125
# (126 and 127 are used by shells for "not executable" and "not found", 128+N for "killed by
# signal N").

# %% expect=["exit code: 44"]
pid = os.fork()
if pid == 0:
    os._exit(300)
print("exit code:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

# %% [markdown]
# **3. The parent keeps its write end.** After the line, `select` reports nothing within 2 s: no
# data, and no end of file either, because a write end (the parent's own) is still open. A
# blocking `read` would wait forever. As soon as the parent closes `w`, the pipe becomes
# readable at once and `read` returns `b""`. End of file means "every write end, in every
# process, is closed", which is also why a grandchild that inherited the write end delays it
# (procmagic's `drain_timeout`).

# %% expect=["within 2 s\\? False", "after the parent closes w: True b''"]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.write(w, b"one line\n")
    finally:
        os._exit(0)
os.waitpid(pid, 0)
os.read(r, 100)
readable, _, _ = select.select([r], [], [], 2.0)
print("anything more to read within 2 s?", bool(readable))
os.close(w)
readable, _, _ = select.select([r], [], [], 2.0)
print("after the parent closes w:", bool(readable), os.read(r, 100))
os.close(r)
