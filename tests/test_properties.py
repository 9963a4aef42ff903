"""Property tests (hypothesis): for any input, the data encoder, the command line, the message reader, address
parsing and the esmtprc parser either do their job or raise the project's own error (the esmtprc one with file:line);
they never crash, never let ``<CRLF>.<CRLF>`` or a lone CR or LF into the data, never put a control character or an
angle bracket into an address, and never show a password in an error.

Example counts come from the hypothesis profile (tests/conftest.py): bounded in CI, ``HYPOTHESIS_PROFILE=long`` for
a long local run.
"""

from __future__ import annotations

import io
import itertools
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import SmtpServer, start_server

from esmtp.addresses import check_address, header_addresses, parse_recipients, parse_sender
from esmtp.config.parser import parse_config
from esmtp.errors import ConfigError, EsmtpError, UsageError
from esmtp.message import read_message
from esmtp.options import parse_args
from esmtp.server.dialogue import Reject, _path, check_syntax
from esmtp.smtp.wire import encode_data

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


# ---- addresses -------------------------------------------------------------------------------------------------------

ADDRESS_TEXT = st.lists(st.sampled_from([
    "a@example.org", "Bob <b@example.net>", '"Doe, J" <j@example.net>', "(comment)", ",", " ", "<", ">", "@", '"',
    "\\", "\r", "\n", "\x00", "\t", "\x7f", "root", "x@y", "<>", ";", ":", "group:", "=?utf-8?q?x?=", "é",
]), max_size=8).map("".join) | st.text(max_size=40)


@given(ADDRESS_TEXT)
def test_command_line_addresses_are_clean_or_a_usage_error(text: str) -> None:
    try:
        recipients = parse_recipients(text)
    except UsageError as error:
        assert str(error)
    else:
        assert all(_control_free(address) and "<" not in address and ">" not in address for address in recipients)
    try:
        sender = parse_sender(text, "f")
    except UsageError as error:
        assert str(error)
    else:
        assert _control_free(sender) and "<" not in sender and ">" not in sender


#: Bare addresses rich in what the two readers could disagree on: quotes, dots, blanks, TAB, '@', brackets, UTF-8.
#: (Blanks around a command-line word are not part of the address, as in any shell tool: none at either end.)
BARE_ADDRESS = st.lists(st.sampled_from([
    "a", "b.c", ".", "..", "@", "@@", '"', '"a b"', "\\", " ", "\t", "`", "!$", "[", "]", "[1.2.3.4]", "(", ")", ",",
    ";", ":", "é", "example.org", "-", "_",
]), min_size=1, max_size=6).map("".join).filter(lambda text: text == text.strip())


def _command_line_takes(address: str) -> bool:
    """Whether ``sendmail ADDRESS`` and ``-f ADDRESS`` would send exactly ``address`` (never a changed one)."""
    try:
        recipients = parse_recipients(address)
    except UsageError:
        recipients = []
    try:
        sender = parse_sender(address, "f")
    except UsageError:
        sender = None
    assert (recipients == [address]) == (sender == address), (recipients, sender)  # one check, both options
    assert recipients in ([], [address]) or "," in address or "(" in address, recipients  # never changed silently
    return sender == address


def _smtp_dialogue_takes(address: str) -> bool:
    """Whether ``-bs`` answers ``RCPT TO:<address>`` (and ``MAIL FROM``) with 250 rather than a 5xx."""
    try:
        path, params = _path(f"TO:<{address}>", "TO")
        if path != address or params:
            return False
        check_syntax(path)
    except Reject as refused:
        assert str(refused)[:1] == "5"
        return False
    return True


@given(BARE_ADDRESS)
def test_command_line_and_smtp_dialogue_agree_on_every_address(address: str) -> None:
    """One address check for every path: what ``sendmail ADDRESS`` refuses, ``-bs`` refuses, and what it takes as
    written, ``-bs`` takes (``bad@@x``, ``..<TAB>`@!$`` were once taken by one and refused, or changed, by the
    other)."""
    assert _command_line_takes(address) == _smtp_dialogue_takes(address), address



@given(st.sampled_from(["To", "Cc", "Resent-To", "From"]), ADDRESS_TEXT)
def test_header_addresses_reach_the_envelope_clean_or_as_a_data_error(name: str, value: str) -> None:
    raw = f"{name}: {value}\n\nbody\n".encode("utf-8", "surrogateescape")
    try:
        with read_message(io.BytesIO(raw)) as message:
            addresses = [check_address(address, "recipient") for address in header_addresses(message, (name.lower(),))]
    except EsmtpError as error:
        assert str(error)
        return
    assert all(_control_free(address) and "<" not in address and ">" not in address for address in addresses)


# ---- the esmtprc parser ----------------------------------------------------------------------------------------------

RC_WORDS = st.sampled_from([
    "hostname", "host", "username", "password", "pass", "starttls", "tls", "identity", "default", "force",
    "reverse_path", "sender", "message_id", "mda", "force_mda", "qualifydomain", "helo", "enabled", "disabled",
    "required", "timeout", "smtps", "tls_min_version", "auth_mechanisms", "x_plugin", "=", "\"", "'", "#", "\\",
    "\n", " ", ";", ",", "mail.example.org:587", "a@b", "1.3", "0", "-1", "\\0777", "\\x41", "\"quoted value\"",
])
RC_TEXT = st.lists(RC_WORDS | st.text(max_size=6), max_size=24).map(" ".join)


@given(RC_TEXT)
def test_esmtprc_parses_or_fails_with_file_and_line(text: str) -> None:
    try:
        config = parse_config(text, "/home/me/.esmtprc")
    except ConfigError as error:
        assert re.match(r"/home/me/\.esmtprc:\d+: \S", str(error)), str(error)
        line = int(str(error).split(":")[1])
        assert 1 <= line <= text.count("\n") + 1
        return
    assert config.identities and config.default in config.identities


@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\n"), min_size=1,
               max_size=20))
def test_esmtprc_error_never_shows_a_password(secret: str) -> None:
    # (a line break ends a statement: what follows it is no longer the password)
    text = f"hostname mail.example.org\npassword {secret}\n"
    try:
        config = parse_config(text, "rc")
        config.resolve_extensions(())
    except ConfigError as error:
        # Lower-case ASCII words may be the message's own wording ("the", "quote"); any other word must not appear.
        words = [word for word in re.split(r"[\s;,=#'\"\\]+", secret)
                 if len(word) >= 3 and not (word.isascii() and word.isalpha() and word.islower())]
        assert not any(word in str(error).split(": ", 1)[1] for word in words), str(error)


# ---- sendmail -bs: random sessions against a real upstream ---------------------------------------------------------

#: Line endings a -bs client may use; a lone CR is no line ending at all.
_ENDINGS = st.sampled_from([b"\r\n", b"\n"])
#: DATA lines rich in dots and in what a smuggler would hide after a fake end of data.
_DATA_LINES = st.lists(st.tuples(
    st.sampled_from([b"", b".", b"..", b".x", b"x", b"x\r", b"\r", b"MAIL FROM:<evil@example.org>",
                     b"RCPT TO:<victim@example.net>", b"DATA", b"QUIT"]),
    st.sampled_from([b"\r\n", b"\n", b"\r"])), max_size=12)
#: Commands between transactions: answered, some refused (never more than MAX_ERRORS of them), none opening DATA.
_NOISE = st.sampled_from([
    b"NOOP", b"EHLO client", b"HELO client", b"RSET", b"VRFY bob", b"HELP", b"XYZZY", b"EHLO c\x1b[2J\x07",
    b"MAIL FROM:<a@example.org> SIZE=\xc2\xb2", b"MAIL FROM:<a@example.org> SIZE=12 BODY=8BITMIME",
    b"MAIL FROM:<a@example.org> BOGUS=1", b"MAIL FROM:<a@example.org> RET=FULL ENVID=id+2Bx",
])
_MAIL_PARAMS = st.sampled_from([b"", b" SIZE=100", b" BODY=8BITMIME", b" BODY=7BIT RET=HDRS", b" SMTPUTF8",
                                b" ENVID=x+2By"])


def _stuffed_where_it_would_end(body: bytes) -> bytes:
    """``body``, with every dot that would end the data early (``<CRLF>.<CRLF>``, RFC 5321 4.1.1.4) stuffed as a
    client must; every other lone dot is left for the server to read as text."""
    while (at := (b"\r\n" + body + b"\r\n").find(b"\r\n.\r\n")) >= 0:
        body = body[:at] + b"." + body[at:]
    return body


def _as_the_server_keeps(body: bytes) -> bytes:
    """What the upstream must receive as the body for these DATA bytes (then CRLF and the final dot): unstuffed as
    the -bs server reads lines (LF ends a line; a lone dot line is text, kept), every line end then CRLF."""
    lines = re.findall(rb"[^\n]*\n", body + b"\r\n")  # LF ends a line, a lone CR does not
    return _lines(b"".join(line[1:] if line.startswith(b".") and line not in (b".\r\n", b".\n") else line
                           for line in lines))


@st.composite
def bs_sessions(draw: st.DrawFn) -> tuple[bytes, dict[int, bytes], bool]:
    """A -bs session: noise and transactions in any order, each line with its own line ending; the last transaction
    may be cut short (the input ends in its DATA). Returns the bytes, the body each finished transaction must
    deliver (by its number, in its Subject) and whether the input ends inside DATA."""
    out, bodies = [], {}
    noise_left = 8
    count = draw(st.integers(0, 4))
    for number in range(count):
        for _ in range(draw(st.integers(0, min(2, noise_left)))):
            noise_left -= 1
            out.append(draw(_NOISE) + draw(_ENDINGS))
        out += [b"EHLO client" + draw(_ENDINGS), b"MAIL FROM:<a@example.org>" + draw(_MAIL_PARAMS) + draw(_ENDINGS),
                b"RCPT TO:<b@example.net>" + draw(_ENDINGS), b"DATA" + draw(_ENDINGS)]
        body = _stuffed_where_it_would_end(b"".join(content + ending for content, ending in draw(_DATA_LINES)))
        out.append(b"Subject: t%d\r\n\r\n" % number + body)
        if number == count - 1 and draw(st.booleans()):
            return b"".join(out), bodies, True  # the input ends inside the DATA
        out.append(b"\r\n.\r\n")
        bodies[number] = _as_the_server_keeps(body)
    if draw(st.booleans()):
        out.append(b"QUIT" + draw(_ENDINGS))
    return b"".join(out), bodies, False


@pytest.fixture(scope="module")
def bs_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SmtpServer, Any, Any, Any]]:
    """A real upstream (aiosmtpd) and what a -bs run loads for it: options, configuration, plugins; once per module
    (hypothesis runs every example in one test call)."""
    from esmtp.cli import _load

    server = start_server()
    config_file = tmp_path_factory.mktemp("bs") / "esmtprc"
    config_file.write_text(f"hostname {server.hostport}\n")
    config_file.chmod(0o600)
    options = parse_args(["sendmail", "-bs", "-C", str(config_file)])
    config, hooks = _load(options, need_config=True)
    yield server, options, config, hooks
    server.controller.stop()


@given(bs_sessions())
def test_bs_delivers_exactly_the_transactions_the_client_finished(
        bs_upstream: tuple[SmtpServer, Any, Any, Any], session: tuple[bytes, dict[int, bytes], bool]) -> None:
    """Whatever the commands, parameters, line endings and dots: the upstream gets one message per transaction the
    client finished with <CRLF>.<CRLF> (never one it cut short, never a smuggled one), each with the body the client
    sent; every final dot gets one reply, 250 exactly for what was delivered; and the exit status says whether the
    input ended inside DATA."""
    from esmtp.server.dialogue import StdioServer
    from esmtp.server.relay import PipelineRelay
    from esmtp.smtp.kept import KeepPolicy, KeptSessions
    from esmtp.trace import Trace

    server, options, config, hooks = bs_upstream
    data, bodies, cut_short = session
    server.sink.clear()
    with tempfile.TemporaryFile() as commands, tempfile.TemporaryFile() as replies:
        commands.write(data)
        commands.seek(0)
        sessions = KeptSessions(KeepPolicy())
        relay = PipelineRelay(options, config, hooks, Trace(), sessions)
        try:
            status = StdioServer(commands.fileno(), replies.fileno(), relay, hostname="test", timeout=5).run()
        finally:
            sessions.close()
        replies.seek(0)
        output = replies.read()
    assert output.endswith(b"\r\n") and b"\r" not in output.replace(b"\r\n", b"")
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", output.replace(b"\r\n", b"")), output
    finals = [line for line in output.split(b"\r\n")[:-1] if line[3:4] != b"-"]  # one per reply
    dots = [finals[index + 1] for index, reply in enumerate(finals[:-1]) if reply.startswith(b"354 ")]
    assert len(dots) == len(bodies)  # every DATA was accepted; every finished one answered once
    assert all(reply.startswith(b"250 2.0.0 Ok: ") for reply in dots), dots
    received = server.sink.messages
    assert len(received) == len(bodies)
    for got in received:
        assert (got.mail_from, got.rcpt_tos) == ("a@example.org", ["b@example.net"])
        head, _, body = got.data.partition(b"\r\n\r\n")
        number = int(re.search(rb"(?m)^Subject: t(\d+)\r$", head + b"\r").group(1))  # type: ignore[union-attr]
        assert body == bodies.pop(number)
    assert status == (75 if cut_short else 0)
