"""The kernel integration: what only a running IPython (and, mostly, an ipykernel) has.

- ``context``: where output goes (the spawning cell, via the kernel's IOPub) and which loops
  drive it;
- ``child_setup``: what a child forked from a kernel cuts off and rewires;
- ``channel``: the framed channel carrying a child's output, displays and errors;
- ``router``: decoding, coalescing and capping a spawn's output;
- ``spawn`` and ``drivers``: building a spawn and running it in the foreground or background;
- ``cell``: running the cell's body in the child through IPython.
"""
