"""The teaching notebooks, executed top to bottom in a fresh python3 kernel with nbclient.

Every notebook is a jupytext pair (``notebooks/NN-name.ipynb`` and ``notebooks/NN-name.py`` in
py:percent, see ``notebooks/README.md``); so is every exercise solution in
``notebooks/solutions/``. The tests check that each pair is in step, that the committed
``.ipynb`` carries no outputs, and then run it: no error output in a cell not tagged
``raises-exception``, and every pattern in a cell's ``expect`` metadata (regular expressions)
found in what that cell shows. The expectations live in the notebooks themselves, beside the
cells they check. Background output that arrives after its cell finished is kept in that cell
(``run_notebook.py``), so the checks see what JupyterLab would show.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: the metadata a py:percent source keeps (notebooks/jupytext.toml says the same)
KEPT_METADATA = ("tags", "expect")
#: a notebook must run top to bottom in this many seconds (the suite runs on 2 loaded cores)
BUDGET_SECONDS = 60

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


run_notebook = _load("run_notebook")


def _notebooks() -> list[str]:
    """Every teaching notebook and every solutions notebook, as paths relative to notebooks/."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")) + sorted(NOTEBOOKS.glob("solutions/*.ipynb"))
    return [str(path.relative_to(NOTEBOOKS)) for path in found]


NAMES = _notebooks()


def test_every_notebook_has_its_source_and_no_generator_is_left():
    assert len(NAMES) >= 6
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.py")) + sorted(NOTEBOOKS.glob("solutions/*.py"))
    assert sorted(str(p.relative_to(NOTEBOOKS).with_suffix(".ipynb")) for p in sources) == NAMES, (
        "every notebooks/NN-name.py needs its .ipynb and the other way round: run `make notebooks`"
    )
    assert not (NOTEBOOKS / "make_notebooks.py").exists()


@pytest.mark.parametrize("name", NAMES)
def test_pair_is_in_step_and_notebook_is_clean(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{name}: kernelspec must be python3"
    ids = [cell.id for cell in nb.cells]
    assert len(set(ids)) == len(ids), f"{name}: duplicate cell ids"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}: cell {cell.id} has outputs; run `make notebooks` (it clears them) before committing"
            )

    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    in_ipynb = [(c.cell_type, c.source, {k: c.metadata[k] for k in KEPT_METADATA if k in c.metadata})
                for c in nb.cells]
    in_py = [(c.cell_type, c.source, {k: c.metadata[k] for k in KEPT_METADATA if k in c.metadata})
             for c in source.cells]
    assert in_py == in_ipynb, (
        f"{name} and {path.with_suffix('.py').name} differ: run `make notebooks` to bring the pair in step"
    )
    assert any("expect" in cell.metadata for cell in nb.cells), (
        f"{name}: no cell says what it must show; add expect=[...] to the cells that teach something"
    )


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_and_shows_what_it_teaches(name):
    nb, seconds = run_notebook.execute(NOTEBOOKS / name, timeout=120)

    errors = run_notebook.error_outputs(nb)
    assert not errors, f"{name}: error outputs in cells not tagged raises-exception: {errors}"
    for cell in nb.cells:  # a tagged cell must really show its error, or the tag hides nothing
        if "raises-exception" in cell.metadata.get("tags", []):
            assert any(o["output_type"] == "error" for o in cell.outputs), f"{name}: {cell.id} shows no error"

    for index, cell in enumerate(nb.cells):
        patterns = cell.metadata.get("expect", [])
        text = run_notebook.cell_text(cell)
        for pattern in patterns:
            assert re.search(pattern, text, re.MULTILINE), (
                f"{name}, cell {index} ({cell.source.splitlines()[0][:60]!r}): no {pattern!r} in:\n{text}"
            )

    assert seconds < BUDGET_SECONDS, f"{name} took {seconds:.1f} s; a notebook must run in under a minute"


def test_saving_in_jupyterlab_writes_both_halves(tmp_path):
    """JupyterLab saves through jupytext's contents manager (installed with the test extra, enabled
    as a server extension): saving the .ipynb rewrites the .py source too, cell ids kept."""
    import shutil

    for name in ("jupytext.toml", "01-tour.ipynb", "01-tour.py"):
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    manager = jupytext.TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get("01-tour.ipynb")
    nb = model["content"]
    ids_before = [cell["id"] for cell in nb["cells"]]
    nb["cells"][0]["source"] = "# A tour of procmagic, edited in JupyterLab"
    manager.save({"type": "notebook", "content": nb}, "01-tour.ipynb")

    assert "# # A tour of procmagic, edited in JupyterLab" in (tmp_path / "01-tour.py").read_text(encoding="utf-8")
    saved = nbformat.read(tmp_path / "01-tour.ipynb", as_version=4)
    assert [cell.id for cell in saved.cells] == ids_before
    source = jupytext.read(tmp_path / "01-tour.py", fmt="py:percent")
    assert [c.source for c in source.cells] == [c.source for c in saved.cells]
