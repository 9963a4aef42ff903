"""DKIM canonicalization (RFC 6376 3.4) and the body hash, computed on the stream.

Everything here works on the message as the receiver holds it: CRLF line endings (:class:`esmtp.smtp.wire.LineEndings`,
the same conversion the SMTP client applies) and no dot-stuffing (transport, undone by the server). The body is fed
in chunks of any size; the memory held between chunks is bounded (a few bytes of trailing white space and a count
of empty lines), so a 100 MB body is hashed in constant memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

#: The two canonicalization algorithms (RFC 6376 3.4).
ALGORITHMS = ("simple", "relaxed")

_WSP_RUN = re.compile(rb"[ \t]+")
# In a body, only runs of two or more, and tabs, change under "relaxed": a single space stays what it is.
_WSP_TO_SPACE = re.compile(rb"[ \t]{2,}|\t")
_CRLF = b"\r\n"


def crlf(raw: bytes) -> bytes:
    """One header field (or any whole piece of text) with the line endings the wire gives it: bare LF and lone CR
    become CRLF, as :class:`esmtp.smtp.wire.LineEndings` converts them."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def header_simple(field: bytes) -> bytes:
    """``simple`` (3.4.1): the field unchanged, with its CRLF line endings."""
    field = crlf(field)
    return field if field.endswith(_CRLF) else field + _CRLF


def header_relaxed(field: bytes) -> bytes:
    """``relaxed`` (3.4.2): the name in lower case; the value unfolded, white-space runs made one space, no white
    space around the colon or at the end; then CRLF."""
    name, _, value = crlf(field).partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(_CRLF, b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + _CRLF


def canonical_header(field: bytes, algorithm: str) -> bytes:
    return header_relaxed(field) if algorithm == "relaxed" else header_simple(field)


class BodyHasher:
    """The body hash (``bh=``) of a body fed in CRLF-converted chunks, under ``simple`` or ``relaxed``.

    Empty lines are held back as a count until a line with content follows them (both algorithms drop the empty
    lines at the end of the body). Under ``relaxed``, white space at the end of a chunk is held back too (it may
    turn out to end its line, which drops it) as at most one space (a run of white space becomes one space anyway).
    """

    __slots__ = ("_content", "_empty_lines", "_relaxed", "_space", "digest")

    def __init__(self, algorithm: str, hash_name: str = "sha256") -> None:
        self._relaxed = algorithm == "relaxed"
        self.digest = hashlib.new(hash_name)
        self._empty_lines = 0  # CRLFs seen after the last content, not hashed yet
        self._space = False  # relaxed: the chunk so far ended with white space, not hashed yet
        self._content = False  # any byte other than a line ending was hashed

    def update(self, chunk: bytes) -> None:
        """Feed the next piece of the body: CRLF line endings, never a lone CR at its end."""
        if not chunk:
            return
        if self._relaxed:
            if self._space:
                chunk = b" " + chunk
                self._space = False
            kept = chunk.rstrip(b" \t")
            if len(kept) < len(chunk):
                self._space = True
                chunk = kept
            if b"\t" in chunk or b"  " in chunk:
                chunk = _WSP_TO_SPACE.sub(b" ", chunk)
            if b" \r\n" in chunk:
                chunk = chunk.replace(b" \r\n", _CRLF)
        text = chunk.rstrip(b"\r\n")
        if text:
            self._flush_empty_lines()
            self.digest.update(text)
            self._content = True
        self._empty_lines += (len(chunk) - len(text)) // 2

    def _flush_empty_lines(self) -> None:
        while self._empty_lines:
            count = min(self._empty_lines, 1 << 15)
            self.digest.update(_CRLF * count)
            self._empty_lines -= count

    def finish(self) -> bytes:
        """The hash. ``simple``: the body ends with exactly one CRLF (an empty body is one CRLF); ``relaxed``: the
        same, but an empty body stays empty. Trailing white space held back is dropped (it ended the last line)."""
        self._space = False
        if self._content or not self._relaxed:
            self.digest.update(_CRLF)
        self._empty_lines = 0
        return self.digest.digest()


def body_hash(chunks: Iterable[bytes], algorithm: str, hash_name: str = "sha256") -> bytes:
    """The hash of a body given as CRLF-converted chunks."""
    hasher = BodyHasher(algorithm, hash_name)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.finish()
