"""The kernel integration: what only a running IPython (and, mostly, an ipykernel) has.

- ``context``: where output goes (the spawning cell, via the kernel's IOPub) and which loops
  drive it;
- ``child_setup``: what a child forked from a kernel cuts off and rewires;
- ``channel``: the framed channel carrying a child's output, displays and errors;
- ``router``: decoding, coalescing and capping a spawn's output;
- ``spawn``: building a spawn (its children, subscribed to their ends before the fork) and
  keeping the last ones (``ProcMagics.history``);
- ``foreground``, ``background`` and ``terminal``: running a spawn while its cell blocks, on the
  IOPub thread's loop (``--bg``), or drained around each cell in terminal IPython;
- ``interrupts``: the notebook's interrupts held while a spawn starts and runs in the foreground;
- ``integration``: what ``%load_ext`` installs (the child hook, reaping on the kernel's loops,
  per-cell events) and the kernel's shutdown;
- ``cell``: running the cell's body in the child through IPython.

docs/architecture.md puts them together.
"""
