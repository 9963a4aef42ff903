"""A message as the pipeline holds it: the header block as raw bytes, the body spooled to a file on disk.

Header fields that no plugin touches are sent byte for byte (no re-serialising through ``email.generator``). The body
is never held in memory: it is copied from standard input to a spool file and streamed from there.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

from esmtp.errors import DataError

#: A header block larger than this is refused (a runaway or hostile input, not mail).
MAX_HEADER_BYTES = 1 << 20
CHUNK = 1 << 16

# RFC 5322 field name: printable ASCII but ':'; obsolete syntax allows blanks before the colon.
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def _field_name(raw: bytes) -> str:
    return raw.split(b":", 1)[0].strip().decode("ascii").lower()


class Message:
    """Header fields (raw, each with its continuation lines and line ending) plus a spooled body file."""

    __slots__ = ("_spool_owned", "body_path", "body_size", "eight_bit", "headers", "newline")

    def __init__(
        self, headers: list[bytes], body_path: str, body_size: int, *, eight_bit: bool = False, newline: bytes = b"\n"
    ) -> None:
        self.headers = headers
        self.body_path = body_path
        self.body_size = body_size
        self.eight_bit = eight_bit
        #: The line ending used for header fields that plugins add (the one the input used).
        self.newline = newline
        self._spool_owned = True

    # ---- reading header fields ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Lower-case field names, in order."""
        return [_field_name(raw) for raw in self.headers]

    def has(self, name: str) -> bool:
        lname = name.lower()
        return any(_field_name(raw) == lname for raw in self.headers)

    def get_all(self, name: str) -> list[str]:
        """The unfolded values of every ``name`` field (bytes that are not UTF-8 are kept as surrogate escapes)."""
        lname = name.lower()
        values = []
        for raw in self.headers:
            if _field_name(raw) == lname:
                value = raw.split(b":", 1)[1]
                unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", value).strip()
                values.append(unfolded.decode("utf-8", "surrogateescape"))
        return values

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    # ---- changing header fields ----------------------------------------------------------------------------------

    def _encode(self, name: str, value: str) -> bytes:
        if not _FIELD.fullmatch(name.encode("ascii", "replace") + b":"):
            raise ValueError(f"not a header field name: {name!r}")
        if "\r" in value or "\n" in value or "\0" in value:
            raise DataError(f"header {name} would contain a line break")
        return f"{name}: {value}".encode("utf-8", "surrogateescape") + self.newline

    def add(self, name: str, value: str) -> None:
        """Append a field at the end of the header block."""
        self.headers.append(self._encode(name, value))

    def remove(self, name: str) -> int:
        """Remove every ``name`` field; return how many were removed."""
        lname = name.lower()
        kept = [raw for raw in self.headers if _field_name(raw) != lname]
        removed = len(self.headers) - len(kept)
        self.headers[:] = kept
        return removed

    def replace(self, name: str, value: str) -> None:
        """Replace the first ``name`` field in place (others are removed), or append one."""
        lname = name.lower()
        encoded = self._encode(name, value)
        for index, raw in enumerate(self.headers):
            if _field_name(raw) == lname:
                self.headers[index] = encoded
                self.headers[index + 1 :] = [r for r in self.headers[index + 1 :] if _field_name(r) != lname]
                return
        self.headers.append(encoded)

    # ---- output --------------------------------------------------------------------------------------------------

    def header_bytes(self) -> bytes:
        return b"".join(self.headers)

    @property
    def size(self) -> int:
        """Size in bytes as stored (before CRLF conversion), for the SIZE= estimate: what :meth:`chunks` yields."""
        head = len(self.header_bytes())
        return (head + len(self.newline) if head else 0) + self.body_size

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The whole message as raw bytes, in chunks: header block, blank line, body from the spool file."""
        head = self.header_bytes()
        if head:
            yield head + self.newline
        with open(self.body_path, "rb") as body:
            while chunk := body.read(chunk_size):
                yield chunk

    def detach_spool(self) -> str:
        """Hand the body file over to someone else (the queue); :meth:`close` will no longer delete it."""
        self._spool_owned = False
        return self.body_path

    def close(self) -> None:
        """Delete the spool file (if this message still owns it)."""
        if self._spool_owned:
            self._spool_owned = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.body_path)

    def __enter__(self) -> Message:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_line(stream: BinaryIO, budget: int) -> bytes:
    """One line, however long, but never more than ``budget`` bytes (DataError beyond)."""
    line = stream.readline(min(budget, CHUNK) + 1)
    while line and not line.endswith(b"\n"):
        if len(line) > budget:
            raise DataError(f"header block larger than {MAX_HEADER_BYTES // 1024} KiB")
        more = stream.readline(CHUNK)
        if not more:
            break
        line += more
    if len(line) > budget:
        raise DataError(f"header block larger than {MAX_HEADER_BYTES // 1024} KiB")
    return line


def _spool_file(directory: str | None) -> tuple[int, str]:
    """A new private file for a body, like ``tempfile.mkstemp`` (whose import costs every run milliseconds)."""
    directory = directory or os.environ.get("TMPDIR") or "/tmp"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        path = os.path.join(directory, f"esmtp-{os.getpid()}-{os.urandom(6).hex()}.body")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue


def read_message(stream: BinaryIO, spool_dir: str | None = None) -> Message:
    """Read a message from ``stream`` to end of file (a lone ``.`` line does not end it).

    The header block ends at the first empty line, or at the first line that is not a header field (that line then
    starts the body). A leading mbox ``From `` line is dropped. NUL bytes in the header block are refused.
    """
    headers: list[bytes] = []
    newline = b"\n"
    budget = MAX_HEADER_BYTES
    first_body = b""
    first = True
    while True:
        line = _read_line(stream, budget)
        if not line:
            break
        budget -= len(line)
        if first and line.startswith(b"From "):
            first = False
            continue
        if first and line.endswith(b"\r\n"):
            newline = b"\r\n"
        first = False
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += line
        elif _FIELD.match(line):
            headers.append(line)
        else:
            first_body = line
            break
        if b"\0" in line:
            raise DataError("the header block contains a NUL byte")
    if headers and not headers[-1].endswith(b"\n"):
        headers[-1] += newline  # input ended inside the header block

    eight_bit = not all(raw.isascii() for raw in headers)
    fd, path = _spool_file(spool_dir)
    size = 0
    try:
        with os.fdopen(fd, "wb") as spool:
            chunk = first_body
            while True:
                if chunk:
                    spool.write(chunk)
                    size += len(chunk)
                    if not eight_bit and not chunk.isascii():
                        eight_bit = True
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
    except BaseException:
        os.unlink(path)
        raise
    return Message(headers, path, size, eight_bit=eight_bit, newline=newline)
