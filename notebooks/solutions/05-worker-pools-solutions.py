# %% [markdown]
# # Solutions: worker pools
#
# The answers to the exercises at the end of `05-worker-pools`.

# %%
%load_ext procmagic

# %% [markdown]
# **1. Four workers append to `seen`:** each worker sees only its own index (`[0]`, `[1]`, …),
# and the notebook's `seen` stays `[]`. Every worker is a separate fork with its own copy of the
# list; they share nothing unless you give them something to share (a queue, the pipe, shared
# memory).

# %%
seen = []

# %% expect=["\\[0\\] worker 0 sees \\[0\\]", "\\[3\\] worker 3 sees \\[3\\]"]
%%spawn -n 4 --name appender
seen.append(proc.worker)
print("worker", proc.worker, "sees", seen)

# %% expect=["in the notebook: \\[\\]"]
print("in the notebook:", seen)

# %% [markdown]
# **2. Four partial sums** add up to `sum(range(1000))` = 499500: worker `w` takes
# `w, w+4, w+8, …`, and together the four cover every number exactly once. This is the
# fan-out/fan-in pattern of the notebook in its smallest form.

# %%
%%spawn -n 4 --name quarter --out quarters
sent = proc.write(str(sum(range(proc.worker, 1000, 4))))

# %% expect=["^499500$"]
print(sum(int(w.read(timeout=5)) for w in quarters))
