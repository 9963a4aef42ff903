"""SMTP DATA encoding, done once and on the stream: CRLF line endings and dot-stuffing (RFC 5321 4.5.2).

Every line ending on the wire is CRLF: a bare LF and a lone CR both become CRLF. A lone CR passed through would let
a message carry ``<CR>.<CR><LF>``, which some servers take as the end of the data: whatever follows it would be read
as SMTP commands (SMTP smuggling, 2023). RFC 5321 2.3.8 forbids CR and LF outside CRLF anyway.

:class:`LineEndings` is the first half on its own: what the receiver holds once it has undone the dot-stuffing, which
is what a DKIM signature must cover (the ``dkim`` plugin canonicalizes its output).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class LineEndings:
    """Turns raw message chunks into CRLF-terminated lines: bare LF and lone CR become CRLF.

    A CR that ends a chunk is held back until the next chunk says whether an LF follows it, so every chunk returned
    ends with a complete CRLF or with no line ending at all.
    """

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def convert(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # It may be the first half of a CRLF split across chunks: decide with the next chunk.
            chunk = chunk[:-1]
            self._pending_cr = True
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        """What is still held: the line ending of a message whose last byte is a CR (that CR ends its last line)."""
        if self._pending_cr:
            self._pending_cr = False
            return b"\r\n"
        return b""


def crlf_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with CRLF line endings (:class:`LineEndings`), without dot-stuffing and without the final dot."""
    endings = LineEndings()
    for chunk in chunks:
        if converted := endings.convert(chunk):
            yield converted
    if rest := endings.finish():
        yield rest


class DataEncoder:
    """Turns raw message chunks into DATA bytes. Bare LF and lone CR become CRLF (esmtp 1.2 passed a lone CR on)."""

    __slots__ = ("_at_line_start", "_endings")

    def __init__(self) -> None:
        self._at_line_start = True
        self._endings = LineEndings()

    def encode(self, chunk: bytes) -> bytes:
        data = self._endings.convert(chunk).replace(b"\n.", b"\n..")
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        if data:
            self._at_line_start = data.endswith(b"\n")
        return data

    def finish(self) -> bytes:
        """The end of the data: a final line break if the message lacked one, then the terminating dot."""
        if self._endings.finish():  # a CR ending the message ends its last line
            self._at_line_start = True
            return b"\r\n.\r\n"
        return (b"" if self._at_line_start else b"\r\n") + b".\r\n"


def encode_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encoded DATA chunks; the last one carries the terminating dot (one write, so no Nagle stall before it)."""
    encoder = DataEncoder()
    previous: bytes | None = None
    for chunk in chunks:
        encoded = encoder.encode(chunk)
        if previous is not None:
            yield previous
        previous = encoded
    yield (previous or b"") + encoder.finish()
