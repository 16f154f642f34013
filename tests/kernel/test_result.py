"""%%spawn --result VAR in a real kernel: values of every kind, and every way there is none."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import Kernel


@pytest.fixture(scope="module")
def k():
    kernel = Kernel()
    try:
        kernel.execute("%load_ext procmagic")
        yield kernel
    finally:
        kernel.close()


def value_of(k, expr):
    cell = k.execute(f"print(repr(({expr})))")
    assert not cell.errors(), cell.errors()
    return cell.text("stdout").strip()


def notices(cell):
    return [line for line in cell.text().splitlines() if "--result" in line]


def test_plain_values_and_worker_lists(k):
    cell = k.execute("%%spawn --result answer\nx = 6\nx * 7")
    assert not notices(cell)
    assert value_of(k, "answer") == "42"
    k.execute("%%spawn --result per_worker -n 3\nproc.worker * 10")
    assert value_of(k, "per_worker") == "[0, 10, 20]"
    k.execute("%%spawn --result nothing\nx = 1")  # no last expression: None, as the cell shows
    assert value_of(k, "nothing") == "None"
    k.execute("%%spawn --result redirected --redirect --pipe none\nimport os\nos.system('echo hi')\n'via ' + 'redirect'")
    assert value_of(k, "redirected") == "'via redirect'"


def test_notebook_classes_closures_and_large_arrays(k):
    k.execute("class Point:\n    def __init__(self, x): self.x = x\noffset = 5")
    k.execute("%%spawn --result made\nclass Local:\n    y = 2\n(Point(offset), lambda z: z + offset, Local())")
    assert value_of(k, "made[0].x, made[1](1), made[2].y") == "(5, 6, 2)"
    if importlib.util.find_spec("numpy") is not None:  # the kernel runs this same interpreter
        k.execute("%%spawn --result arr\nimport numpy as np\nnp.arange(20_000_000, dtype=np.int64)")
        assert value_of(k, "int(arr.sum()), arr.shape") == "(199999990000000, (20000000,))"
    k.execute("%%spawn --result blob\nbytes(range(256)) * 200_000")
    assert value_of(k, "len(blob), blob[-1]") == "(51200000, 255)"


def test_failures_bind_nothing_and_say_why(k):
    k.execute("for name in ('gone1', 'gone2', 'gone3', 'gone4'): globals().pop(name, None)")
    cell = k.execute("%%spawn --result gone1\nraise ValueError('no good')")
    assert "it raised ValueError: no good" in cell.text()
    cell = k.execute("%%spawn --result gone2\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert "killed by SIGKILL without sending a value" in cell.text()
    cell = k.execute("%%spawn --result gone3 --timeout 1\nimport time\ntime.sleep(60)")
    assert "it timed out (--timeout) and was killed by SIGTERM" in cell.text()
    cell = k.execute("%%spawn --result gone4\nimport threading\nthreading.Lock()")
    assert "of type _thread.lock, could not be serialised" in cell.text()
    assert value_of(k, "[n for n in ('gone1', 'gone2', 'gone3', 'gone4') if n in globals()]") == "[]"


def test_a_value_over_the_limit_is_refused(k):
    k.execute("%config ProcMagics.result_limit = 10000")
    try:
        cell = k.execute("%%spawn --result huge\nb'x' * 100_000")
    finally:
        k.execute("%config ProcMagics.result_limit = 4 * 1024**3")
    assert "of type bytes, is 97.7 KB, over the limit of 9.8 KB" in cell.text()
    assert value_of(k, "'huge' in globals()") == "False"


def test_some_workers_failing_binds_nothing_and_names_them(k):
    cell = k.execute("%%spawn --result partial -n 3 --name parts\nimport os\nif proc.worker == 1:\n    os._exit(4)\nproc.worker + 100")
    text = cell.text()
    assert "worker 1 sent no value: it exited 4 without sending a value" in text
    assert "1 of 3 workers failed; the values of workers [0, 2] are in procmagic.get('parts')[i].result" in text
    assert value_of(k, "'partial' in globals()") == "False"
    assert value_of(k, "__import__('procmagic') and [__import__('procmagic').get('parts')[i].result for i in (0, 2)]") == "[100, 102]"


def test_background_binds_when_it_ends_and_on_the_handle(k):
    k.execute("%%spawn --bg --result later --out later_proc --name later\nimport time\ntime.sleep(0.3)\n'done later'")
    check = k.execute("%wait later\nprint(later, later_proc.result)")
    assert "done later done later" in check.text()


def test_bad_variable_names_are_refused(k):
    cell = k.execute("%%spawn --result 1x\n1")
    assert cell.reply["status"] == "error" and "--result must name a Python variable (an identifier, not a keyword), not '1x'" in cell.text()
