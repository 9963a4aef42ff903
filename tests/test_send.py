"""End to end: the installed ``sendmail`` command, run as callers run it, against a real SMTP server."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from relay_support import run_in_both_modes  # noqa: F401  (the `run` fixture: every test here runs in both modes)
from support import SILENCE, Runner, SmtpServer, StartScripted, entry_point, free_port

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: hello\n\nHi Bob.\n"


def config_for(server: SmtpServer, extra: str = "") -> str:
    return f"hostname {server.hostport}\n{extra}"


def test_mutt_style_delivery(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    result = run("-oem", "-oi", "-B8BITMIME", "-f", "alice@example.org", "--", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert got.mail_from == "alice@example.org"
    assert got.rcpt_tos == ["bob@example.net"]
    assert "BODY=8BITMIME" in got.mail_options
    assert any(option.startswith("SIZE=") for option in got.mail_options)
    head, _, body = got.data.partition(b"\r\n\r\n")
    assert head.startswith(b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: hello\r\n")
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", head)
    assert re.search(rb"\r\nMessage-ID: <[^>]+@[^>]+>", head)
    assert body == b"Hi Bob.\r\n"


def test_cronie_style_t_mode(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    message = (
        b'From: "(Cron Daemon)" <root@host.example>\nTo: ops@example.net\nCc: "Dev, Team" <dev@example.net>\n'
        b"Bcc: hidden@example.net\nSubject: Cron <root@host> backup\n\nbackup done\n"
    )
    result = run("-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root@host.example", input=message)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert got.mail_from == "root@host.example"
    assert got.rcpt_tos == ["ops@example.net", "dev@example.net", "hidden@example.net"]
    assert b"hidden@example.net" not in got.data
    assert b"Bcc" not in got.data


def test_t_mode_takes_the_sender_from_from_when_no_f(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    result = run("-t", "-i", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("alice@example.org", ["bob@example.net"])


def test_t_mode_address_torture(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    message = (
        b"From: a@example.org\n"
        b"To: undisclosed-recipients:;\n"
        b"To: friends: one@example.net, \"Two, Esq.\" <two@example.net>;,\n"
        b"  three@example.net (a comment),\n"
        b"\t=?utf-8?q?F=C3=BCnf?= <five@example.net>\n"
        b"Cc: \"quoted local\"@example.net, <six@example.net>\n"
        b"\nbody\n"
    )
    result = run("-t", input=message)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert got.rcpt_tos == [
        "one@example.net", "two@example.net", "three@example.net", "five@example.net",
        '"quoted local"@example.net', "six@example.net",
    ]


def test_t_mode_resent_headers_win(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    message = b"From: a@example.org\nTo: original@example.net\nResent-To: new@example.net\n\nbody\n"
    assert run("-t", input=message).returncode == 0
    assert smtp_server.sink.messages[0].rcpt_tos == ["new@example.net"]


@pytest.mark.parametrize(("fields", "sender"), [
    (b"Resent-Sender: desk@example.org\nResent-From: boss@example.org\n", "desk@example.org"),
    (b"Resent-From: boss@example.org\n", "boss@example.org"),
])
def test_t_mode_resent_message_sender_is_resent_sender_or_from(run: Runner, smtp_server: SmtpServer, fields: bytes,
                                                               sender: str) -> None:
    # RFC 5322 3.6.6: the resent block names who resent it; From: is the original author.
    run.write_config(config_for(smtp_server))
    message = b"From: a@example.org\nTo: original@example.net\n" + fields + b"Resent-To: new@example.net\n\nbody\n"
    assert run("-t", input=message).returncode == 0
    [received] = smtp_server.sink.messages
    assert (received.mail_from, received.rcpt_tos) == (sender, ["new@example.net"])


def test_t_mode_without_recipients_is_a_data_error(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    result = run("-t", input=b"From: a@example.org\nSubject: none\n\nbody\n")
    assert result.returncode == 65
    assert "No recipients found" in result.stderr
    assert smtp_server.sink.messages == []


def test_git_send_email_style(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    result = run("-i", "-f", "dev@example.org", "a@example.net", "b@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert smtp_server.sink.messages[0].rcpt_tos == ["a@example.net", "b@example.net"]


def test_lone_dot_never_truncates_and_is_stuffed(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    body = b"line one\n.\n..two dots\n.\nlast\n"
    result = run("-oi", "x@example.net", input=b"Subject: dots\n\n" + body)
    assert result.returncode == 0, result.stderr
    # aiosmtpd un-stuffs: what it stores is the original, with CRLF line ends.
    assert smtp_server.sink.messages[0].data.endswith(body.replace(b"\n", b"\r\n"))


def test_headers_nobody_touched_arrive_byte_for_byte(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    head = b"From: a@example.org\nSubject:   spaced   out\nX-Long: one\n  two\n\tthree\n"
    head += b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
    head += b"Message-ID: <kept@example.org>\n"
    assert run("x@example.net", input=head + b"\nbody\n").returncode == 0
    data = smtp_server.sink.messages[0].data
    assert data.startswith(head.replace(b"\n", b"\r\n") + b"\r\n")


def test_from_is_generated_with_full_name(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    result = run("-F", "José Q. Public", "-f", "jq@example.org", "x@example.net", input=b"Subject: x\n\nbody\n")
    assert result.returncode == 0, result.stderr
    from email import message_from_bytes, policy

    parsed = message_from_bytes(smtp_server.sink.messages[0].data, policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "José Q. Public"
    assert parsed["From"].addresses[0].addr_spec == "jq@example.org"


def test_bcc_is_removed_without_t_too(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    assert run("x@example.net", input=b"Bcc: secret@example.net\nSubject: x\n\nbody\n").returncode == 0
    assert b"secret" not in smtp_server.sink.messages[0].data


def test_empty_input_still_sends_a_message(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    assert run("x@example.net", input=b"").returncode == 0
    assert b"Date: " in smtp_server.sink.messages[0].data


def test_message_without_header_block(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    assert run("x@example.net", input=b"just text\nno headers\n").returncode == 0
    data = smtp_server.sink.messages[0].data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Date: " in head
    assert body == b"just text\r\nno headers\r\n"


def test_rejected_recipient_sends_nothing_and_names_it(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    smtp_server.sink.rcpt_replies["bad@example.net"] = "550 5.1.1 <bad@example.net>: no such user"
    result = run("good@example.net", "bad@example.net", input=MESSAGE)
    assert result.returncode == 67
    assert "bad@example.net: 550 5.1.1 <bad@example.net>: no such user" in result.stderr
    assert smtp_server.host in result.stderr
    assert smtp_server.sink.messages == []


def test_temporary_recipient_failure_exits_tempfail(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    smtp_server.sink.rcpt_replies["x@example.net"] = "451 4.3.0 try later"
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert "451 4.3.0 try later" in result.stderr


@pytest.mark.parametrize(
    ("knob", "reply", "code"),
    [("mail_reply", "553 5.7.1 sender rejected", 69), ("data_reply", "554 5.6.0 content rejected", 69),
     ("data_reply", "452 4.3.1 out of space", 75)],
)
def test_server_refusals_map_to_exit_codes(run: Runner, smtp_server: SmtpServer, knob: str, reply: str,
                                           code: int) -> None:
    run.write_config(config_for(smtp_server))
    setattr(smtp_server.sink, knob, reply)
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == code
    assert reply in result.stderr


def test_connection_refused_is_temporary_and_names_the_server(run: Runner) -> None:
    port = free_port()
    run.write_config(f"hostname 127.0.0.1:{port}\n")
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert f"127.0.0.1:{port}" in result.stderr


def test_identity_selected_by_sender(run: Runner, smtp_server: SmtpServer) -> None:
    other = free_port()
    run.write_config(f"hostname 127.0.0.1:{other}\n\nidentity work@example.com\n  hostname {smtp_server.hostport}\n")
    assert run("-f", "work@example.com", "x@example.net", input=MESSAGE).returncode == 0
    assert smtp_server.sink.messages[0].mail_from == "work@example.com"
    assert run("-f", "home@example.com", "x@example.net", input=MESSAGE).returncode == 75  # default: nothing listens


def test_named_default_identity_supplies_the_sender(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"identity me@example.com\n  hostname {smtp_server.hostport}\n")
    assert run("x@example.net", input=b"Subject: x\n\nbody\n").returncode == 0
    got = smtp_server.sink.messages[0]
    assert got.mail_from == "me@example.com"
    assert b"\r\nFrom: me@example.com\r\n" in got.data


def test_verbose_and_transcript(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server))
    transcript = run.home / "x.log"
    result = run("-v", "-X", str(transcript), "x@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    log = transcript.read_text()
    assert "C: MAIL FROM:<" in log and "C: RCPT TO:<x@example.net>" in log and "S: 250" in log
    assert "C: RCPT TO:<x@example.net>" in result.stderr


@pytest.mark.parametrize("bad", ["x@example.net\r\nRCPT TO:<evil@example.net>", "x@example.net\nBcc: y"])
def test_line_breaks_in_recipients_are_refused(run: Runner, smtp_server: SmtpServer, bad: str) -> None:
    run.write_config(config_for(smtp_server))
    result = run(bad, input=MESSAGE)
    assert result.returncode in (64, 65)
    assert "Traceback" not in result.stderr
    assert smtp_server.sink.messages == []


def test_unknown_flag_is_a_usage_error(run: Runner) -> None:
    result = run("-z", "x@example.net")
    assert result.returncode == 64
    assert "-z" in result.stderr


def test_missing_config_is_a_config_error(run: Runner) -> None:
    if os.path.exists("/etc/esmtprc"):
        pytest.skip("this machine has /etc/esmtprc")
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert ".esmtprc" in result.stderr


def test_group_readable_config_is_refused(run: Runner, smtp_server: SmtpServer) -> None:
    path = run.write_config(config_for(smtp_server) + 'password "secret"\n')
    path.chmod(0o644)
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert str(path) in result.stderr
    assert smtp_server.sink.messages == []


def test_version_and_help(run: Runner) -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("esmtp ")
    assert run("--help").returncode == 0


def test_program_name_comes_from_argv0_basename(run: Runner, tmp_path: Path) -> None:
    link = tmp_path / "bin" / "mailq"
    link.parent.mkdir()
    link.symlink_to(entry_point("esmtp"))
    import subprocess

    proc = subprocess.run([str(link)], capture_output=True, env=run.env(ESMTP_QUEUE_DIR=str(tmp_path / "q")))
    assert proc.returncode == 0
    assert b"empty" in proc.stdout.lower()


def test_newaliases_is_accepted(run: Runner) -> None:
    assert run(program="newaliases").returncode == 0


def test_broken_third_party_plugin_is_skipped(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    dist = tmp_path / "site" / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[esmtp.plugins]\nbroken = no_such_module_anywhere\n")
    run.write_config(config_for(smtp_server))
    result = run("x@example.net", input=MESSAGE, env=run.env(PYTHONPATH=str(tmp_path / "site")))
    assert result.returncode == 0, result.stderr
    assert "plugin 'broken' from broken-plugin failed to load" in result.stderr
    assert len(smtp_server.sink.messages) == 1


def test_disabled_plugin_is_not_used(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config_for(smtp_server, "disable_plugins fixup_date\n"))
    assert run("x@example.net", input=b"Subject: x\n\nbody\n").returncode == 0
    assert b"\r\nDate:" not in smtp_server.sink.messages[0].data
    assert run("x@example.net", input=b"Subject: x\n\nbody\n",
               env=run.env(ESMTP_DISABLE_PLUGINS="fixup_message_id")).returncode == 0


def test_server_greeting_refusal_is_reported(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"greeting": "554 5.3.2 go away"})
    run.write_config(f"hostname {server.hostport}\n")
    result = run("x@example.net", input=MESSAGE)
    assert result.returncode == 69
    assert "554 5.3.2 go away" in result.stderr


def test_generated_date_and_message_id_parse_as_rfc5322() -> None:
    import time
    from email.utils import parsedate_to_datetime

    from esmtp_plugins.fixup_date import rfc5322_date
    from esmtp_plugins.fixup_message_id import new_message_id

    now = time.time()
    assert abs(parsedate_to_datetime(rfc5322_date(now)).timestamp() - int(now)) < 1
    first, second = new_message_id("host.example"), new_message_id("host.example")
    assert first != second and first.startswith("<") and first.endswith("@host.example>")


def test_silent_server_times_out_as_a_temporary_failure(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"greeting": SILENCE})  # accepts the connection and never greets
    run.write_config(f"hostname {server.hostport}\ntimeout 1\n")
    result = run("x@example.net", input=MESSAGE, timeout=30)
    assert result.returncode == 75
    assert server.hostport in result.stderr and "timed out" in result.stderr.lower()


def test_errors_say_whether_they_are_temporary() -> None:
    """Whether to try again is the error's class (or its own word), and the exit code follows from it."""
    from esmtp.errors import (
        DeliveryFailed,
        EsmtpError,
        LocalDeliveryError,
        PermanentFailure,
        RecipientsRejected,
        TemporaryFailure,
    )

    assert TemporaryFailure("x").temporary and TemporaryFailure("x").exit_code == 75
    assert not PermanentFailure("x").temporary and PermanentFailure("x").exit_code == 69
    later = RecipientsRejected("r", rejected={"a@x": "450 4.2.0 later", "b@x": "451 busy"})
    assert later.temporary and later.exit_code == 75 and later.refused_for_now("a@x")
    mixed = RecipientsRejected("r", rejected={"a@x": "450 later", "b@x": "550 5.1.1 no such user"})
    assert not mixed.temporary and mixed.exit_code == 67 and not mixed.refused_for_now("b@x")
    local = LocalDeliveryError("mailbox locked", temporary=True)
    assert local.temporary and local.exit_code == 75
    assert not LocalDeliveryError("bad").temporary and LocalDeliveryError("bad").exit_code == 71
    assert EsmtpError("old plugin", exit_code=75).temporary  # plugins written before `temporary` existed
    assert DeliveryFailed([TemporaryFailure("a"), later], []).temporary
    both = DeliveryFailed([TemporaryFailure("a"), PermanentFailure("b")], [])
    assert not both.temporary and both.exit_code == 69
