"""SMTP DATA encoding, done once and on the stream: CRLF line endings and dot-stuffing (RFC 5321 4.5.2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class DataEncoder:
    """Turns raw message chunks into DATA bytes. Bare LF becomes CRLF; a lone CR is passed through (as esmtp 1.2)."""

    __slots__ = ("_at_line_start", "_pending_cr")

    def __init__(self) -> None:
        self._at_line_start = True
        self._pending_cr = False

    def encode(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # It may be the first half of a CRLF split across chunks: decide with the next chunk.
            chunk = chunk[:-1]
            self._pending_cr = True
        data = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\n.", b"\n..")
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        if data:
            self._at_line_start = data.endswith(b"\n")
        return data

    def finish(self) -> bytes:
        """The end of the data: a final line break if the message lacked one, then the terminating dot."""
        tail = b""
        if self._pending_cr:
            tail = b"\r"
            self._pending_cr = False
            self._at_line_start = False
        if not self._at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


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
