"""Every bad option and setting (docs/reliability.md): a clear UsageError or TraitError, nothing
forked, the old setting kept; and the options that used to be refused or silently accepted."""

from __future__ import annotations

import sysv_ipc

_BAD_OPTIONS = {
    "--pipe pipe": "--pipe must be stream, dgram or none",
    "-n 0": "-n must be from 1 to 1024",
    "-n 5000": "-n must be from 1 to 1024",
    "-n x": "invalid int value",
    "--timeout -1": "--timeout must be a positive number",
    "--timeout nan": "--timeout must be a positive number",
    "--timeout inf": "--timeout must be a positive number",
    "--signal-on-interrupt SIGNOPE": "--signal-on-interrupt",
    "--signal-on-interrupt 0": "must be a real signal",
    "--queue banana": "--queue KEY must be an integer key",
    "--queue 0": "must not be 0",
    "--queue 0x1ffffffff": "must fit in 32 bits",
    "--queue 0xffffffff": "reserved by procmagic",
    "--out class": "--out must name a Python variable (an identifier, not a keyword)",
    "--out 1x": "--out must name a Python variable",
    "--result for": "--result must name a Python variable",
    "--name " + "n" * 300: "--name must be at most 64 characters",
    "--name a/b": "--name must not contain '/'",
    "--name 42": "not a number",
    "--bogus": "unrecognized arguments",
}

_BAD_SETTINGS = {
    "output_cap = 10": "output_cap must be at least 1024",
    "log_limit = 5": "log_limit must be at least 1024",
    "term_grace = -1": "term_grace must be a finite number of seconds >= 0",
    "interrupt_grace = float('inf')": "interrupt_grace must be a finite number",
    "flush_interval = float('nan')": "flush_interval must be a finite number",
    "drain_timeout = 'soon'": "",  # the trait's own type check
    "show_status = 'bogus'": "show_status must be 'all', 'failures' or 'none'",
    "history = -3": "history must be a number of children >= 0",
}


def _children(kernel) -> int:
    return int(kernel.execute("import procmagic\nprint(len(procmagic.procs()))").text())


def test_every_bad_option_is_refused_before_forking(kernel, figure):
    before = _children(kernel)
    for option, message in _BAD_OPTIONS.items():
        cell = kernel.execute(f"%%spawn {option}\nprint('forked')")
        assert cell.reply["status"] == "error" and cell.reply["ename"] == "UsageError", (option, cell.reply)
        assert message in cell.reply["evalue"], (option, cell.reply["evalue"])
        assert "usage: %spawn" in cell.reply["evalue"] or "usage:" in cell.reply["evalue"]
        assert "forked" not in cell.text()
    assert _children(kernel) == before
    figure("bad options refused without forking", len(_BAD_OPTIONS), "options")


def test_every_bad_setting_is_refused_and_the_old_value_kept(kernel, figure):
    names = sorted({setting.split(" =")[0] for setting in _BAD_SETTINGS})
    before = kernel.execute(f"m = [c for c in get_ipython().configurables if type(c).__name__ == 'ProcMagics'][0]\n"
                            f"print(repr([getattr(m, n) for n in {names!r}]))").text()
    for setting, message in _BAD_SETTINGS.items():
        cell = kernel.execute(f"%config ProcMagics.{setting}")
        said = cell.text() + "".join(e["evalue"] for e in cell.errors())
        assert message in said or not message, (setting, said)
    after = kernel.execute(f"print(repr([getattr(m, n) for n in {names!r}]))").text()
    assert after == before
    assert "exited 0" in kernel.execute("%%spawn\nprint('still fine')").text()
    figure("bad settings refused, old values kept", len(_BAD_SETTINGS), "settings")


def test_a_hex_key_as_ipcs_prints_it_is_accepted(kernel):
    cell = kernel.execute("%%spawn --queue 0x81cbe64a --out hexq\nprint(proc.stat_queue().key)")
    assert cell.reply["status"] == "ok", cell.reply
    assert str(0x81CBE64A - 2**32) in cell.text()
    kernel.execute("hexq.free_queue()")


def test_joining_a_foreign_queue_open_to_others_warns_with_its_owner_and_mode(kernel, figure):
    mq = sysv_ipc.MessageQueue(0x5EED0A11, sysv_ipc.IPC_CREX, mode=0o666)
    try:
        cell = kernel.execute("%%spawn --queue 0x5eed0a11\nprint('joined')")
        err = cell.text("stderr")
        assert "--queue 0x5eed0a11 joins an existing queue" in err
        assert "procmagic did not create it" in err and "other users may read or write" in err
        assert "mode 0666" in err and f"owner uid {mq.uid}" in err
        assert "joined" in cell.text()
        figure("foreign queue joined with a warning", 1, "queue")
    finally:
        mq.remove()
    mine = kernel.execute("%%spawn --queue 0x5eed0a12 --out own\nprint('created')")
    assert "warning" not in mine.text("stderr")
    again = kernel.execute("%%spawn --queue 0x5eed0a12\nprint('again')")  # procmagic's own, 0600
    assert "warning" not in again.text("stderr")
    kernel.execute("own.free_queue()")
