"""Standard streams a caller may have left unusable: closed, read-only, or a pipe nobody reads any more.

For a process that runs the command itself (:func:`esmtp.front.main`'s fallback, ``python -m esmtp``); never inside
the warm relay's resident process, whose descriptors 0-2 are its own and shared by every request.

GNU mailutils' ``mail`` runs its MTA with stdout a read-only pipe and stderr closed; cron and daemons close what they
like. A sendmail that has delivered must still exit 0 then, or the caller reports a failure and the user sends again
(a duplicate). So each unusable descriptor is pointed at /dev/null before anything else runs. That also keeps a file
opened later (the spool file) from landing on descriptor 1 or 2, where a stray print would write into the mail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from typing import Any, TextIO, cast

_STREAMS = ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY))


def _unusable(fd: int, writing: bool) -> bool:
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return True  # closed
    if not writing:
        return False
    if flags & os.O_ACCMODE == os.O_RDONLY:
        return True
    import select

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # A pipe or socket whose reader has gone reports an error or a hang-up: writing would only raise EPIPE.
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class ReaderMayLeave:
    """Standard output whose reader may go away before the end (``esmtp --check | head -1``): once a write or flush
    meets EPIPE, the descriptor is pointed at /dev/null and the rest is dropped, so the command finishes with its own
    exit code instead of ``internal error: BrokenPipeError``. A closed pipe on stdout is not an error of ours, and a
    message that was delivered must never exit non-zero because a reader stopped reading. Everything else is the
    wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # what was buffered goes to /dev/null now

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)


def reader_may_leave(stream: TextIO) -> TextIO:
    """``stream`` as a :class:`ReaderMayLeave` (the type a text stream's users expect)."""
    return stream if isinstance(stream, ReaderMayLeave) else cast("TextIO", ReaderMayLeave(stream))


def repair() -> None:
    """Point every unusable standard descriptor at /dev/null, give Python a stream for each one it lacks, and let
    standard output's reader leave early (:class:`ReaderMayLeave`)."""
    for fd, name, mode in _STREAMS:
        if _unusable(fd, mode != os.O_RDONLY):
            null = os.open(os.devnull, mode)
            if null != fd:  # (a closed fd is the lowest free one, so /dev/null may have landed there already)
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            stream = open(fd, "r" if mode == os.O_RDONLY else "w", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
    sys.stdout = reader_may_leave(sys.stdout)


def settle() -> None:
    """Flush stdout and stderr at the end; if a reader went away meanwhile, drop what is left instead of failing
    the run (the interpreter's own flush at exit would otherwise turn a delivered message into exit 120)."""
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            with contextlib.suppress(OSError, ValueError):
                stream.flush()  # now into /dev/null
