"""``sendmail -bs`` end to end: the installed command as a subprocess, a client on the other end of a socketpair
(Python's smtplib, or raw pipelined bytes), and a real SMTP server (aiosmtpd) as the smarthost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Runner, SmtpServer, _Handler, entry_point, free_port

# Every header the fix-ups would add is present, so the smarthost must get these bytes exactly.
DOTS = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nDate: Wed, 02 Dec 2026 04:00:00 +0000\r\n"
    b"Message-ID: <dots@example.org>\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend with dot .\r\n.\r\n"
)


class Session:
    """The installed ``sendmail -bs`` with a socketpair as its stdin and stdout."""

    def __init__(self, run: Runner, *args: str, **env: str) -> None:
        self.sock, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [entry_point(), "-bs", *args], stdin=child, stdout=child, stderr=subprocess.PIPE, env=run.env(**env)
        )
        child.close()
        self.sock.settimeout(60)
        self.file = self.sock.makefile("rb")

    def smtplib(self) -> smtplib.SMTP:
        """An smtplib client on our end, greeted and past EHLO."""
        client = smtplib.SMTP()
        client.sock = self.sock
        code, greeting = client.getreply()
        assert code == 220, greeting
        assert client.ehlo("client.example")[0] == 250
        return client

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def replies(self, count: int) -> list[str]:
        """The next ``count`` replies, multi-line ones joined, each as "code text"."""
        found: list[str] = []
        lines: list[str] = []
        while len(found) < count:
            line = self.file.readline().decode()
            assert line.endswith("\r\n"), f"unterminated or missing reply after {found + lines}"
            lines.append(line[:-2])
            if line[3:4] != "-":
                found.append(" | ".join(lines))
                lines = []
        return found

    def end(self, timeout: float = 60) -> tuple[int, str, bytes]:
        """Close our side; return the exit status, stderr and whatever was still unread on stdout."""
        self.sock.shutdown(socket.SHUT_WR)
        rest = self.file.read()
        self.file.close()
        self.sock.close()
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read().decode()
        return self.proc.wait(timeout), stderr, rest


def send_one(run: Runner, recipients: list[str], data: bytes) -> tuple[int, str, bytes]:
    """One message in a session of its own: the exit status, stderr and anything unread on stdout."""
    session = Session(run)
    client = session.smtplib()
    client.sendmail("a@example.org", recipients, data)
    client.quit()
    return session.end()


@pytest.fixture
def relay(run: Runner, smtp_server: SmtpServer) -> Iterator[Runner]:
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()  # the server's probe connection to itself
    yield run


def test_smtplib_session_several_messages_one_connection(relay: Runner, smtp_server: SmtpServer) -> None:
    session = Session(relay)
    client = session.smtplib()
    for extension in ("pipelining", "8bitmime", "smtputf8", "size", "dsn", "enhancedstatuscodes"):
        assert client.has_extn(extension), client.esmtp_features
    assert client.sendmail("alice@example.org", ["bob@example.net"], DOTS) == {}
    eight_bit = "From: alice@example.org\r\nSubject: 8bit\r\n\r\nGrüße aus Köln\r\n".encode()
    assert client.sendmail("alice@example.org", ["carol@example.net"], eight_bit, mail_options=["BODY=8BITMIME"]) == {}
    utf8 = "From: jörg@example.org\r\nTo: zoë@example.net\r\nSubject: ünïcode\r\n\r\nHallo\r\n".encode()
    assert client.sendmail("jörg@example.org", ["zoë@example.net"], utf8, mail_options=["SMTPUTF8"]) == {}
    assert client.quit()[0] == 221
    status, stderr, rest = session.end()
    assert (status, rest) == (0, b""), stderr

    first, second, third = smtp_server.sink.messages
    assert first.data == DOTS  # dot-stuffed by smtplib, unstuffed by us, stuffed again, unstuffed by the server
    assert (first.mail_from, first.rcpt_tos) == ("alice@example.org", ["bob@example.net"])
    assert "BODY=8BITMIME" in second.mail_options and "Grüße aus Köln".encode() in second.data
    assert (third.mail_from, third.rcpt_tos) == ("jörg@example.org", ["zoë@example.net"])
    assert "SMTPUTF8" in third.mail_options and "Subject: ünïcode".encode() in third.data
    assert smtp_server.sink.connections == 1  # one upstream session for the whole -bs session


def test_pipelined_commands_rset_rejected_recipient_unknown_commands(relay: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: no such user"
    session = Session(relay)
    assert session.replies(1)[0].startswith("220 ")
    session.send(
        b"EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\nRSET\r\n"
        b"MAIL FROM:<a@example.org> SIZE=100 BODY=7BIT RET=HDRS ENVID=id+2Bone\r\n"
        b"RCPT TO:<bob> NOTIFY=SUCCESS,FAILURE\r\nRCPT TO:<b@example.net> NOTIFY=success,failure\r\n"
        b"RCPT TO:<bad address@example.net>\r\nXYZZY\r\nVRFY bob\r\nEXPN staff\r\nNOOP\r\nHELP\r\n"
        b"DATA\r\nSubject: pipelined\r\n\r\nhello\r\n.\r\n"  # only <CRLF>.<CRLF> ends the data
        b"MAIL FROM:<a@example.org>\nRCPT TO:<gone@example.net>\nDATA\nSubject: refused\n\nx\r\n.\r\nQUIT\n"
    )
    replies = session.replies(20)
    assert [reply[:3] for reply in replies] == [
        "250", "250", "250", "250", "250", "550", "250", "501", "500", "252", "502", "250", "214", "354", "250",
        "250", "250", "354", "550", "221",
    ]
    assert "without a MDA" in replies[5]  # a local name without an MDA: refused at RCPT, no server asked
    assert "man esmtp" in replies[12]  # HELP points at what a pip install has (no docs/ directory)
    assert replies[13] == "354 End data with <CR><LF>.<CR><LF>"  # RFC 3463 defines no enhanced code class 3
    assert replies[18].startswith("550-5.1.1 ") and "no such user" in replies[18]  # the smarthost's reply, quoted
    status, stderr, _ = session.end()
    assert status == 67, stderr  # EX_NOUSER: a message was refused (the first one went out)
    [got] = smtp_server.sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("a@example.org", ["b@example.net"])
    assert "BODY=7BIT" in got.mail_options  # (the test server offers no DSN: RET, ENVID, NOTIFY are not passed)
    assert got.data.endswith(b"\r\n\r\nhello\r\n")


def queued(queue: Path) -> list[dict[str, Any]]:
    """The queue entries' envelopes (saved atomically: safe to read while a background run works)."""
    return [json.loads(path.read_text()) for path in sorted(queue.glob("*.json"))]


def test_dsn_parameters_reach_the_envelope(run: Runner, tmp_path: Path) -> None:
    run.write_config(f"hostname 127.0.0.1:{free_port()}\nqueue always\nqueue_dir {tmp_path / 'queue'}\n")
    session = Session(run)
    session.send(
        b"EHLO c\r\nMAIL FROM:<a@example.org> RET=HDRS ENVID=id+2Bone\r\nRCPT TO:<b@example.net> NOTIFY=DELAY,SUCCESS"
        b"\r\nRCPT TO:<c@example.net> NOTIFY=NEVER\r\nDATA\r\nSubject: dsn\r\n\r\nx\r\n.\r\nQUIT\r\n"
    )
    replies = session.replies(7)
    assert replies[4].startswith("452 4.5.3 ")  # one NOTIFY per envelope: the other recipient comes again later
    assert replies[6].startswith("250 2.0.0 Ok: queue: queued as ")
    assert session.end()[0] == 0
    [entry] = queued(tmp_path / "queue")
    assert (entry["ret"], entry["envid"], entry["notify"]) == ("HDRS", "id+one", "SUCCESS,DELAY")
    assert entry["recipients"] == ["b@example.net"]


def test_limits_oversized_lines_and_size(relay: Runner, smtp_server: SmtpServer) -> None:
    session = Session(relay)
    session.replies(1)
    session.send(b"EHLO client\r\nNOOP " + b"x" * 5000 + b"\r\nMAIL FROM:<a@example.org> SIZE=999999999999\r\n")
    assert [r[:3] for r in session.replies(3)] == ["250", "500", "552"]
    session.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert [r[:3] for r in session.replies(3)] == ["250", "250", "354"]
    session.send(b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\nmore\r\n.\r\nNOOP\r\n")
    refused, noop = session.replies(2)
    assert refused.startswith("500 5.5.2 ") and "998" in refused
    assert noop.startswith("250 ")  # the session goes on after a refused message
    session.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    session.replies(3)
    session.send(b"Subject: header bomb\r\n" + b"X-Filler: " + b"z" * 900 + b"\r\n" * 1 + (b" " + b"z" * 900 + b"\r\n")
                 * 1200 + b"\r\nbody\r\n.\r\nQUIT\r\n")
    refused, bye = session.replies(2)
    assert refused.startswith("552 5.3.4 Header block larger"), refused
    assert bye.startswith("221 ")
    status, stderr, _ = session.end()
    assert status == 0, stderr  # refusals answered in the dialogue: no accepted message was lost
    assert smtp_server.sink.messages == []


def test_eof_in_the_middle_of_data_delivers_nothing(relay: Runner, smtp_server: SmtpServer) -> None:
    session = Session(relay)
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: cut\r\n\r\nhalf")
    assert [r[:3] for r in session.replies(5)] == ["220", "250", "250", "250", "354"]
    status, _, rest = session.end()
    assert status == 75
    assert rest == b""
    assert smtp_server.sink.messages == []
    assert smtp_server.sink.connections == 0  # the smarthost was never even contacted


def test_too_many_errors_then_421(relay: Runner) -> None:
    session = Session(relay)
    session.send(b"BOGUS\r\n" * 12)
    replies = session.replies(11)
    assert [r[:3] for r in replies] == ["220"] + ["500"] * 9 + ["421"]
    status, _, rest = session.end()
    assert (status, rest) == (76, b"")


def test_idle_timeout_answers_421(relay: Runner) -> None:
    session = Session(relay, ESMTP_BS_TIMEOUT="0.5")
    started = time.monotonic()
    greeting, closing = session.replies(2)
    assert greeting.startswith("220 ") and closing.startswith("421 4.4.2 ")
    assert time.monotonic() - started < 30
    assert session.end()[0] == 75


def test_smarthost_message_refusal_is_quoted_at_the_dot(relay: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.data_reply = "554 5.7.1 Message rejected as spam"
    session = Session(relay)
    client = session.smtplib()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: spam\r\n\r\nbuy\r\n")
    assert refused.value.smtp_code == 554
    assert b"5.7.1" in refused.value.smtp_error and b"Message rejected as spam" in refused.value.smtp_error
    client.quit()
    assert session.end()[0] == 69  # EX_UNAVAILABLE


def test_one_login_for_every_transaction(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(f"hostname {auth_server.hostport}\nusername alice\npassword s3cret\nauth_plaintext enabled\n")
    auth_server.sink.clear()
    session = Session(run)
    client = session.smtplib()
    for index in range(3):
        client.sendmail("a@example.org", ["b@example.net"], f"Subject: m{index}\r\n\r\nx\r\n".encode())
    client.quit()
    assert session.end()[0] == 0
    assert len(auth_server.sink.messages) == 3
    assert auth_server.sink.connections == 1
    assert auth_server.sink.auths == [("PLAIN", "alice")]


def test_smarthost_down_is_a_temporary_failure_at_the_dot(run: Runner) -> None:
    run.write_config(f"hostname 127.0.0.1:{free_port()}\n")
    session = Session(run)
    client = session.smtplib()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: later\r\n\r\nx\r\n")
    assert 400 <= refused.value.smtp_code < 500
    assert b"127.0.0.1" in refused.value.smtp_error  # names the smarthost
    client.quit()
    status, stderr, _ = session.end()
    assert status == 75 and "127.0.0.1" in stderr


def test_smarthost_down_with_queue_fallback_then_flush_delivers_once(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname 127.0.0.1:{free_port()}\nqueue fallback\n")
    status, stderr, _ = send_one(run, ["b@example.net"], b"Subject: queued\r\n\r\nkept\r\n")
    assert status == 0, stderr
    assert "to: b@example.net" in run("-bp").stdout
    run.write_config(f"hostname {smtp_server.hostport}\nqueue fallback\n")
    smtp_server.sink.clear()
    for _ in range(2):
        assert run("--flush", program="esmtp").returncode == 0
    [got] = smtp_server.sink.messages
    assert got.rcpt_tos == ["b@example.net"] and b"\r\n\r\nkept\r\n" in got.data
    assert run("-bp").stdout.startswith("Mail queue is empty")


def test_missing_configuration_is_a_554_greeting(run: Runner) -> None:
    session = Session(run)
    [greeting] = session.replies(1)
    assert greeting.startswith("554 5.3.5 ") and "esmtprc" in greeting
    status, stderr, _ = session.end()
    assert status == 78 and "esmtprc" in stderr


def test_local_names_go_to_the_mda(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"
    run.write_config(f"hostname {smtp_server.hostport}\nmda \"/bin/sh -c 'cat >> {mailbox}'\"\n")
    status, stderr, rest = send_one(run, ["bob"], b"Subject: local\r\n\r\nfor bob\r\n")
    assert (status, rest) == (0, b""), stderr  # the MDA's output cannot leak into the dialogue
    assert b"for bob" in mailbox.read_bytes()


class _HangUpAfterData(_Handler):
    """Accepts a message, then closes the connection a moment later, as a server's idle timeout would."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return reply


def test_a_connection_dropped_between_messages_is_opened_again(relay: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.controller.handler = _HangUpAfterData(smtp_server.sink)
    session = Session(relay)
    client = session.smtplib()
    client.sendmail("a@example.org", ["b@example.net"], b"Subject: one\r\n\r\nx\r\n")
    time.sleep(0.5)  # the smarthost hangs up meanwhile
    assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: two\r\n\r\nx\r\n") == {}
    client.quit()
    status, stderr, _ = session.end()
    assert status == 0, stderr
    assert len(smtp_server.sink.messages) == 2
    assert smtp_server.sink.connections == 2


def test_idle_timeout_in_the_middle_of_data_delivers_nothing(relay: Runner, smtp_server: SmtpServer) -> None:
    session = Session(relay, ESMTP_BS_TIMEOUT="0.5")
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: stalled\r\n\r\n")
    replies = session.replies(6)
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "421"]
    assert session.end()[0] == 75
    assert smtp_server.sink.messages == []


def test_a_spool_that_cannot_be_written_is_a_temporary_failure(relay: Runner, tmp_path: Path) -> None:
    session = Session(relay, TMPDIR=str(tmp_path / "missing"))
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    session.send(b"Subject: nowhere\r\n\r\nbody\r\n.\r\nNOOP\r\n")
    replies = session.replies(7)
    assert replies[5].startswith("451 4.3.0 cannot spool the message: No such file or directory")
    assert replies[6].startswith("250 ")  # the session goes on
    assert session.end()[0] == 75


SMUGGLED = (b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: forged\r\n\r\n"
            b"forged\r\n.\r\n")


@pytest.mark.parametrize("dot", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_only_crlf_dot_crlf_ends_the_data(relay: Runner, smtp_server: SmtpServer, dot: bytes) -> None:
    """SMTP smuggling (RFC 5321 4.1.1.4): a lone dot with a bare LF (or CR) on either side is message text, so the
    commands after it stay in the message; only <CRLF>.<CRLF> ends it. Once, ``<LF>.<LF>`` ended the data early
    and the smarthost received a second transaction, from evil@ to victim@."""
    session = Session(relay)
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                 b"Subject: smuggle\r\n\r\nbody" + dot + SMUGGLED + b"QUIT\r\n")
    assert [r[:3] for r in session.replies(7)] == ["220", "250", "250", "250", "354", "250", "221"]
    status, stderr, rest = session.end()
    assert (status, rest) == (0, b""), stderr
    [got] = smtp_server.sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("a@example.org", ["b@example.net"])
    assert b"\r\nMAIL FROM:<evil@example.org>\r\n" in got.data  # text of the one message, never a command


def test_a_refused_long_line_before_a_bare_lf_dot_ends_nothing(relay: Runner, smtp_server: SmtpServer) -> None:
    """The line ending of a line skipped for its length still counts: ``<long line><LF>.<CRLF>`` is text."""
    session = Session(relay)
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                 b"Subject: long\r\n\r\n" + b"y" * 3000 + b"\n.\r\n" + SMUGGLED + b"QUIT\r\n")
    replies = session.replies(7)
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "500", "221"], replies
    session.end()
    assert smtp_server.sink.messages == []


def test_non_ascii_digits_in_size_are_refused_after_the_delivered_message_is_answered(
        relay: Runner, smtp_server: SmtpServer) -> None:
    """``SIZE=²`` passes ``str.isdigit`` but not ``int``: it once killed the process (exit 70) before the 250 of the
    message before it went out, so the client would send that message again."""
    session = Session(relay)
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                 b"Subject: first\r\n\r\nx\r\n.\r\n" + "MAIL FROM:<a@example.org> SIZE=²\r\nQUIT\r\n".encode())
    replies = session.replies(8)
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "250", "555", "221"], replies
    status, stderr, _ = session.end()
    assert status == 0, stderr
    assert len(smtp_server.sink.messages) == 1


class _BrokenRelay:
    """A relay with a bug at RCPT (after a message went out): the server must still answer what it owes."""

    def check_recipient(self, transaction: object, address: str) -> str | None:
        if address.startswith("bug"):
            raise RuntimeError("a bug")
        return None

    def deliver(self, transaction: object, message: object) -> tuple[str, int]:
        return "250 2.0.0 Ok: delivered", 0


def test_an_unexpected_error_still_sends_the_replies_already_earned() -> None:
    from esmtp.server.dialogue import StdioServer

    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()
    os.write(commands_w, b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                         b"Subject: first\r\n\r\nx\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bug@example.net>\r\n")
    os.close(commands_w)
    server = StdioServer(commands_r, replies_w, _BrokenRelay(), hostname="test")  # type: ignore[arg-type]
    try:
        with pytest.raises(RuntimeError):
            server.run()
    finally:
        os.close(commands_r)
        os.close(replies_w)
    with os.fdopen(replies_r, "rb") as replies:
        codes = [line[:4] for line in replies.read().split(b"\r\n") if line[3:4] == b" "]
    assert codes == [b"220 ", b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"250 "]


@pytest.mark.parametrize("data", [b"Subject: long\r\n\r\n" + b"y" * 2000 + b"\r\nmore\r\n",
                                  b"Subject: nul\x00here\r\n\r\nbody\r\n", b"Subject: unfinished\r\n"])
def test_input_ending_in_a_refused_or_unfinished_data_is_a_temporary_failure(
        relay: Runner, smtp_server: SmtpServer, data: bytes) -> None:
    """No final dot, so no reply to the message: exit 75 as docs/cli.md says (once 0 after a refused line)."""
    session = Session(relay)
    session.send(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + data)
    assert [r[:3] for r in session.replies(5)] == ["220", "250", "250", "250", "354"]
    status, stderr, rest = session.end()
    assert (status, rest) == (75, b""), stderr
    assert smtp_server.sink.messages == []


def test_a_caller_that_reads_no_reply_is_bounded_by_the_timeout(relay: Runner) -> None:
    """Pipelined NOOPs whose replies are never read fill the pipe: the write is bounded by ``ESMTP_BS_TIMEOUT``
    (once it blocked forever), and the session ends as for a broken pipe (74)."""
    session = Session(relay, ESMTP_BS_TIMEOUT="1")

    def flood() -> None:
        with contextlib.suppress(OSError):
            session.send(b"NOOP\r\n" * 100_000)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    started = time.monotonic()
    status = session.proc.wait(20)
    assert status == 74
    assert time.monotonic() - started < 15
    session.sock.close()
    sender.join(10)


def test_the_ehlo_reply_echoes_no_control_character(relay: Runner) -> None:
    """``EHLO`` once echoed the caller's ESC, BEL and lone CR into its reply."""
    session = Session(relay)
    session.send(b"EHLO client\x1b[2J\x07\rtail\r\nQUIT\r\n")
    greeting, ehlo, bye = session.replies(3)
    assert (greeting[:4], ehlo[:4], bye[:4]) == ("220 ", "250-", "221 ")
    assert not any(char in ehlo for char in "\x1b\x07\r"), repr(ehlo)
    assert "client\\x1b[2J\\x07\\rtail" in ehlo
    assert session.end()[0] == 0

@pytest.mark.parametrize("address", ["bad@@x", "a..b@example.net", "a@x y", "bob@example.net\t"])
def test_bs_refuses_an_address_the_command_line_refuses(relay: Runner, smtp_server: SmtpServer, address: str) -> None:
    """One address check for every path: ``sendmail ADDRESS`` exits 64, and ``-bs`` answers 501 to
    ``RCPT TO:<ADDRESS>`` and ``MAIL FROM:<ADDRESS>`` (it once took ``bad@@x`` and relayed ``"bad@"@x``)."""
    assert relay(address, input=b"Subject: x\n\nbody\n").returncode == 64
    session = Session(relay)
    assert session.replies(1)[0].startswith("220 ")
    session.send(f"EHLO client\r\nMAIL FROM:<{address}>\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{address}>\r\n"
                 "RCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n".encode())
    replies = session.replies(8)
    assert [reply[:3] for reply in replies] == ["250", "501", "250", "501", "250", "354", "250", "221"], replies
    assert replies[1].startswith("501 5.1.3 Bad address syntax") and replies[3] == replies[1]
    status, stderr, _ = session.end()
    assert status == 0, stderr
    [got] = smtp_server.sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("a@example.org", ["b@example.net"])
