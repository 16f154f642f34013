# %% [markdown]
# # Past one machine: forking on ipyparallel engines
#
# procmagic's children normally live on the kernel's machine. When one machine is not enough,
# [ipyparallel](https://ipyparallel.readthedocs.io) gives a notebook a cluster: a controller and
# *engines*, each engine an IPython kernel, which `ipcluster` can start on many hosts (SSH, MPI,
# Slurm, PBS, Kubernetes). `%%spawn --engines` forks the cell's children **on the engines**, from
# each engine's own namespace, with everything procmagic adds: output streaming into this cell
# labelled by engine, exit statuses, `%procs`, `%kill`, `%wait`, time-outs and interrupts.
#
# This notebook starts a small cluster on this machine (two engines, talking TCP on 127.0.0.1,
# the same protocol as a multi-host cluster), so it runs anywhere ipyparallel is installed
# (`pip install 'procmagic[engines]'`). It takes about twenty seconds.

# %%
%load_ext procmagic
import os
import ipyparallel as ipp
import procmagic

# %% [markdown]
# ## A cluster, and a client in the notebook
#
# `ipp.Cluster` starts a controller and the engines as separate processes and connects a client:
# `rc`. On a real cluster you would connect to one started by `ipcluster` instead
# (`rc = ipp.Client(profile="mycluster")`); everything below stays the same.

# %% expect=["engines \\[0, 1\\]"]
cluster = ipp.Cluster(n=2, controller_ip="127.0.0.1", log_level=40)
rc = cluster.start_and_connect_sync()
rc.wait_for_engines(2, timeout=120)
engine_pids = rc[:].apply_sync(os.getpid)
print("engines", sorted(rc.ids), "with pids", engine_pids, "; the notebook's kernel is", os.getpid())

# %% [markdown]
# ## Spawning on engines
#
# `--engines all` runs the body on every engine of the client named by `--view` (without
# `--view`: the default `ipp.Client()`). `-n 2` forks two children per engine. In the body,
# `proc.engine` and `proc.worker` say which one runs; each child's parent is its engine, not the
# notebook. The body runs in the *engine's* namespace, so it imports what it uses. Output lines are
# labelled `[engine E] [worker]`, and each child's exit status follows.

# %% expect=["\\[engine 0\\] \\[1\\] engine 0 worker 1", "\\[engine 1\\] \\[0\\] engine 1 worker 0", "exited 0"]
%%spawn --engines all --view rc -n 2
import os   # the engine's namespace, not the notebook's: import what the body uses
print(f"engine {proc.engine} worker {proc.worker}: pid {os.getpid()}, forked from {os.getppid()}")

# %% [markdown]
# ## What the engines know: `--push`
#
# An engine is a separate process (on a real cluster, another host): it does not have the
# notebook's variables. `--push a,b` copies them there first (cloudpickle, by value, functions
# too), so the body can use what the notebook computed. `--engines 0,` (with a comma) picks
# engine 0 alone; `--engines 1` would be a count: the first engine.

# %%
numbers = list(range(1, 1_000_001))
def share(engine, engines):
    return numbers[engine::engines]

# %% expect=["\\[engine 0\\] engine 0 of 2 sums 250000000000", "\\[engine 1\\] engine 1 of 2 sums 250000500000"]
%%spawn --engines all --view rc --push numbers,share
print(f"engine {proc.engine} of 2 sums {sum(share(proc.engine, 2))}")

# %% [markdown]
# ## Collecting values: `procmagic.map(..., view=)`
#
# To get values back rather than text, `procmagic.map` and `procmagic.call` take `view=`: the
# items are split into one block per engine, each engine maps its block with children forked
# there, and the values come back in order.

# %% expect=["squares \\[0, 1, 4, 9, 16, 25, 36, 49\\]", "computed under engines \\[\\d+, \\d+\\]"]
results = procmagic.map(lambda x: (x * x, os.getppid()), range(8), workers=2, view=rc)
print("squares", [value for value, _ in results])
print("computed under engines", sorted({parent for _, parent in results}))

# %% [markdown]
# ## Background children, `%procs` and `%kill`
#
# `--bg` returns at once; the children's output keeps landing in *this* cell, whatever runs
# meanwhile. `%procs` lists remote children beside local ones (id `e<engine>:<id>`, engine,
# host, pid, state, CPU, peak memory), and `%kill` signals them through their engines: the
# children stop, the engines stay up.

# %% expect=["\\[engine 0\\] sleeper on engine 0 is up", "killed by SIGTERM"]
%%spawn --engines all --view rc --bg --name sleeper
import time
print(f"sleeper on engine {proc.engine} is up", flush=True)
time.sleep(600)

# %%
import time
time.sleep(1.0)   # give the sleepers a moment to start

# %% expect=["sleeper@e0 .*running", "sleeper@e1 .*running"]
%procs

# %% expect=["sent SIGTERM to sleeper@e0", "sent SIGTERM to sleeper@e1"]
%kill sleeper

# %% expect=["sleeper@e0 .*killed by SIGTERM"]
%wait sleeper

# %% expect=["the same engines still answer: True"]
print("the same engines still answer:", rc[:].apply_sync(os.getpid) == engine_pids)

# %% [markdown]
# When the notebook's kernel shuts down or restarts, procmagic stops every remote child it
# started and leaves the engines running. Here we started the cluster ourselves, so we stop it.

# %%
rc.close()
cluster.stop_cluster_sync()
