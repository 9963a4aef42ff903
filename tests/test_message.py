"""Reading a message: header block kept as raw bytes, body spooled to disk, hostile input refused clearly."""

from __future__ import annotations

import io
import os

import pytest

from esmtp.errors import DataError
from esmtp.message import MAX_HEADER_BYTES, read_message


def read(raw: bytes):  # type: ignore[no-untyped-def]
    return read_message(io.BytesIO(raw))


def body_of(message) -> bytes:  # type: ignore[no-untyped-def]
    with open(message.body_path, "rb") as handle:
        return handle.read()


def test_headers_kept_byte_for_byte_and_body_spooled() -> None:
    raw = b"Subject:  odd   spacing\nX-Folded: a\n\tb\n\nbody\n.\nmore\n"
    with read(raw) as message:
        assert message.headers == [b"Subject:  odd   spacing\n", b"X-Folded: a\n\tb\n"]
        assert body_of(message) == b"body\n.\nmore\n"
        assert b"".join(message.chunks()) == raw
        assert message.get("x-folded") == "a\tb"


def test_crlf_input_keeps_crlf_for_added_headers() -> None:
    with read(b"Subject: x\r\n\r\nhi\r\n") as message:
        message.add("Date", "today")
        assert message.headers[-1] == b"Date: today\r\n"


def test_no_header_block_means_everything_is_body() -> None:
    with read(b"hello world\nsecond line\n") as message:
        assert message.headers == []
        assert body_of(message) == b"hello world\nsecond line\n"


def test_mbox_from_line_is_dropped() -> None:
    with read(b"From root Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n") as message:
        assert message.names() == ["subject"]


def test_headers_only_without_blank_line() -> None:
    with read(b"Subject: only\nTo: a@b") as message:
        assert message.names() == ["subject", "to"]
        assert message.headers[-1].endswith(b"\n")
        assert message.body_size == 0


def test_eight_bit_detected_in_body_and_headers() -> None:
    with read(b"Subject: x\n\n\xc3\xa9t\xc3\xa9\n") as message:
        assert message.eight_bit
    with read("Subject: é\n\nplain\n".encode()) as message:
        assert message.eight_bit
    with read(b"Subject: x\n\nplain\n") as message:
        assert not message.eight_bit


def test_nul_in_headers_is_refused() -> None:
    with pytest.raises(DataError, match="NUL"):
        read(b"Subject: a\x00b\n\nbody\n")


def test_huge_header_block_is_refused_without_reading_it_all() -> None:
    raw = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\n\nbody\n"
    with pytest.raises(DataError, match="header block larger"):
        read(raw)


def test_header_editing() -> None:
    with read(b"To: a@x\nCc: b@x\nBcc: secret@x\nbcc: more@x\n\nbody\n") as message:
        assert message.remove("BCC") == 2
        message.replace("to", "c@x")
        message.replace("Reply-To", "r@x")
        assert message.headers == [b"to: c@x\n", b"Cc: b@x\n", b"Reply-To: r@x\n"]
        with pytest.raises(DataError):
            message.add("X-Evil", "a\r\nBcc: injected@x")


def test_spool_file_is_private_and_removed() -> None:
    message = read(b"Subject: x\n\nbody\n")
    assert os.stat(message.body_path).st_mode & 0o077 == 0
    message.close()
    assert not os.path.exists(message.body_path)
