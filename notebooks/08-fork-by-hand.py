# %% [markdown]
# # Forking by hand, then with procmagic
#
# `%%spawn` is a handful of system calls: `pipe`, `fork`, `dup2`, `exec` (sometimes), `_exit`,
# `waitpid`. This notebook makes each of them by hand with Python's `os` module, looking at the
# process's *file-descriptor table* (`/proc/self/fd`) before and after, and then shows what
# procmagic does for each step. It runs in a few seconds.
#
# Forking a Jupyter kernel by hand is safe here only because each child below does nothing but
# system calls on its own descriptors and ends with `os._exit`: it never prints through the
# kernel, never takes a lock, never returns into the kernel's code. (On Python 3.12+ the fork
# shows a `DeprecationWarning`: the kernel has threads, and a child gets a copy of only one.)

# %%
%load_ext procmagic

# %% [markdown]
# ## The file-descriptor table
#
# A process reaches files, pipes and sockets through small integers, its *file descriptors*.
# `/proc/self/fd` lists them, each a link to what it is open on. 0, 1 and 2 are stdin, stdout
# and stderr. In a kernel they are not a terminal: they point wherever the program that started
# the kernel put them (a pipe, a log file, `/dev/null`). The helper below shows the first three
# and any others we ask for.

# %% expect=["fd 0 -> ", "fd 1 -> ", "fd 2 -> "]
import os

def fd_table(*extra):
    lines = []
    for fd in (0, 1, 2, *extra):
        try:
            lines.append(f"fd {fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            lines.append(f"fd {fd} -> (closed)")
    return "\n".join(lines)

print(fd_table())

# %% [markdown]
# ## Step 1: `pipe()`
#
# `os.pipe()` makes a one-way channel inside the kernel and returns two new descriptors: a read
# end and a write end, both on the same `pipe:[inode]`. The kernel always hands out the
# *lowest* free numbers.

# %% expect=["read end  r = \\d+", "fd \\d+ -> pipe:\\[(\\d+)\\]\\nfd \\d+ -> pipe:\\[\\1\\]"]
r, w = os.pipe()
print(f"read end  r = {r}\nwrite end w = {w}")
print(fd_table(r, w))

# %% [markdown]
# ## Step 2: `fork()`, `dup2()`, `exec()` in the child; `close()` and `read()` in the parent
#
# `os.fork()` returns twice: 0 in the child, the child's pid in the parent. The child gets a
# copy of the whole descriptor table, so both processes now hold both ends of the pipe.
#
# The child then:
#
# 1. closes the read end it does not need;
# 2. `os.dup2(w, 1)`: makes fd 1 a second name for the pipe's write end (whatever fd 1 was
#    before is closed), then closes `w`, so the pipe is reachable only as fd 1;
# 3. `os.execv` replaces the program but keeps the descriptor table: `echo` writes to its
#    stdout, which is now our pipe;
# 4. ends in `os._exit` whatever happens (if `exec` fails), so it never runs the kernel's code.
#
# The child reports its table before and after `dup2` over the pipe itself.
#
# The parent closes *its* write end at once (step 3 explains why) and reads until `read()`
# returns `b""`: end of file.

# %% expect=["child, before dup2:(\\n.*){3}\\nfd \\d+ -> pipe:\\[(\\d+)\\]\\nchild, after dup2:\\nfd 0 -> .*\\nfd 1 -> pipe:\\[\\2\\]\\n.*\\nfd \\d+ -> \\(closed\\)", "hello from echo, through fd 1", "end of file: every write end is closed"]
pid = os.fork()
if pid == 0:                                   # the child
    try:
        os.close(r)
        os.write(w, f"child, before dup2:\n{fd_table(w)}\n".encode())
        os.dup2(w, 1)                          # fd 1 is now the pipe's write end
        os.close(w)
        os.write(1, f"child, after dup2:\n{fd_table(w)}\n".encode())
        os.execv("/bin/echo", ["echo", "hello from echo, through fd 1"])
    finally:
        os._exit(127)                          # reached only if exec failed

os.close(w)                                    # the parent's write end: see step 3
received = b""
while chunk := os.read(r, 65536):             # b"" = end of file
    received += chunk
os.close(r)
print(received.decode(), end="")
print("end of file: every write end is closed")

# %% [markdown]
# Compare the inode of fd 1 in the child after `dup2` with the pipe's inode in step 1: the same
# pipe. In the child `w` shows as "(closed)" after `os.close(w)`: only fd 1 holds the pipe now.

# %%
from IPython.display import SVG
SVG(filename="../docs/diagrams/fd-table-dup2.svg")   # drawn from docs/diagrams/fd-table-dup2.dot

# %% [markdown]
# ## Step 3: the zombie and `waitpid()`
#
# The child has exited, but it is not gone: until its parent collects its exit status it stays
# in the process table as a *zombie* (state `Z`). `os.waitpid` collects the status and frees
# the entry; `os.waitstatus_to_exitcode` decodes it (a negative number is a signal).

# %% expect=["state before waitpid: Z", "exit code: 0", "state after waitpid: gone"]
import time

def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"

for _ in range(500):                           # echo may still be on its way out (5 s at most)
    if state(pid) == "Z":
        break
    time.sleep(0.01)
print("state before waitpid:", state(pid))
_, status = os.waitpid(pid, 0)
print("exit code:", os.waitstatus_to_exitcode(status))
print("state after waitpid:", state(pid))

# %% [markdown]
# Why close the parent's write end at once? A read returns end of file only when *every*
# write end of the pipe is closed, in every process. Had the parent kept `w`, its own open
# write end would have kept `read()` waiting forever after `echo` exited. (Swoole's own
# `swoole_process` forgets this: a read after its child died blocks forever.)
#
# ## The same with procmagic
#
# `%%spawn --redirect` does all of the above. Here the child shows its own table: fds 0, 1 and 2
# are one end of a *socket pair* (procmagic's pipe, which also carries messages both ways), and
# `proc.exec` replaces the program as `os.execv` did:

# %% expect=["fd 0 -> socket:\\[(\\d+)\\]\\nfd 1 -> socket:\\[\\1\\]\\nfd 2 -> socket:\\[\\1\\]", "hello from echo, through procmagic", "exited 0"]
%%spawn --redirect
print(fd_table(), flush=True)
proc.exec("/bin/echo", ["hello from echo, through procmagic"])

# %% [markdown]
# | by hand | what procmagic does |
# |---|---|
# | `os.pipe()` | a socket pair per child (`--pipe stream\|dgram\|none`; `Process(pipe=...)`) |
# | `os.fork()` | one fork, after the threaded-fork guard checked that no foreign thread is alive |
# | child: `close(r)`, `dup2(w, 1)` | `--redirect`: `dup2` onto fds 0, 1 and 2, fresh `sys.stdout`/`stderr`/`stdin` over them |
# | child: `try: … finally: os._exit()` | always; the cell body runs inside it, and the kernel's sockets are closed in the child |
# | parent: `close(w)` at once | the child's ends are closed in the parent right after the fork |
# | parent: `read()` until `b""` | the kernel's event loop reads without blocking and publishes each line in the spawning cell |
# | parent: `waitpid()` | a pidfd tells the event loop when the child ended; it is reaped at once, and the status line shows how it ended |
#
# ## Exercises
#
# Predict first (write your answer in the cell, or on paper), then run the cell after it. The
# answers, with the reasons, are in `solutions/08-fork-by-hand-solutions.ipynb`.
#
# **1.** You close fd 0 and then call `os.pipe()`. Which numbers do you get?

# %%
# your prediction:

# %%
saved = os.dup(0)                              # keep stdin to put it back
os.close(0)
r2, w2 = os.pipe()
print("pipe() returned", r2, w2)
os.dup2(saved, 0)
for fd in (saved, w2) if r2 == 0 else (saved, r2, w2):
    os.close(fd)

# %% [markdown]
# **2.** A child calls `os._exit(300)`. What does `os.waitstatus_to_exitcode` say in the parent?

# %%
# your prediction:

# %%
pid = os.fork()
if pid == 0:
    os._exit(300)
print("exit code:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

# %% [markdown]
# **3.** This time the parent forgets `os.close(w)`. The child writes one line and exits. What
# does the parent's read loop do after the line? (The cell asks `select` whether the pipe is
# readable within 2 s, so it cannot hang.)

# %%
# your prediction:

# %%
import select
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.write(w, b"one line\n")
    finally:
        os._exit(0)
os.waitpid(pid, 0)                             # the child is gone
print(os.read(r, 100))
readable, _, _ = select.select([r], [], [], 2.0)
print("anything more to read (data or end of file) within 2 s?", bool(readable))
os.close(w)
readable, _, _ = select.select([r], [], [], 2.0)
print("after the parent closes w:", bool(readable), os.read(r, 100))
os.close(r)
