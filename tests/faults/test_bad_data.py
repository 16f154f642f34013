"""A child that writes garbage into procmagic's channel (docs/reliability.md): the spawn's cell
says so, the channel is closed, the child is stopped, and the kernel goes on."""

from __future__ import annotations

import pytest

_GARBAGE = {
    "unknown kind": "struct.pack('!IB', 4, ord('z')) + b'abcd'",
    "huge length": "struct.pack('!IB', 0xFFFFFFFF, ord('o'))",
    "bad message": "struct.pack('!IB', 6, ord('m')) + struct.pack('!I', 99) + b'{}'",
    "forbidden type": ("(lambda h, c: struct.pack('!IB', 4 + len(h) + len(c), ord('m')) + struct.pack('!I', len(h)) + h + c)"
                       "(b'{\"msg_type\": \"shutdown_request\"}', b'{}')"),
}


def _cell(garbage: str, bg: bool) -> str:
    return (f"%%spawn {'--bg ' if bg else ''}--name liar\nimport struct, sys, time\nprint('before', flush=True)\n"
            f"sys.stdout.buffer.raw._writer.sock.sendall({garbage})\ntime.sleep(300)")


@pytest.mark.parametrize("what", sorted(_GARBAGE))
def test_bad_frames_end_the_channel_and_stop_the_child(kernel, what, figure):
    cell = kernel.execute(_cell(_GARBAGE[what], bg=False), timeout=120)
    text = cell.text()
    assert "before" in text
    assert "bad data on the output channel of the child" in text
    assert "killed by SIGTERM" in text
    assert cell.reply["status"] == "ok"
    assert kernel.execute("1+1").reply["status"] == "ok"
    figure(f"{what}: cells the driver survived", 1, "cell")


def test_bad_frames_in_a_background_spawn(kernel):
    cell = kernel.execute(_cell(_GARBAGE["huge length"], bg=True))
    assert kernel.collect_until(lambda: "killed by SIGTERM" in kernel.stream_text(cell.msg_id), timeout=60), \
        kernel.stream_text(cell.msg_id)
    assert "bad data on the output channel of the child" in kernel.stream_text(cell.msg_id)
    assert kernel.execute("%%spawn\nprint('next')").text().startswith("next")


def test_a_child_ignoring_sigterm_is_killed_after_term_grace(kernel):
    kernel.execute("%config ProcMagics.term_grace = 0.5")
    cell = kernel.execute(
        "%%spawn --name deaf\nimport signal, struct, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"sys.stdout.buffer.raw._writer.sock.sendall({_GARBAGE['unknown kind']})\ntime.sleep(300)", timeout=120)
    assert "killed by SIGKILL" in cell.text()
