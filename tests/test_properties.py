"""Property tests (hypothesis): for any input, the data encoder, the command line and the message reader either do
their job or raise the project's own error; they never crash, never let ``<CRLF>.<CRLF>`` or a lone CR or LF into
the data, and never put a control character into an address.

Example counts come from the hypothesis profile (tests/conftest.py): bounded in CI, ``HYPOTHESIS_PROFILE=long`` for
a long local run.
"""

from __future__ import annotations

import io
import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from esmtp.errors import EsmtpError, UsageError
from esmtp.message import read_message
from esmtp.options import parse_args
from esmtp.wire import encode_data

# Bytes rich in what matters to SMTP data: CR, LF, dots, and a few ordinary bytes.
SMTP_BYTES = st.lists(st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"a", b" ", b"\x00", b"\xff"]), max_size=60).map(
    b"".join) | st.binary(max_size=200)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(SMTP_BYTES)
    cuts = sorted(draw(st.sets(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


def _lines(data: bytes) -> bytes:
    """``data`` with every line end (CRLF, lone CR, bare LF) as CRLF and a final one: the text the server keeps."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return text if text.endswith(b"\r\n") or not text else text + b"\r\n"


def _unstuff(wire: bytes) -> bytes:
    """What a server does with DATA: strip the terminator, then one leading dot from each line."""
    assert wire.endswith(b".\r\n")
    body = wire[: -len(b".\r\n")]
    return b"".join(line[1:] if line.startswith(b".") else line for line in body.splitlines(keepends=True))


@given(chunked())
def test_data_round_trips_through_dot_stuffing(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    wire = b"".join(encode_data(chunks))
    assert _unstuff(wire) == _lines(data)


@given(chunked())
def test_data_never_ends_early_and_has_no_bare_cr_or_lf(case: tuple[bytes, list[bytes]]) -> None:
    _, chunks = case
    wire = b"".join(encode_data(chunks))
    assert wire.endswith(b".\r\n")
    # The only end-of-data mark is the last one (a message starting at a line end: "\r\n.\r\n" appears once).
    assert wire.find(b"\r\n.\r\n") in (-1, len(wire) - 5)
    assert not wire[:-3].startswith(b".\r\n") or wire == b".\r\n"
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")


@given(chunked())
def test_chunk_boundaries_do_not_matter(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    assert b"".join(encode_data(chunks)) == b"".join(encode_data([data]))


# ---- the command line ----------------------------------------------------------------------------------------------

OPTION_WORDS = st.sampled_from([
    "-f", "-r", "-F", "-t", "-i", "-oi", "-N", "-R", "-V", "-B", "-C", "-v", "-X", "-q", "-bp", "-bm", "-bs", "-bx",
    "--", "-", "--version", "--help", "--flush", "--remove", "-oem", "-U", "-x", "-qI1", "-N", "success,delay", "never",
    "full", "hdrs", "8BITMIME", "7BIT", "<>", "", "a@example.org", "Bob <b@example.org>", "x@y, z@w", "root",
])
ANY_WORD = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
ARGV = st.tuples(st.sampled_from(["sendmail", "mailq", "newaliases", "deliver", "esmtp"]),
                 st.lists(OPTION_WORDS | ANY_WORD, max_size=8))


def _control_free(text: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


@given(ARGV)
def test_command_line_is_parsed_or_refused_as_a_usage_error(argv: tuple[str, list[str]]) -> None:
    program, words = argv
    try:
        options = parse_args([f"/usr/sbin/{program}", *words])
    except UsageError as error:
        assert str(error)
        return
    assert all(_control_free(address) for address in options.recipients)
    assert options.sender is None or _control_free(options.sender)


# ---- the message reader ---------------------------------------------------------------------------------------------

HEADER_TEXT = st.lists(st.sampled_from([
    b"From: a@example.org\n", b"To: b@example.net, \"Doe, J\" <j@example.net>\n", b"Subject: x\r\n", b" folded\n",
    b"\tcontinued\r\n", b"\n", b"\r\n", b"not a header\n", b"From mbox line\n", b"X-Nul: \x00\n", b".\n", b"\r",
    b"Bcc: c@example.net\n", b"Resent-To: r@example.net\n", b"To: =?utf-8?q?J=C3=B6rg?= <j@example.net>\n",
]), max_size=12).map(b"".join) | st.binary(max_size=300)


@given(HEADER_TEXT)
def test_message_is_read_or_refused_with_the_projects_error(raw: bytes) -> None:
    try:
        with read_message(io.BytesIO(raw)) as message:
            names = message.names()
            header = message.header_bytes()
            size = message.size
            body = b"".join(message.chunks())
    except EsmtpError as error:
        assert str(error)
        return
    assert all(name == name.lower() for name in names)
    assert size == len(body) and body.startswith(header)
