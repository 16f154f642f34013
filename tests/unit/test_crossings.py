"""Crossings: the layers meet only through public names.

Nothing outside ``procmagic/core`` touches a ``_private`` name of the core (an attribute of a
core object, or ``from ..core.x import _y``), and no layer imports another layer's private
names (``from ..text import _table`` in the widgets). The layering test enforces which layer may
import which; this one enforces that they do it through the front door. Private names of the
standard library and third-party packages (``threading._active``) are not the core's and are
left alone.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "procmagic"


def _layer(path: Path) -> str:
    """core, kernel, widgets, engines... or the module's own name for top-level modules."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private_names(paths: list[Path]) -> set[str]:
    """Private names a set of modules defines: module-level names, methods, attributes set on
    ``self``/``cls`` or declared in a class body."""
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _private(node.target.id):
                names.add(node.target.id)
    return names


def _resolve(path: Path, node: ast.ImportFrom) -> str | None:
    """The procmagic layer an import points at (None for other packages)."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "procmagic":
            return None
        target = parts[1:]
    else:
        base = list(path.relative_to(PACKAGE).parts[:-1])
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = base + ((node.module or "").split(".") if node.module else [])
    if not target:
        return "procmagic"
    return target[0] if (PACKAGE / target[0]).is_dir() else target[0].removesuffix(".py")


def crossings() -> list[str]:
    modules = _modules()
    by_layer: dict[str, list[Path]] = {}
    for path in modules:
        by_layer.setdefault(_layer(path), []).append(path)
    private_of = {layer: _defined_private_names(paths) for layer, paths in by_layer.items()}
    core_private = private_of.get("core", set())
    found: list[str] = []
    for path in modules:
        layer = _layer(path)
        own = private_of[layer]
        tree = ast.parse(path.read_text(), str(path))
        rel = os.path.relpath(path, ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(path, node)
                if target is None or target == layer:
                    continue
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{rel}:{node.lineno}: imports {alias.name} from the {target} layer")
                if node.module and any(_private(part) for part in node.module.split(".")):
                    found.append(f"{rel}:{node.lineno}: imports from a private module {node.module}")
            elif layer != "core" and isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in core_private and node.attr not in own:
                    found.append(f"{rel}:{node.lineno}: touches the core's private {node.attr}")
            elif (layer != "core" and isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                  and _private(node.args[1].value)):
                name = node.args[1].value
                if name in core_private and name not in own:
                    found.append(f"{rel}:{node.lineno}: {node.func.id}() on the core's private {name}")
    return found


def test_no_layer_touches_another_layers_private_names():
    found = crossings()
    assert not found, "private names crossing a layer boundary:\n" + "\n".join(found)


def test_the_check_catches_a_crossing(tmp_path, monkeypatch):
    """The checker itself: a module of the kernel layer reaching into a Process is caught."""
    fake = tmp_path / "procmagic"
    (fake / "core").mkdir(parents=True)
    (fake / "kernel").mkdir()
    (fake / "core" / "thing.py").write_text("class Thing:\n    def __init__(self):\n        self._secret = 1\n")
    (fake / "kernel" / "user.py").write_text(
        "from ..core.thing import Thing, _helper\n\ndef peek(t: Thing) -> int:\n    return t._secret\n\n"
        "def poke(t: Thing) -> None:\n    setattr(t, '_secret', 2)\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    found = crossings()
    assert any("imports _helper from the core layer" in f for f in found), found
    assert any("touches the core's private _secret" in f for f in found), found
    assert any("setattr() on the core's private _secret" in f for f in found), found
