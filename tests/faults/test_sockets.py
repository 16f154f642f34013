"""A child holds no connection to or from any of the kernel's ports (docs/reliability.md):
neither the kernel's listening sockets, nor the connections a frontend made (a second frontend
connecting after %load_ext), nor ipykernel 7's own client connection to its shell port."""

from __future__ import annotations

from jupyter_client import BlockingKernelClient

from .conftest import SOAK

# Run in the child: every TCP socket it holds whose local or remote port is one of PORTS.
_HELD = """
import os
def table():
    rows = {}
    for name in ('/proc/self/net/tcp', '/proc/self/net/tcp6'):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            rows[f[9]] = (int(f[1].rsplit(':', 1)[1], 16), int(f[2].rsplit(':', 1)[1], 16))
    return rows
rows = table()
held = []
for fd in os.listdir('/proc/self/fd'):
    try:
        link = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        continue
    if link.startswith('socket:[') and link[8:-1] in rows:
        local, remote = rows[link[8:-1]]
        if local in PORTS or remote in PORTS:
            held.append((int(fd), local, remote))
print('held kernel sockets:', len(held), sorted(held))
"""


def _ports(kernel) -> set[int]:
    info = kernel.km.get_connection_info()
    ports = {info[k] for k in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")}
    pipe = kernel.execute("print(get_ipython().kernel.iopub_thread._pipe_port)").text().strip()
    if pipe.isdigit():
        ports.add(int(pipe))
    return ports


def test_a_child_holds_no_socket_of_any_kernel_port_even_after_a_second_frontend(kernel, figure):
    ports = _ports(kernel)
    second = BlockingKernelClient()  # a second frontend (a session of its own) connects after %load_ext
    second.load_connection_info(kernel.km.get_connection_info())
    second.start_channels()
    try:
        second.wait_for_ready(timeout=60)
        in_kernel = kernel.execute(f"PORTS = {sorted(ports)!r}\n{_HELD}").text()
        figure("kernel sockets on its ports, in the kernel", int(in_kernel.split()[3]), "sockets")
        for _ in range(2 * SOAK):
            fg = kernel.execute(f"%%spawn\nPORTS = {sorted(ports)!r}\n{_HELD}")
            assert "held kernel sockets: 0 []" in fg.text(), fg.text()
            bg = kernel.execute(f"%%spawn --bg -n 2\nPORTS = {sorted(ports)!r}\n{_HELD}")
            assert kernel.collect_until(lambda: kernel.stream_text(bg.msg_id).count("held kernel sockets: 0 []") == 2,
                                        timeout=60), kernel.stream_text(bg.msg_id)
        # a plain Process started in the kernel (no %%spawn) drops them too
        plain = kernel.execute(
            f"import procmagic\nPORTS = {sorted(ports)!r}\n"
            f"def body(p):\n    import os\n    exec({_HELD!r}, {{'PORTS': PORTS}})\n"
            "child = procmagic.Process(body, redirect=True)\nchild.start()\nchild.join(60)\n"
            "print(child.read(65536).decode())\nchild.close()")
        assert "held kernel sockets: 0 []" in plain.text(), plain.text()
        figure("kernel sockets held by a child", 0, "sockets")
    finally:
        second.stop_channels()


def test_closing_the_kernel_sockets_is_cheap(kernel, figure):
    cell = kernel.execute(
        "import time\nfrom procmagic.kernel import child_setup\n"
        "ports = child_setup.kernel_ports(get_ipython().kernel)\n"
        "t = time.perf_counter()\nfor _ in range(200): fds = child_setup.kernel_socket_fds(ports)\n"
        "cold = (time.perf_counter() - t) / 200 * 1e6\ncache = {}\nchild_setup.kernel_socket_fds(ports, cache)\n"
        "t = time.perf_counter()\nfor _ in range(200): fds = child_setup.kernel_socket_fds(ports, cache)\n"
        "print(len(fds), cold, (time.perf_counter() - t) / 200 * 1e6)")
    count, cold, warm = cell.text().split()
    assert int(count) >= 6  # at least the five listening ports and the IOPub pipe's
    figure("sockets found", int(count), "sockets")
    figure("cost of finding them with every socket new", round(float(cold)), "µs")
    figure("cost per spawn (verdicts cached by fd and inode)", round(float(warm)), "µs")
