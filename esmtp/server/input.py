"""``sendmail -bs``: reading the caller's input, command lines and DATA, within limits and an idle timeout."""

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


class LineReader:
    """Lines from a file descriptor, each with its line ending (LF or CRLF, as sent), with a length limit."""

    def __init__(self, fd: int, timeout: float, before_wait: Callable[[], None]) -> None:
        self.fd = fd
        self.timeout = timeout
        self.before_wait = before_wait  # called before blocking: pending replies must go out first (RFC 2920)
        self.buffer = bytearray()
        self.eof = False
        #: Whether the last line read (or skipped) ended in CRLF: only ``<CRLF>.<CRLF>`` ends DATA.
        self.crlf = True

    def _fill(self) -> None:
        import select

        self.before_wait()
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise IdleTimeout
        chunk = os.read(self.fd, 1 << 16)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def line(self, limit: int) -> bytes:
        """The next line, LF included. Raises EOFError at the end of input (a last line without LF is dropped),
        and Reject after skipping a line longer than ``limit`` (not counting its line ending)."""
        start = 0
        skipped = cr_before = False
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                self.crlf = line.endswith(b"\r\n") or (line == b"\n" and cr_before)
                if skipped or len(line.rstrip(b"\r\n")) > limit:
                    raise Reject(f"500 5.5.2 Line too long (more than {limit} characters)")
                return line
            if self.eof:
                raise EOFError
            if len(self.buffer) > limit + 2:
                cr_before = self.buffer.endswith(b"\r")
                self.buffer.clear()  # keep skipping to the end of this line, never holding it
                start, skipped = 0, True
            else:
                start = len(self.buffer)
            self._fill()


class DataStream:
    """The DATA of one message as a file for :func:`read_message`: dot-unstuffed, ending at the lone dot.

    Only ``<CRLF>.<CRLF>`` ends it (RFC 5321 4.1.1.4): a lone dot with a bare LF on either side is text, kept with
    its dot (stuffed again on the way out), so that the lines after it can never be read as commands (SMTP
    smuggling, 2023). A lone CR is no line ending here at all.

    Enforces the line-length, header-size and message-size limits. Raises Reject for a limit (the rest of the data
    must then be skipped with :meth:`skip`), EOFError when the input ends before the dot, IdleTimeout.
    """

    def __init__(self, reader: LineReader, max_size: int) -> None:
        self.reader = reader
        self.max_size = max_size
        self.size = 0
        self.in_header = True
        self.header_size = 0
        self.done = False
        self.pending = b""
        #: Whether the line before the next one ended in CRLF (the DATA command's own line first).
        self.after_crlf = reader.crlf

    def _next_line(self) -> bytes:
        if self.done:
            return b""
        too_long = f"500 5.5.2 Message has a line longer than {TEXT_LIMIT} characters (RFC 5321 4.5.3.1.6)"
        after_crlf = self.after_crlf
        try:
            line = self.reader.line(TEXT_LIMIT + 1)  # a stuffed dot does not count
        except Reject:
            self.after_crlf = self.reader.crlf
            raise Reject(too_long) from None
        self.after_crlf = self.reader.crlf
        if line == b".\r\n" and after_crlf:
            self.done = True
            return b""
        if line.startswith(b".") and line not in (b".\r\n", b".\n"):
            line = line[1:]
        elif len(line.rstrip(b"\r\n")) > TEXT_LIMIT:
            raise Reject(too_long)
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
        while parts[-1] and total < size and self.reader.buffer.find(b"\n") >= 0:
            parts.append(self._next_line())  # only lines already buffered: no wait in the middle of a chunk
            total += len(parts[-1])
        return b"".join(parts)

    def skip(self) -> None:
        """Read and drop the rest of the data, up to the lone dot."""
        while not self.done:
            try:
                self._next_line()
            except Reject:
                continue
