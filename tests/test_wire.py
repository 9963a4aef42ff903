"""DATA encoding: CRLF normalisation and dot-stuffing on the stream, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from esmtp.smtp.wire import DataEncoder, encode_data

CASES = [
    (b"", b".\r\n"),
    (b"a\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b".\n", b"..\r\n.\r\n"),
    (b"x\n.\ny\n", b"x\r\n..\r\ny\r\n.\r\n"),
    (b"..hidden\n", b"...hidden\r\n.\r\n"),
    (b"a\rb\n", b"a\r\nb\r\n.\r\n"),  # a lone CR is a line end (esmtp 1.2 passed it on)
    (b"end\r", b"end\r\n.\r\n"),
    (b"x\r\r\ny", b"x\r\n\r\ny\r\n.\r\n"),
    # SMTP smuggling: <CR>.<CR><LF> must not reach the server, whatever follows it.
    (b"hi\r.\r\nMAIL FROM:<x@evil>\r\n", b"hi\r\n..\r\nMAIL FROM:<x@evil>\r\n.\r\n"),
    (b"hi\n.\r\nRCPT", b"hi\r\n..\r\nRCPT\r\n.\r\n"),
    (b"\x00\xff\n", b"\x00\xff\r\n.\r\n"),
    (b"x\n\n.\n\n", b"x\r\n\r\n..\r\n\r\n.\r\n"),
]


@pytest.mark.parametrize(("raw", "wire"), CASES)
def test_encode_whole(raw: bytes, wire: bytes) -> None:
    assert b"".join(encode_data([raw])) == wire


@pytest.mark.parametrize(("raw", "wire"), CASES)
def test_encode_every_split(raw: bytes, wire: bytes) -> None:
    # Byte-at-a-time chunks exercise every boundary: CRLF split, dot after a split line end.
    assert b"".join(encode_data([raw[i : i + 1] for i in range(len(raw))])) == wire


def test_final_dot_travels_with_the_last_bytes() -> None:
    chunks = list(encode_data([b"one\n", b"two\n"]))
    assert chunks[-1].endswith(b"two\r\n.\r\n")


def test_no_body_line_ever_is_a_lone_dot() -> None:
    encoder = DataEncoder()
    out = encoder.encode(b".\r\n.\n.\r.") + encoder.finish()
    lines = out.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    assert b"." not in lines[:-2]


@pytest.mark.parametrize("raw", [b"a\rb", b"\r.\r\n", b"x\r\r\r.\n", b".\r.\n.\r"])
def test_no_cr_or_lf_outside_crlf(raw: bytes) -> None:
    for chunks in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
        wire = b"".join(encode_data(chunks))
        assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")
