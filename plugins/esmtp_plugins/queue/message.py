"""A queued message read back for sending: the stored file streamed from the entry's locked descriptor."""

from __future__ import annotations

import os
from collections.abc import Iterator

from esmtp.message import CHUNK, Message

from .entry import Entry


class QueuedMessage(Message):
    """A message read back from ``<id>.eml``, streamed from the entry's locked file descriptor.

    The header fields are parsed for hooks and agents that look at them; while nobody changes them, the file is sent
    as stored, header block included, in as few reads and writes as possible: a message of up to 64 KiB is read
    with one system call, when the entry is prepared.
    """

    __slots__ = ("_end", "_fd", "_start", "_stored", "body_offset")

    def __init__(self, fd: int, entry: Entry, path: str) -> None:
        newline = entry.newline.encode("ascii")
        self._start = os.pread(fd, max(min(entry.size, CHUNK), entry.header_size), 0) if entry.size else b""
        block = self._start[: entry.header_size]
        super().__init__(
            split_fields(block[: len(block) - len(newline)] if block else b""),
            path,
            entry.size - entry.header_size,
            eight_bit=entry.eight_bit,
            newline=newline,
        )
        self.detach_spool()  # the queue owns the file: closing this message must never delete it
        self._fd = fd
        self._end = entry.size
        self._stored = tuple(self.headers)
        self.body_offset = entry.header_size

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        start = self._start
        if tuple(self.headers) == self._stored:
            first = start  # the header block as stored: sent with the body
        else:
            head = self.header_bytes()
            if head:
                yield head + self.newline
            first = start[self.body_offset :]
        if first:
            yield first
        offset = max(len(start), self.body_offset)
        while offset < self._end and (chunk := os.pread(self._fd, min(chunk_size, self._end - offset), offset)):
            offset += len(chunk)
            yield chunk


def split_fields(block: bytes) -> list[bytes]:
    """A header block as raw fields (continuation lines kept with their field)."""
    fields: list[bytes] = []
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end + 1
        line = block[start:end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        start = end
    return fields
