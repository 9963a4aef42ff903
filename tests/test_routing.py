"""Routing: local names to the MDA, addresses to SMTP, qualifydomain, force_mda; mixed delivery where either side
fails; preconnect/postconnect; force reverse_path with %u."""

from __future__ import annotations

import os
import pwd

import pytest
from support import Runner, SmtpServer, free_port
from test_mda import calls, mailbox_messages, path_env

from esmtp.config.model import Config, Identity
from esmtp.envelope import expand_mask
from esmtp.route import esmtp_route
from esmtp.types import Envelope

MESSAGE = b"From: Alice <alice@example.org>\nTo: bob@example.net, carol\nSubject: mixed\n\nfor both sides\n"
LOGIN = pwd.getpwuid(os.getuid()).pw_name


def config(hostname: str, extra: str = "", mda: str = "procmail -f %F -d %T") -> str:
    return f"hostname {hostname}\nmda '{mda}'\n{extra}"


# --------------------------------------------------------------------------------------------------------------------
# The core router
# --------------------------------------------------------------------------------------------------------------------


def route(recipients: list[str], *, qualify: str | None = None, force_mda: str | None = None) -> dict[str, list[str]]:
    identity = Identity(address=None, qualifydomain=qualify)
    cfg = Config(path=None, identities=[identity], default=identity, mda="procmail -d %T", force_mda=force_mda)
    return esmtp_route(envelope=Envelope("a@example.org", recipients, identity), config=cfg).legs


def test_local_names_go_to_the_mda_and_addresses_to_smtp() -> None:
    legs = route(["bob@example.net", "carol", "dave@example.com", "root", ""])
    assert legs == {"smtp": ["bob@example.net", "dave@example.com"], "mda": ["carol", "root", ""]}


def test_qualifydomain_sends_everything_by_smtp() -> None:
    legs = route(["carol", "bob@example.net", "carol@example.com"], qualify="example.com")
    assert legs == {"smtp": ["carol@example.com", "bob@example.net"]}


def test_force_mda_sends_everything_to_one_name() -> None:
    assert route(["bob@example.net", "carol"], force_mda="someuser") == {"mda": ["someuser"]}


def test_qualifydomain_wins_over_force_mda() -> None:
    legs = route(["bob@example.net", "carol"], qualify="example.com", force_mda="someuser")
    assert legs == {"smtp": ["bob@example.net", "carol@example.com"]}


# --------------------------------------------------------------------------------------------------------------------
# Mixed local and remote delivery, end to end
# --------------------------------------------------------------------------------------------------------------------


def test_mixed_delivery_gives_each_side_the_same_complete_message(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport))
    result = run("-f", "alice@example.org", "bob@example.net", "carol", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    [remote] = smtp_server.sink.messages
    assert remote.rcpt_tos == ["bob@example.net"]
    [local] = mailbox_messages(run, "carol")
    assert calls(run)[0]["argv"] == ["-f", "alice@example.org", "-d", "carol"]
    assert calls(run)[0]["stdin"].encode() == remote.data.replace(b"\r\n", b"\n")
    assert local["Message-ID"] and local["Message-ID"] in remote.data.decode()


def test_smtp_down_the_mda_still_gets_the_complete_message(run: Runner) -> None:
    run.write_config(config(f"127.0.0.1:{free_port()}"))
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run))
    assert result.returncode == 75  # temporary: the SMTP side may be retried
    assert "Connection refused" in result.stderr or "connect" in result.stderr.lower()
    assert "delivered by mda to carol" in result.stderr
    [local] = mailbox_messages(run, "carol")
    assert local["Subject"] == "mixed" and local.get_payload() == "for both sides\n"


def test_smtp_recipient_refused_the_mda_still_delivers(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["bob@example.net"] = "550 5.1.1 no such user"
    run.write_config(config(smtp_server.hostport))
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run))
    assert result.returncode == 67
    assert "bob@example.net: 550 5.1.1 no such user" in result.stderr
    assert "delivered by mda to carol" in result.stderr
    assert smtp_server.sink.messages == []
    assert mailbox_messages(run, "carol")[0].get_payload() == "for both sides\n"


def test_mda_fails_the_smtp_copy_still_goes_out(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport))
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run, FAKE_MDA_EXIT="3"))
    assert result.returncode == 71
    assert "local delivery to carol failed: MDA `procmail -f %F -d %T` exited with status 3" in result.stderr
    assert "delivered by smtp to bob@example.net" in result.stderr
    [remote] = smtp_server.sink.messages
    assert remote.data.endswith(b"\r\n\r\nfor both sides\r\n")


def test_both_sides_fail_and_both_are_reported(run: Runner) -> None:
    run.write_config(config(f"127.0.0.1:{free_port()}"))
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run, FAKE_MDA_EXIT="75"))
    assert result.returncode == 75  # both temporary
    assert "exited with status 75 (a temporary failure)" in result.stderr
    assert "127.0.0.1" in result.stderr
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run, FAKE_MDA_EXIT="1"))
    assert result.returncode == 71  # the permanent failure decides


def test_queue_fallback_keeps_only_the_remote_side(run: Runner) -> None:
    run.write_config(config(f"127.0.0.1:{free_port()}", "queue fallback\n"))
    env = path_env(run, ESMTP_QUEUE_DIR=str(run.home / "queue"))
    result = run("bob@example.net", "carol", input=MESSAGE, env=env)
    assert result.returncode == 0, result.stderr
    assert len(mailbox_messages(run, "carol")) == 1
    listing = run("-bp", env=env)
    assert "bob@example.net" in listing.stdout and "carol" not in listing.stdout


def test_qualifydomain_end_to_end(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport, "qualifydomain example.com\n"))
    result = run("carol", "bob@example.net", "carol@example.com", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    [remote] = smtp_server.sink.messages
    assert remote.rcpt_tos == ["carol@example.com", "bob@example.net"]
    assert calls(run) == []


def test_force_mda_end_to_end(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport, "force_mda someuser\n"))
    before = smtp_server.sink.connections  # aiosmtpd's own readiness probe may have counted one
    result = run("-t", "-f", "alice@example.org", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    [call] = calls(run)
    assert call["argv"] == ["-f", "alice@example.org", "-d", "someuser"]  # no trailing space (esmtp's E22)
    assert smtp_server.sink.connections == before


def test_zero_local_recipients_never_start_the_mda(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport))
    assert run("bob@example.net", input=MESSAGE, env=path_env(run)).returncode == 0
    assert calls(run) == []


# --------------------------------------------------------------------------------------------------------------------
# preconnect / postconnect
# --------------------------------------------------------------------------------------------------------------------


def test_pre_and_postconnect_run_around_the_session(run: Runner, smtp_server: SmtpServer) -> None:
    log = run.home / "hooks.log"
    hooks = f'preconnect "echo pre >> {log}"\npostconnect "echo post >> {log}"\n'
    run.write_config(config(smtp_server.hostport, hooks))
    result = run("-v", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "pre\npost\n"
    assert f"Executing pre-connect command: echo pre >> {log}" in result.stderr
    assert len(smtp_server.sink.messages) == 1


def test_preconnect_failure_is_temporary_and_nothing_connects(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport, 'preconnect "exit 7"\n'))
    before = smtp_server.sink.connections
    result = run("bob@example.net", "carol", input=MESSAGE, env=path_env(run))
    assert result.returncode == 75
    assert 'Pre-connect command "exit 7" exited with non-zero status 7' in result.stderr
    assert smtp_server.sink.connections == before
    assert "delivered by mda to carol" in result.stderr  # the local side is independent


def test_postconnect_failure_only_warns(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport, 'postconnect "exit 9"\n'))
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 0  # the mail was sent (esmtp 1.2 exited 70: E21)
    warning = 'warning: Post-connect command "exit 9" exited with non-zero status 9 (the message was sent)'
    assert warning in result.stderr
    assert len(smtp_server.sink.messages) == 1


def test_postconnect_skipped_when_the_session_fails(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["bob@example.net"] = "550 5.1.1 no such user"
    log = run.home / "hooks.log"
    run.write_config(config(smtp_server.hostport, f'postconnect "echo post >> {log}"\n'))
    assert run("bob@example.net", input=MESSAGE).returncode == 67
    assert not log.exists()


def test_preconnect_not_run_for_local_only_delivery(run: Runner) -> None:
    log = run.home / "hooks.log"
    run.write_config(config("127.0.0.1:9", f'preconnect "echo pre >> {log}"\n'))
    assert run("carol", input=MESSAGE, env=path_env(run)).returncode == 0
    assert not log.exists()


# --------------------------------------------------------------------------------------------------------------------
# force reverse_path and its mask
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "expanded"),
    [
        ("%u@example.org", f"{LOGIN}@example.org"),
        ("100%%@example.org", "100%@example.org"),
        ("a%xb@example.org", "ab@example.org"),  # esmtp drops an unknown %x, both characters
        ("bounce@example.org%", "bounce@example.org"),  # and a trailing %
        ("plain@example.org", "plain@example.org"),
    ],
)
def test_expand_mask(mask: str, expanded: str) -> None:
    assert expand_mask(mask) == expanded


def test_force_reverse_path_end_to_end(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(config(smtp_server.hostport, 'force reverse_path "%u+bounces@example.org"\n'))
    result = run("-f", "alice@example.org", "bob@example.net", "carol", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert smtp_server.sink.messages[0].mail_from == f"{LOGIN}+bounces@example.org"
    assert calls(run)[0]["argv"][:2] == ["-f", "alice@example.org"]  # %F stays what -f said, as esmtp 1.2
