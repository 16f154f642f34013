"""Checks of the magics' option values that argparse cannot make: each bad value gets a
``UsageError`` that says the rule, the value and the magic's usage line (used by ``magics.py``)."""

from __future__ import annotations

from typing import Any, Callable

from IPython.core.error import UsageError

__all__ = ["timeout_option", "queue_key", "check_name", "usage"]


def timeout_option(value: str | None, magic: Any) -> float | None:
    """--timeout SECONDS: a positive number, else UsageError with the magic's usage line."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number != number or number == float("inf"):
        raise UsageError(f"--timeout must be a positive number of seconds, not {value!r}\n{usage(magic)}")
    return number


_NAME_MAX = 64


def queue_key(text: str, bad: Callable[[str], UsageError]) -> int:
    """--queue KEY: a SysV key in decimal or hex, as ``ipcs`` prints it (``0x81cbe64a``: keys of
    2**31 and more are key_t's negative values, as sysv_ipc gives them)."""
    try:
        key = int(text, 0)
    except ValueError:
        raise bad(f"--queue KEY must be an integer key (decimal, or hex as ipcs prints it: 0x81cbe64a), "
                  f"not {text!r}") from None
    if 2**31 <= key < 2**32:
        key -= 2**32
    if not -(2**31) <= key < 2**31:
        raise bad(f"--queue KEY must fit in 32 bits (ipcs shows keys from 0x00000001 to 0xfffffffe), got {text!r}")
    if key == 0:
        raise bad("--queue KEY must not be 0 (IPC_PRIVATE); for a private queue give --queue without a key")
    if key == -1:
        raise bad("--queue KEY 0xffffffff (-1) is reserved by procmagic for a private queue: choose another key")
    return key


def check_name(name: str, bad: Callable[[str], UsageError]) -> None:
    """--name: checked before forking, since it names the child's log file and its process title."""
    if not name.strip() or name.isdigit():
        raise bad(f"--name must be a non-empty name that is not a number (numbers are ids), got {name!r}")
    if len(name) > _NAME_MAX:
        raise bad(f"--name must be at most {_NAME_MAX} characters (it names files and process titles), "
                  f"got {len(name)}: {name[:20]!r}...")
    odd = sorted({c for c in name if c in "/\\" or not c.isprintable()})
    if odd:
        raise bad(f"--name must not contain {', '.join(repr(c) for c in odd)} (it names files; workers get "
                  f"NAME/0, NAME/1 by themselves), got {name!r}")


def usage(magic: Any) -> str:
    parser = getattr(magic, "parser", None)
    if parser is None:
        return ""
    # IPython's formatter starts usage with "::" (reST); show it the way argparse would
    lines = [line.strip() for line in parser.format_usage().replace("::", "").strip().splitlines()]
    return "usage: " + " ".join(line for line in lines if line)
