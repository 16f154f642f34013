"""Terminal IPython (no kernel), driven through a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest


class Terminal:
    def __init__(self) -> None:
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="dumb", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor",
             "--HistoryManager.enabled=False"],
            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = ""

    def read_until(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{text!r} did not appear within {timeout} s; the screen so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    break
                self.output += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.output

    def send(self, text: str) -> None:
        """Type ``text``. A cell magic ends with two empty lines at IPython's simple prompt."""
        os.write(self.master, text.encode())

    def close(self) -> None:
        try:
            self.send("exit\n")
            self.proc.wait(timeout=20)
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        finally:
            os.close(self.master)


@pytest.fixture
def term():
    t = Terminal()
    try:
        t.read_until("In [1]:")
        yield t
    finally:
        t.close()


def test_spawn_works_in_terminal_ipython(term):
    term.send("%load_ext procmagic\n")
    term.read_until("In [2]:")
    term.send("%%spawn --redirect --name termchild\nimport os\nprint('redirected hello')\nos.system('echo from-system')\n\n\n")
    term.read_until("In [3]:")
    screen = term.output
    assert "redirected hello" in screen and "from-system" in screen
    assert "termchild" in screen and "exited 0" in screen
    term.send("%%spawn\nprint('plain hello')\n6 * 7\n\n\n")
    term.read_until("In [4]:")
    assert "plain hello" in term.output and "42" in term.output
    term.send("%%spawn --bg --redirect --name later\nprint('background line')\n\n\n")
    term.read_until("In [5]:")
    term.send("%wait later\n")
    term.read_until("In [6]:")
    assert "background line" in term.output
    term.send("%procs\n")
    term.read_until("In [7]:")
    tail = term.output[term.output.rindex("%procs"):]
    assert "later" in tail and "exited 0" in tail


def test_input_and_the_debugger_read_the_terminal(term):
    term.send("%load_ext procmagic\n")
    term.read_until("In [2]:")
    term.send("%%spawn --result got\nname = input('name? ')\nname.upper()\n\n\n")
    term.read_until("name? ")
    term.send("ada\n")
    term.read_until("In [3]:")
    term.send("print('bound', got)\n")
    term.read_until("bound ADA")
    term.send("%%spawn\nx = 5\nbreakpoint()\nprint('x is', x)\n\n\n")
    term.read_until("ipdb> ")
    term.send("x = 9\n")
    term.read_until("ipdb> ")
    term.send("c\n")
    term.read_until("x is 9")
    term.read_until("In [5]:")
