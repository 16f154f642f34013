# %% [markdown]
# # Pipes and redirection
#
# Every procmagic child can have a pipe to its parent: a Unix socketpair, made before the
# fork, with one end in each process (as in `swoole_process`). It comes in three kinds:
#
# | `pipe=` | what it is | use it for |
# |---|---|---|
# | `"dgram"` (default) | a datagram socketpair: message boundaries are kept | messages: one `write` is one `read` |
# | `"stream"` | a byte stream, like a shell pipe | bulk bytes, text lines, stdio |
# | `None` | no pipe | children that only print, or talk through a queue |
#
# This notebook uses both the plain-Python API (`procmagic.Process`, the same in a script)
# and the `%%spawn` magic.

# %%
%load_ext procmagic
import sys, time
from procmagic import Process


# %% [markdown]
# ## Stream versus dgram
#
# The child below writes three words, then exits. The parent reads until end of file
# (`read()` returns `b""`). On the dgram pipe each `write` arrives as its own message; on
# the stream pipe the bytes run together, and you would need your own framing (lines,
# length prefixes) to split them again.

# %% expect=["dgram : \\[b'one', b'two', b'three'\\]", "stream: \\[b'onetwothree'\\]"]
def talk(p):
    for word in [b"one", b"two", b"three"]:
        p.write(word)

for kind in ["dgram", "stream"]:
    p = Process(talk, pipe=kind)
    p.start()
    p.join()                      # the child has exited; what it wrote waits in the pipe
    received = []
    while (chunk := p.read()):    # b"" means end of file
        received.append(chunk)
    print(f"{kind:6}: {received}")

# %% [markdown]
# A datagram must fit in the socket's buffer (some hundreds of KB on Linux): for bulk data,
# use a stream. `read()` never blocks forever once the child is gone: Swoole's own
# implementation keeps the child's end open in the parent, so a read after the child died
# hangs; procmagic closes it at once.

# %% [markdown]
# The same choice for a `%%spawn` cell is `--pipe stream|dgram|none`. Bulk data goes on a
# stream. A socket holds only a few hundred KB: a child that writes more waits until the
# notebook reads (*back-pressure*), so a bulk writer runs in the background and the notebook
# reads until end of file:

# %% expect=["bulk \\(id \\d+, pid \\d+\\) exited 0"]
%%spawn --pipe stream --bg --name bulk --out bulk
proc.write(b"x" * 1_000_000)       # 1 MB: blocks until the notebook has read most of it

# %% expect=["received 1000000 bytes in \\d+ reads"]
received, reads = 0, 0
while chunk := bulk.read(timeout=10):   # b"" once the child has exited and the pipe is empty
    received += len(chunk)
    reads += 1
print(f"received {received} bytes in {reads} reads")

# %% [markdown]
# ## Talking both ways with a running child
#
# With `%%spawn`, `proc` in the body is the child's own `Process`: `proc.write()` and
# `proc.read()` use the child's end of the pipe. `--out echo` gives the notebook the other
# end. Here the child is a small echo server running in the background:

# %% expect=["echo: end of file, bye", "echo \\(id \\d+, pid \\d+\\) exited 0"]
%%spawn --bg --name echo --out echo
while True:
    message = proc.read()          # waits for the notebook
    if not message:                # end of file: the notebook closed its side
        break
    proc.write(message.upper())
print("echo: end of file, bye")

# %% expect=["b'PING'", "b'HELLO, CHILD'"]
for word in ["ping", "hello, child"]:
    echo.write(word)               # str is sent as UTF-8
    print(echo.read(timeout=5))
echo.close("write")                # the child's read() now returns b""

# %%
%wait echo

# %% [markdown]
# ## Time-outs and non-blocking reads
#
# `read(timeout=S)` raises `TimeoutError` when nothing arrives in time; `set_timeout(S)`
# makes that the default. After `set_blocking(False)`, `read()` and `write()` raise
# `BlockingIOError` instead of waiting. `stop()` ends a child: SIGTERM, then SIGKILL after a
# grace period.

# %% expect=["TimeoutError: no data arrived", "BlockingIOError", "killed by SIGTERM"]
quiet = Process(lambda p: time.sleep(5))
quiet.start()
try:
    quiet.read(timeout=0.3)
except TimeoutError as err:
    print("TimeoutError:", err)
quiet.set_blocking(False)
try:
    quiet.read()
except BlockingIOError as err:
    print("BlockingIOError:", err)
print(quiet.stop(grace=1))


# %% [markdown]
# ## Redirect: the pipe becomes stdin, stdout and stderr
#
# With `redirect=True` procmagic `dup2`s the child's end of a stream pipe onto its file
# descriptors 0, 1 and 2. Whatever the child prints, at any level, comes out of the
# parent's `read()`; whatever the parent `write()`s is the child's stdin. `close("write")`
# shuts the parent's sending side, which the child reads as end of file.

# %% expect=["HELLO\\s+WORLD", "exited 0"]
def shout(p):
    for line in sys.stdin:
        print(line.strip().upper(), flush=True)

p = Process(shout, redirect=True)
p.start()
p.write("hello\nworld\n")
p.close("write")                  # end of file on the child's stdin
output = b""
while (chunk := p.read(timeout=5)):
    output += chunk
print(output.decode(), p.join())

# %% [markdown]
# `%%spawn --redirect` does the same, and procmagic reads the pipe for you: the child's
# output streams into the cell, so the notebook's `read()` on it is refused (it would steal
# output from the cell). `write()` still feeds the child's stdin, here while the child runs
# in the background:

# %% expect=["child read: FIRST LINE", "child read: SECOND LINE", "stdin closed, exiting"]
%%spawn --redirect --bg --name upper --out upper
import sys
for line in sys.stdin:
    print("child read:", line.strip().upper(), flush=True)
print("stdin closed, exiting")

# %%
upper.write("first line\n")
upper.write("second line\n")
upper.close("write")

# %%
%wait upper

# %% [markdown]
# ## `exec`: replace the child with another program
#
# `proc.exec(path, args)` replaces the child's program, as `swoole_process::exec` does
# (`args` excludes `argv[0]`; `path` is looked up in `PATH`). It keeps the pid, the process
# group and the pipe, so with a redirect the program's output is the pipe's, and its exit
# code is the child's.

# %% expect=["b'hello from sh\\\\n'", "exited 4"]
p = Process(lambda p: p.exec("sh", ["-c", "echo hello from sh; exit 4"]), redirect=True)
p.start()
print(p.read(timeout=5), p.join())

# %% expect=["Linux", "exited 0"]
%%spawn --redirect
proc.exec("uname", ["-s", "-m"])

# %% [markdown]
# If `exec` fails (no such program, not executable), the error travels back to the parent
# over a close-on-exec pipe, as in CPython's `subprocess`, and `join()` raises the same
# `OSError`; the status is on the exception. (The child also reports it on its stderr, which
# for a plain `Process` is the kernel's: that line may show up here too.)

# %% expect=["FileNotFoundError", "exited 127, exec failed"]
p = Process(lambda p: p.exec("no-such-program"))
p.start()
try:
    p.join()
except OSError as err:
    print(repr(err))
    print(err.exit_status)

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/02-pipes-and-redirect-solutions.ipynb`.
#
# **1.** On a dgram pipe the child writes `b"one"` and then `b"two"`, and exits. What does one
# `read()` in the parent return?

# %%
# your prediction:

# %%
def two_words(p):
    p.write(b"one")
    p.write(b"two")

p = Process(two_words, pipe="dgram")
p.start()
p.join()
print(p.read())

# %% [markdown]
# **2.** The same child on a *stream* pipe. What does one `read()` return now?

# %%
# your prediction:

# %%
p = Process(two_words, pipe="stream")
p.start()
p.join()
print(p.read())
