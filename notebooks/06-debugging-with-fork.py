# %% [markdown]
# # Debugging with fork
#
# A fork is a free snapshot of everything the notebook holds. That makes it a good tool for
# debugging: try a risky change on a copy and throw the copy away, let a crash happen
# somewhere it cannot hurt the kernel, and see exactly how a process died. It also shows,
# by breaking on purpose, why procmagic refuses to fork while threads are alive. And it shows
# how to get values back from children (`--result`, `procmagic.call` and `map`) and how to
# step through a child's copy of the notebook in a debugger.

# %%
%load_ext procmagic
import procmagic

# %% [markdown]
# ## Try a risky change on a copy
#
# Say the notebook holds data that took a long time to build, and a function you are not
# sure about changes it in place. Run it in a child: the child works on its own copy of the
# data (copy-on-write: only the pages it changes are copied), and the notebook's stays as
# it was, whatever happens.

# %%
orders = [{"id": i, "price": 10.0 + i} for i in range(5)]

def apply_discount(rows, percent):
    for row in rows:                      # changes the rows in place!
        row["price"] = round(row["price"] * (1 - percent / 100), 2)
    return rows


# %% expect=["in the child: \\[8.0, 8.8, 9.6, 10.4, 11.2\\]"]
%%spawn --out trial
import json
apply_discount(orders, 20)
print("in the child:", [o["price"] for o in orders])
del orders[0]                             # even this touches only the copy
proc.write(json.dumps(orders))            # send back what we want to keep
print("sent", len(orders), "orders back")

# %% expect=["in the kernel: \\[10.0, 11.0, 12.0, 13.0, 14.0\\]", "sent back: \\[1, 2, 3, 4\\]"]
import json
print("in the kernel:", [o["price"] for o in orders])
kept = json.loads(trial.read())
print("what the child sent back:", [o["id"] for o in kept])

# %% [markdown]
# ## Values back from a child: `--result`
#
# Sending JSON through the pipe works, but there is a shorter way: `--result VAR` binds the
# value of the body's last expression (the value the cell displays) to `VAR` in the notebook
# once the child ends. It travels pickled (cloudpickle), so instances of the notebook's own
# classes, lambdas and large arrays come back too. With `-n`, `VAR` is a list in worker order.

# %% expect=["exited 0"]
%%spawn --result discounted
[o["price"] for o in apply_discount(orders, 10)]

# %% expect=["child's prices: \\[9.0, 9.9, 10.8, 11.7, 12.6\\]", "notebook's prices: \\[10.0, 11.0, 12.0, 13.0, 14.0\\]"]
print("child's prices:", discounted)
print("notebook's prices:", [o["price"] for o in orders])

# %% [markdown]
# A child that fails binds nothing, and the cell says why:

# %% expect=["--result total: the child sent no value: it raised KeyError", "nothing was bound"] tags=["raises-exception"]
%%spawn --result total
sum(o["cost"] for o in orders)           # there is no "cost" key

# %% [markdown]
# ## `procmagic.call` and `procmagic.map`: functions in forked children
#
# From plain Python (no magic), `procmagic.call(fn, *args)` runs `fn` in a forked child and
# returns its value; `procmagic.map(fn, items, workers=N)` spreads the items over N forked
# workers and returns the values in order. The function is never pickled: the children are
# forks, they have it already. That is why a function defined in a notebook cell works here,
# while `multiprocessing.Pool` with Python 3.14's default start method (forkserver) cannot
# run it. An exception in the child is raised again here with the child's traceback attached;
# the notebook's interrupt stops every child.

# %% expect=["\\[8.0, 8.8, 9.6, 10.4, 11.2\\]", "call: 5 orders", "ValueError: invalid literal"]
def discounted_price(row, percent=20):
    return round(row["price"] * (1 - percent / 100), 2)

print(procmagic.map(discounted_price, orders, workers=2))
print("call:", procmagic.call(len, orders), "orders")
try:
    procmagic.call(int, "three")
except ValueError as error:
    print(type(error).__name__ + ":", error)

# %% [markdown]
# With top-level `await`, the kernel keeps serving (widgets, other messages) while the child
# works: `await procmagic.call_async(fn, ...)`, and `await proc.wait_async()` for a `Process`.

# %% expect=["46\\.0"]
await procmagic.call_async(sum, [o["price"] for o in orders[:4]])

# %% [markdown]
# ## A debugger in the child
#
# `breakpoint()`, `pdb.set_trace()` or IPython's `set_trace()` in a `%%spawn` body open a
# debugger on the child's copy of the notebook. Its output appears in the cell and its
# `ipdb>` prompt is the notebook's input box, as with `%debug`. `%%spawn --pdb` opens it at an
# uncaught exception, before the child exits. A session looks like this (typed answers after
# `ipdb>`):
#
# ```text
# %%spawn --result total
# prices = [o["price"] for o in orders]
# breakpoint()
# sum(prices)
#
# > <ipython-input>(2)<module>()
# ipdb> p prices
# [10.0, 11.0, 12.0, 13.0, 14.0]
# ipdb> prices[0] = 100.0
# ipdb> c
# [procmagic] spawn-7 (id 9, pid 4242) exited 0 after 9.81 s, ...
# ```
#
# and `total` is then `150.0`: the change was made in the child, and only its result came
# back. (`input()` in a child asks the notebook the same way.)
#
# A notebook executed headless (nbconvert, papermill) cannot answer prompts, so here the
# session runs in a `--bg` child and later cells type into it. The panel shows the child *in
# debugger*; its stdin box answers it, and so does `procmagic.kernel.stdin.answer`:

# %% expect=["dbg is in the debugger"]
%%spawn --bg --name dbg --result total
prices = [o["price"] for o in orders]
breakpoint()
sum(prices)

# %% expect=["total: 150.0"]
from procmagic.kernel.stdin import answer
answer("dbg", "p prices", wait=30)               # printed in the cell above
answer("dbg", "prices[0] = 100.0", wait=30)
answer("dbg", "c", wait=30)
%wait dbg
print("total:", total)

# %% [markdown]
# ## A crashing child: its traceback and its exit status
#
# An exception the body does not catch ends the child with exit code 1, and its traceback
# appears in the cell as an ordinary error, formatted by IPython: you read it the way you
# read any traceback in a notebook. The kernel itself is unaffected.
#
# (This cell is tagged `raises-exception`, which tells tools that run notebooks top to
# bottom that the error is expected.)

# %% expect=["ValueError: invalid literal for int\\(\\)", "crasher .*exited 1"] tags=["raises-exception"]
%%spawn --name crasher
def parse(record):
    return int(record["quantity"])

for record in [{"quantity": "3"}, {"quantity": "three"}]:
    print("parsed", parse(record))

# %% expect=["code: 1 \\| signal: None \\| ok: False"]
status = procmagic.get("crasher").exitstatus
print(status)
print("code:", status.code, "| signal:", status.signal, "| ok:", status.ok)

# %% [markdown]
# A crash in C code is harsher: the process is killed by a signal (`SIGSEGV` for a bad
# memory access), Python gets no chance to raise, and there is no traceback unless you ask
# for one. `faulthandler` prints Python's stack on such a crash, at the file-descriptor
# level, which procmagic carries to the cell like any other output.
#
# Look at the bottom of that stack: below the body's frames are IPython's, ipykernel's and
# procmagic's own `spawn`. The child really is the kernel, forked in the middle of running
# the `%%spawn` cell.

# %% expect=["Fatal Python error: Segmentation fault", "read_address_zero", "killed by SIGSEGV"]
%%spawn --name segfault
import ctypes, faulthandler
faulthandler.enable()
def read_address_zero():
    return ctypes.string_at(0)            # dereferences a NULL pointer
read_address_zero()

# %% expect=["killed by SIGSEGV \\| signal: 11 \\| returncode: -11"]
status = procmagic.get("segfault").exitstatus
print(status.how, "| signal:", status.signal, "| returncode:", status.returncode)

# %% [markdown]
# A child that hangs does not hang the notebook if you give it a `--timeout`: it is sent
# SIGTERM, then SIGKILL, and the cell goes on.

# %% expect=["killed by SIGTERM, timed out"]
%%spawn --timeout 1
while True:
    pass

# %% [markdown]
# ## Why forking with live threads is refused
#
# `fork()` copies the memory of the whole process but only *one* thread: the one that
# called it. A lock held by any other thread at that instant is copied as held, and no
# thread in the child will ever release it.
#
# The thread below holds `lock` for three seconds. `--force` tells procmagic to fork anyway
# (you get a `ForkWarning` naming the thread). The child then tries to take the lock and
# waits forever: the thread that would release it does not exist in the child. Only the
# time-out ends it.

# %%
import threading, time
lock = threading.Lock()

def hold_the_lock():
    with lock:
        time.sleep(3)

holder = threading.Thread(target=hold_the_lock, name="lock-holder")
holder.start()
time.sleep(0.1)                           # make sure it holds the lock

# %% expect=["child: taking the lock", "ForkWarning", "killed by SIGTERM, timed out"]
%%spawn --force --timeout 1
print("child: taking the lock...", flush=True)
with lock:
    print("never printed: the lock is never released in the child")

# %% [markdown]
# In your own code the lock is rarely yours: it is the `logging` module's, the import
# system's, or one inside a C library (`malloc`, OpenSSL, BLAS), held for a microsecond by a
# thread that happens to be running at the instant of the fork. Such a child hangs only
# sometimes, which is worse. That is why the guard refuses instead of hoping, and names each
# thread so you can stop it. `%forkcheck` shows the same census at any time:

# %% expect=["'lock-holder'.*NOT ALLOWED"]
%forkcheck

# %%
holder.join()

# %% [markdown]
# A common culprit is a `concurrent.futures.ThreadPoolExecutor` whose threads stay alive
# after the work is done. The refusal says so, and how to fix it:

# %% expect=["ThreadPoolExecutor-0_0", "executor.shutdown\\(wait=True\\)"]
from concurrent.futures import ThreadPoolExecutor
executor = ThreadPoolExecutor(max_workers=2)
print(list(executor.map(abs, [-1, -2, -3])))
try:
    get_ipython().run_cell_magic("spawn", "", "print('never printed')")
except procmagic.ForkRefused as refusal:
    print(refusal)
executor.shutdown(wait=True)

# %% expect=["forking is safe again"]
%%spawn
print("executor shut down: forking is safe again")

# %% [markdown]
# ## Exercises
#
# Predict first (write your answer in the empty cell, or on paper), then run the cell after it.
# The answers, with the reasons, are in `solutions/06-debugging-with-fork-solutions.ipynb`.
#
# **1.** A child deletes the notebook's `prices` and crashes. Does the notebook still have `prices`?

# %%
# your prediction:

# %%
prices = [10.0, 11.0]

# %% tags=["raises-exception"]
%%spawn --name wrecker
del prices
raise RuntimeError("the child broke everything")

# %%
print(prices)

# %% [markdown]
# **2.** A child calls `os.abort()`. How does its status line say it ended?

# %%
# your prediction:

# %%
%%spawn --name aborter
import os
os.abort()
