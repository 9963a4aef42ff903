"""Reading an SMTP client's input, command lines and DATA, within limits and timeouts.

The line splitting (:class:`LineBuffer`) and the DATA rules (:class:`DataLines`) do no I/O, so that the ``-bs``
server on a pipe (:class:`LineReader`, blocking) and the listener on sockets (:mod:`esmtp.server.listener`, asyncio)
apply the same limits the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from esmtp.message import MAX_HEADER_BYTES

#: RFC 5321 4.5.3.1.6: a text line is at most 998 characters before its line ending.
TEXT_LIMIT = 998


class Reject(Exception):
    """A command or a message is refused with ``reply`` (one or more lines, without CRLF)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class IdleTimeout(Exception):
    """The caller sent nothing for too long."""


class LineBuffer:
    """Bytes received so far, cut into lines (each with its line ending, LF or CRLF as sent) with a length limit.

    A line longer than the limit is dropped as it arrives, never held: the buffer stays below the limit plus one
    read's worth of bytes, whatever the peer sends.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        #: Whether the last line read (or skipped) ended in CRLF: only ``<CRLF>.<CRLF>`` ends DATA.
        self.crlf = True
        self._start = 0
        self._skipping = False
        self._cr_before = False

    def feed(self, chunk: bytes) -> None:
        """Add received bytes; ``b""`` is the end of input."""
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def has_line(self) -> bool:
        return self.buffer.find(b"\n") >= 0

    def line(self, limit: int) -> bytes | None:
        """The next complete line, or None when more input is needed. Raises EOFError at the end of input (a last
        line without LF is dropped), and Reject once a line longer than ``limit`` (not counting its line ending)
        has been skipped to its end."""
        end = self.buffer.find(b"\n", self._start)
        if end >= 0:
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            self.crlf = line.endswith(b"\r\n") or (line == b"\n" and self._cr_before)
            skipped, self._start, self._skipping, self._cr_before = self._skipping, 0, False, False
            if skipped or len(line.rstrip(b"\r\n")) > limit:
                raise Reject(f"500 5.5.2 Line too long (more than {limit} characters)")
            return line
        if self.eof:
            raise EOFError
        if len(self.buffer) > limit + 2:
            self._cr_before = self.buffer.endswith(b"\r")
            self.buffer.clear()  # keep skipping to the end of this line, never holding it
            self._start, self._skipping = 0, True
        else:
            self._start = len(self.buffer)
        return None


class LineReader(LineBuffer):
    """Lines from a file descriptor (the ``-bs`` pipe), waiting at most ``timeout`` seconds for each read."""

    def __init__(self, fd: int, timeout: float, before_wait: Callable[[], None]) -> None:
        super().__init__()
        self.fd = fd
        self.timeout = timeout
        self.before_wait = before_wait  # called before blocking: pending replies must go out first (RFC 2920)

    def _fill(self) -> None:
        import select

        self.before_wait()
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise IdleTimeout
        self.feed(os.read(self.fd, 1 << 16))

    def line(self, limit: int) -> bytes:
        """The next line, LF included (see :meth:`LineBuffer.line`); blocks for more input as needed."""
        while True:
            line = super().line(limit)
            if line is not None:
                return line
            self._fill()


class DataLines:
    """The DATA rules, one received line at a time: dot-unstuffing, the end at ``<CRLF>.<CRLF>``, and the
    line-length, header-size and message-size limits. :meth:`take` raises Reject for a limit (the rest of the data
    must then be read and dropped up to the dot); a line too long to read is reported with :meth:`skipped`.

    Only ``<CRLF>.<CRLF>`` ends the data (RFC 5321 4.1.1.4): a lone dot with a bare LF on either side is text, kept
    with its dot (stuffed again on the way out), so that the lines after it can never be read as commands, here or
    by the smarthost (SMTP smuggling, 2023). A lone CR is no line ending here at all.
    """

    #: The line limit to read DATA lines with: a stuffed dot does not count.
    READ_LIMIT = TEXT_LIMIT + 1

    def __init__(self, max_size: int, *, after_crlf: bool = True) -> None:
        self.max_size = max_size
        #: Whether the line before the next one ended in CRLF (the DATA command's own line first).
        self.after_crlf = after_crlf
        self.size = 0
        self.in_header = True
        self.header_size = 0
        self.done = False

    @staticmethod
    def too_long() -> Reject:
        return Reject(f"500 5.5.2 Message has a line longer than {TEXT_LIMIT} characters (RFC 5321 4.5.3.1.6)")

    def skipped(self, crlf: bool) -> None:
        """A line too long to read was skipped; ``crlf``: whether it ended in CRLF."""
        self.after_crlf = crlf

    def take(self, line: bytes) -> bytes:
        """The message line that the received ``line`` stands for; ``b""`` for the final dot (then ``done``)."""
        after_crlf, self.after_crlf = self.after_crlf, line.endswith(b"\r\n")
        if line == b".\r\n" and after_crlf:
            self.done = True
            return b""
        if line.startswith(b".") and line not in (b".\r\n", b".\n"):
            line = line[1:]
        elif len(line.rstrip(b"\r\n")) > TEXT_LIMIT:
            raise self.too_long()
        self.size += len(line)
        if self.size > self.max_size:
            raise Reject(f"552 5.3.4 Message larger than the maximum size of {self.max_size} bytes")
        if self.in_header:
            self.header_size += len(line)
            if line in (b"\r\n", b"\n"):
                self.in_header = False
            elif self.header_size > MAX_HEADER_BYTES:
                raise Reject(f"552 5.3.4 Header block larger than {MAX_HEADER_BYTES // 1024} KiB")
        return line


class DataStream:
    """The DATA of one message as a file for :func:`read_message`, read from a blocking :class:`LineReader`.

    Raises Reject for a limit (the rest of the data must then be skipped with :meth:`skip`), EOFError when the input
    ends before the dot, IdleTimeout.
    """

    def __init__(self, reader: LineReader, max_size: int) -> None:
        self.reader = reader
        self.lines = DataLines(max_size, after_crlf=reader.crlf)
        self.pending = b""

    def _next_line(self) -> bytes:
        if self.lines.done:
            return b""
        try:
            line = self.reader.line(DataLines.READ_LIMIT)
        except Reject:
            self.lines.skipped(self.reader.crlf)
            raise DataLines.too_long() from None
        return self.lines.take(line)

    def readline(self, size: int = -1) -> bytes:
        line = self.pending or self._next_line()
        if 0 <= size < len(line):
            line, self.pending = line[:size], line[size:]
        else:
            self.pending = b""
        return line

    def read(self, size: int = -1) -> bytes:
        parts = [self.readline()]
        total = len(parts[0])
        while parts[-1] and total < size and self.reader.has_line():
            parts.append(self._next_line())  # only lines already buffered: no wait in the middle of a chunk
            total += len(parts[-1])
        return b"".join(parts)

    def skip(self) -> None:
        """Read and drop the rest of the data, up to the lone dot."""
        while not self.lines.done:
            try:
                self._next_line()
            except Reject:
                continue
