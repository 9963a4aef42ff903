"""The ``-v`` progress lines (stderr) and the ``-X`` protocol transcript (a file, appended to). Never any secret.

The transcript is created 0600. Each SMTP session starts with a header line (date, pid, server) and every line
carries a time stamp, so that the transcripts of several runs appended to one file can be told apart. What the run
says before a session's header (``# delivering to ...``) is held until the header, or the next line, is written: it
belongs to the session it announces.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from esmtp.errors import ConfigError
from esmtp.progname import printable


class Trace:
    """Writes ``C:``/``S:`` protocol lines to the transcript, and to stderr when verbose. AUTH payloads are masked."""

    def __init__(self, *, verbose: int = 0, transcript_path: str | None = None) -> None:
        self.verbose = verbose
        self._file: TextIO | None = None
        #: Transcript comments (stamped) waiting for the next session header or line: see the module docstring.
        self._held: list[str] = []
        if transcript_path:
            try:
                fd = os.open(transcript_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._file = open(fd, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            except OSError as error:
                raise ConfigError(f"cannot open the -X transcript {transcript_path}: {error.strerror}") from error

    @property
    def active(self) -> bool:
        return bool(self.verbose or self._file)

    @staticmethod
    def _stamped(line: str) -> str:
        now = time.time()
        return f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {line}\n"

    def _emit(self, line: str, *, hold: bool = False) -> None:
        line = printable(line)  # a server's reply may hold ESC, BEL, CR: never raw on the terminal
        if self._file is not None:
            self._held.append(self._stamped(line))
            if not hold:
                self._release()
        if self.verbose:
            sys.stderr.write(line + "\n")

    def _release(self) -> None:
        if self._file is not None and self._held:
            self._file.write("".join(self._held))
            self._file.flush()
        self._held.clear()

    def session(self, server: str) -> None:
        """A new SMTP session with ``server`` starts: a header line in the transcript (date, pid, server), then the
        comments held for it."""
        if self._file is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
            self._file.write(f"=== {stamp} pid {os.getpid()} session with {server}\n")
            self._release()

    def info(self, text: str) -> None:
        """A progress line (shown with ``-v``; written to the transcript as a comment, held until the next session
        header or line)."""
        if self.active:
            self._emit(f"# {text}", hold=True)

    def client(self, line: str) -> None:
        if self.active:
            self._emit(f"C: {line}")

    def server(self, code: int, text: str) -> None:
        if self.active:
            lines = text.split("\n") or [""]
            for index, part in enumerate(lines):
                separator = "-" if index < len(lines) - 1 else " "
                self._emit(f"S: {code}{separator}{part}")

    def close(self) -> None:
        self._release()
        if self._file is not None:
            self._file.close()
            self._file = None
