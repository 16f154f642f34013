"""Layering: the core never imports IPython, ipykernel, ipywidgets, zmq or traitlets."""

from __future__ import annotations

import pkgutil

import procmagic.core

from .helpers import python

BLOCKED = ("IPython", "ipykernel", "ipywidgets", "zmq", "traitlets")

SCRIPT = f"""
import importlib, pkgutil, sys

BLOCKED = {BLOCKED!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"layering: the core must not import {{name}}")
        return None


sys.meta_path.insert(0, Blocker())
try:
    import IPython  # the blocker works, or this test proves nothing
except ImportError:
    pass
else:
    raise SystemExit("the blocker let IPython through")

import procmagic
import procmagic.core
names = sorted(m.name for m in pkgutil.iter_modules(procmagic.core.__path__))
for name in names:
    importlib.import_module("procmagic.core." + name)

from procmagic import Process
p = Process(lambda proc: proc.write(b"forked") and None)
p.start()
assert p.read(timeout=20) == b"forked"
assert p.join(timeout=20).code == 0
p.close()

leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not leaked, leaked
print(" ".join(names))
"""


def test_core_imports_and_forks_with_ipython_blocked():
    result = python(SCRIPT)
    assert result.returncode == 0, result.stderr
    imported = result.stdout.split()
    expected = sorted(m.name for m in pkgutil.iter_modules(procmagic.core.__path__))
    assert imported == expected
    assert {"child", "counters", "errors", "guard", "pipe", "process", "reaper", "signals", "status"} <= set(imported)
