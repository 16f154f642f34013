"""Many children ending at the same moment must never hang the kernel (docs/reliability.md).

The first wave hung for good here: every ``--bg`` panel closed its widget and published its
final snapshot from the IOPub thread, through ipykernel's own event pipe, which only that
thread drains (docs/reliability.md, "Publishing from the IOPub thread").
"""

from __future__ import annotations

import time

import pytest

from .conftest import SOAK


@pytest.mark.timeout(300 * SOAK)
def test_many_bg_cells_ending_together_leave_the_kernel_answering(kernel, figure):
    cells = 128 * SOAK
    # every child sleeps until END_AT (its copy of the notebook's variable), so they all end at
    # the same instant: time enough to start them all and for the hub to build their widgets
    kernel.execute(f"import time\nEND_AT = time.time() + {10 + cells * 0.1}")
    started = time.monotonic()
    msgs = [kernel.execute(f"%%spawn --bg --name end{i}\nimport time\nwhile time.time() < END_AT: time.sleep(0.01)\nprint('bye {i}')",
                           timeout=120) for i in range(cells)]
    figure("cells started", cells, "cells")
    figure("seconds to start them", round(time.monotonic() - started, 1), "s")
    assert all(c.reply["status"] == "ok" for c in msgs)

    def has_widget(msg_id: str) -> bool:
        return any(m["msg_type"] == "update_display_data"
                   and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
                   for m in kernel.outputs(msg_id))

    # the hub builds each --bg panel's widget on the IOPub thread, the slow ones every few
    # seconds (on ipykernel 6 fewer panels get one: wait until their number stops growing)
    seen, steady_since = -1, time.monotonic()
    while time.monotonic() - steady_since < 5 and seen < cells:
        kernel.collect_until(lambda: False, timeout=1)
        now = sum(has_widget(c.msg_id) for c in msgs)
        if now != seen:
            seen, steady_since = now, time.monotonic()
    figure("panels with a live widget", seen, "panels")
    assert seen > 0
    end_at = float(kernel.execute("print(END_AT)").text())
    time.sleep(max(0.0, end_at - time.time() + 0.2))
    sent = time.monotonic()
    probe = kernel.execute("1+1", timeout=120)
    figure("execute round trip as they end", round(time.monotonic() - sent, 2), "s")
    assert probe.reply["status"] == "ok"
    assert kernel.collect_until(
        lambda: all(f"bye {i}" in kernel.stream_text(c.msg_id) and "exited 0" in kernel.stream_text(c.msg_id)
                    for i, c in enumerate(msgs)), timeout=120)
    probe = kernel.execute("1+1", timeout=60)
    assert probe.reply["status"] == "ok"


def test_thousands_of_sends_in_one_iopub_iteration_do_not_block_it(kernel, figure):
    """The rule itself: 5,000 sends through kernel.iopub_socket from one callback on the IOPub
    thread (more than its event pipe holds: about 2,000) leave the kernel answering."""
    burst = kernel.execute(
        "import threading\nk = get_ipython().kernel\nhdr = k.get_parent()\ndone = threading.Event()\n"
        "def burst():\n"
        "    for i in range(5000):\n"
        "        k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': ''}, parent=hdr)\n"
        "    done.set()\n"
        "k.iopub_thread.io_loop.asyncio_loop.call_soon_threadsafe(burst)\n"
        "print('burst ran:', done.wait(60))")
    assert "burst ran: True" in burst.text()
    assert kernel.execute("1+1", timeout=60).reply["status"] == "ok"
    got = sum(1 for m in kernel.outputs(burst.msg_id) if m["msg_type"] == "stream" and m["content"]["text"] == "")
    figure("empty sends of the burst that reached the client (PUB drops past its high-water mark)", got, "messages")
    undone = kernel.execute("%unload_ext procmagic\nprint('schedule' in vars(k.iopub_thread))")
    assert "False" in undone.text()  # %unload_ext gives ipykernel its own method back
