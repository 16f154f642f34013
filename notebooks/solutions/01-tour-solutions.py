# %% [markdown]
# # Solutions: a tour of procmagic
#
# The answers to the exercises at the end of `01-tour`, each with the reason and a cell that
# checks it.

# %%
%load_ext procmagic
scores = {"alice": 3, "bob": 5}

# %% [markdown]
# **1. A child empties `scores`.** The child prints `{}`: it cleared *its* copy. The notebook
# still has both entries: a fork copies the kernel's memory (lazily, page by page), and
# nothing the child writes reaches the parent. To bring something back, send it (the pipe, a
# queue, a file).

# %% expect=["in the child: \\{\\}"]
%%spawn
scores.clear()
print("in the child:", scores)

# %% expect=["in the notebook: \\{'alice': 3, 'bob': 5\\}"]
print("in the notebook:", scores)

# %% [markdown]
# **2. A child divides by zero.** The cell shows the traceback as an ordinary error output
# (IPython's own formatting, with the line of the cell), and the status line says
# `exited 1`: an uncaught exception ends the child with exit code 1, as it ends `python`
# with 1. The kernel itself is untouched.

# %% expect=["ZeroDivisionError: division by zero", "divider .*exited 1"] tags=["raises-exception"]
%%spawn --name divider
print(1 / 0)
