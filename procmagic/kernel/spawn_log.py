"""A spawn's log of its output: where the text past the output cap is kept.

The router (:mod:`procmagic.kernel.router`) writes every piece of a spawn's output here as well
as to the notebook; once the cap is reached, only the log gets it. The log is a private file
(created exclusively, never through a symlink, mode 0600, see :mod:`procmagic.core.runtime`)
holding at most ``limit`` characters. Its first ``HEAD`` characters wait in memory: a spawn that
prints little never touches the disk, and a spawn that never reaches the cap leaves no file.
What goes wrong with the file (the limit, a full disk) is said through ``notice``, never raised.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ..core import runtime
from ..core.status import format_size

__all__ = ["SpawnLog", "HEAD"]

HEAD = 64 * 1024  # characters of a log kept in memory before the file is created


class SpawnLog:
    """The log file of one spawn. ``name`` None: no log at all (writes are dropped).

    ``state`` is ``"unopened"`` (text may wait in memory), ``"open"``, ``"full"`` (``limit``
    reached: later text is not kept) or ``"failed"`` (the file could not be written)."""

    def __init__(self, directory: str | None, name: str | None, limit: int, notice: Callable[[str], None]) -> None:
        self.directory = directory  # None: this process's private directory (core.runtime)
        self.name = name
        self.limit = limit
        self.path: str | None = None  # set once the file is created
        self.state = "unopened"
        self._notice = notice  # the router publishes it with its next flush, outside the cap
        self._file: Any = None
        self._written = 0
        self._head: list[str] = []
        self._head_size = 0

    def write(self, text: str) -> None:
        """Keep ``text``: in memory while the log is short, then in the file, up to ``limit``."""
        if self.name is None or self.state in ("full", "failed"):
            return
        if self.state == "unopened":
            if self._head_size + len(text) <= HEAD:
                self._head.append(text)
                self._head_size += len(text)
                return
            if not self.open():
                return
        self._write_file(text)

    def open(self) -> bool:
        """Create the file and write what waited in memory; False when it cannot be written."""
        if self.state != "unopened" or self.name is None:
            return self.state == "open"
        try:
            directory = self.directory or runtime.process_dir()
            if self.directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            self.path, self._file = runtime.open_private(directory, self.name, "w", encoding="utf-8", errors="replace")
        except OSError as exc:
            self._failed(exc)
            return False
        self.state = "open"
        head, self._head, self._head_size = "".join(self._head), [], 0
        if head:
            self._write_file(head)
        return self.state == "open"

    def _write_file(self, text: str) -> None:
        try:
            room = self.limit - self._written
            if len(text) >= room:
                self._file.write(text[:room])
                self._file.write(f"\n[procmagic] this log reached its limit of {format_size(self.limit)} "
                                 "(%config ProcMagics.log_limit); later output is not kept\n")
                self._written = self.limit
                self._file.close()
                self._file, self.state = None, "full"
                self._notice(f"[procmagic] the log {self.path} reached its limit of {format_size(self.limit)} "
                             "(%config ProcMagics.log_limit); output past it is not kept there\n")
                return
            self._file.write(text)
            self._written += len(text)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.state = "failed"
        self._head, self._head_size = [], 0
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        where = self.path or os.path.join(self.directory or "the private runtime directory", self.name or "")
        self._notice(f"[procmagic] cannot write the log {where}: {exc.strerror or exc}; output "
                     "past the cap is not kept\n")

    def close(self, keep: bool) -> None:
        """Close the file; without ``keep`` (the notebook has all the output) delete it too."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None and not keep:
            try:
                os.unlink(self.path)
            except OSError:
                pass
