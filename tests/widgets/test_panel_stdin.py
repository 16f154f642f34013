"""A --bg child's prompts on its panel: the state shows "waiting for input" / "in debugger",
and the panel's stdin box answers them (and "close stdin" ends them), in a real kernel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _text(wk, cell):
    return "".join(m["content"]["text"] for m in wk.outputs(cell.msg_id) if m["msg_type"] == "stream")


def test_the_stdin_box_answers_input_and_a_debugger(wk):
    cell = wk.execute("%%spawn --bg --name asking\nname = input('name? ')\nprint('hi', name, flush=True)\n"
                      "count = 1\nbreakpoint()\nprint('count is', count)")
    wk.execute("from procmagic.widgets import panel_of\nfrom procmagic.widgets.facts import state_of\n"
               "import procmagic\nv = panel_of('asking')\nasker = procmagic.get('asking')")
    assert wk.wait_value("state_of(asker) == 'waiting for input'")
    assert wk.wait_value("v.widget is not None and 'waiting for input' in v.widget.single.value")
    text = wk.value("v.widget.text.model_id")
    wk.set_state(text, value="ada")  # Enter in the box
    assert wk.collect_until(lambda: "hi ada" in _text(wk, cell), timeout=30)
    assert wk.wait_value("state_of(asker) == 'in debugger'")
    wk.set_state(text, value="count = 7")
    assert wk.wait_value("state_of(asker) == 'in debugger'")
    wk.set_state(text, value="c")
    assert wk.collect_until(lambda: "count is 7" in _text(wk, cell), timeout=30)
    assert wk.wait_value("asker.exitstatus and asker.exitstatus.how") == "exited 0"


def test_close_stdin_ends_a_waiting_input(wk):
    cell = wk.execute("%%spawn --bg --name closing\ntry:\n    input('more? ')\nexcept EOFError as e:\n"
                      "    print('eof:', e, flush=True)")
    wk.execute("from procmagic.widgets import panel_of\nfrom procmagic.widgets.facts import state_of\n"
               "import procmagic\nc = panel_of('closing')\ncloser = procmagic.get('closing')")
    assert wk.wait_value("state_of(closer) == 'waiting for input'")
    assert wk.wait_value("c.widget is not None")
    close = wk.value("[b.model_id for b in c.widget.owned if 'pm-close-stdin' in getattr(b, '_dom_classes', ())][0]")
    wk.click(close)
    assert wk.collect_until(lambda: "eof: stdin was closed from the notebook" in _text(wk, cell), timeout=30)
    assert wk.wait_value("closer.exitstatus and closer.exitstatus.how") == "exited 0"
