"""Failover (issue 23): ``hostname`` with several servers, tried in order on a temporary failure, never on a permanent
one, never after the final dot went out without an answer; then ``fallback_identity``; then the queue. Every test
runs in a process of its own and through the warm relay (the ``run`` fixture of relay_support), and counts the copies
each real server received."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from relay_support import run_in_both_modes  # noqa: F401  (the `run` fixture: every test here runs in both modes)
from support import DROP, Reply, Runner, SmtpServer, StartScripted, free_port

from esmtp.config.parser import parse_config
from esmtp.errors import ConfigError

MESSAGE = b"From: alice@example.org\nSubject: alert\n\nthe disk is failing\n"


def send(run: Runner, *args: str) -> tuple[int, str]:
    result = run("-v", *args, "-f", "alice@example.org", "root@example.net", input=MESSAGE)
    return result.returncode, result.stdout + result.stderr


def test_first_server_down_the_second_takes_it(run: Runner, smtp_server: SmtpServer) -> None:
    closed = free_port()
    log = run.home / "delivery.log"
    run.write_config(f"hostname 127.0.0.1:{closed}, {smtp_server.hostport}\nlogfile {log}\n")
    code, output = send(run)
    assert code == 0, output
    assert len(smtp_server.sink.messages) == 1
    assert f"trying the next server, {smtp_server.hostport}" in output
    assert f"{smtp_server.hostport} took the message" in output
    line = log.read_text().splitlines()[-1]
    assert "host=127.0.0.1 " in line and "exitcode=EX_OK" in line


@pytest.mark.parametrize("stage", ["greeting", "MAIL", "RCPT", "DATA", "dot"])
def test_a_4xx_moves_to_the_next_server(run: Runner, scripted_server: StartScripted, smtp_server: SmtpServer,
                                       stage: str) -> None:
    reply = "421 4.3.2 closing" if stage == "greeting" else "451 4.3.0 try again later"
    first = scripted_server({stage: reply})
    run.write_config(f"hostname {first.hostport}, {smtp_server.hostport}\n")
    code, output = send(run)
    assert code == 0, output
    assert len(smtp_server.sink.messages) == 1  # one copy, at the second server
    if stage == "dot":  # the first got the data but refused it: it does not have the message
        assert len(first.messages) == 1 and first.messages[0].reply.startswith("451")
    else:
        assert first.messages == []


def test_a_permanent_refusal_does_not_fail_over(run: Runner, scripted_server: StartScripted,
                                                smtp_server: SmtpServer) -> None:
    first = scripted_server({"MAIL": "550 5.7.1 sender refused"})
    run.write_config(f"hostname {first.hostport}, {smtp_server.hostport}\n")
    code, output = send(run)
    assert code == 69, output
    assert "550 5.7.1 sender refused" in output
    assert smtp_server.sink.messages == [] and smtp_server.sink.connections <= 1  # (the server's own start probe)


def test_no_failover_in_the_final_dot_window(run: Runner, scripted_server: StartScripted,
                                             smtp_server: SmtpServer) -> None:
    """The connection breaks after the final dot, before the answer: the first server may have the message, so it
    does not go to the second (it would be delivered twice); 75, as without failover."""
    first = scripted_server({"dot": DROP})
    run.write_config(f"hostname {first.hostport}, {smtp_server.hostport}\n")
    code, output = send(run)
    assert code == 75, output
    assert len(first.messages) == 1
    assert smtp_server.sink.messages == []


def test_fallback_identity_with_its_own_auth(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(
        f"identity alice@example.org\n  hostname 127.0.0.1:{free_port()}, 127.0.0.1:{free_port()}\n"
        "  fallback_identity backup@example.net\n"
        f"identity backup@example.net\n  hostname {auth_server.hostport}\n  username alice\n  password s3cret\n"
        "  auth_plaintext enabled\n")
    code, output = send(run)
    assert code == 0, output
    assert "trying fallback_identity backup@example.net" in output
    [got] = auth_server.sink.messages
    assert got.mail_from == "alice@example.org"
    assert [user for _, user in auth_server.sink.auths] == ["alice"]  # the fallback's own login


def test_every_server_and_the_fallback_down_is_75_naming_each(run: Runner) -> None:
    one, two, three = free_port(), free_port(), free_port()
    run.write_config(f"identity alice@example.org\n  hostname 127.0.0.1:{one}, 127.0.0.1:{two}\n"
                     "  fallback_identity backup@example.net\n"
                     f"identity backup@example.net\n  hostname 127.0.0.1:{three}\n")
    code, output = send(run)
    assert code == 75, output
    assert "every server failed for now; the message was not sent:" in output
    for port in (one, two, three):
        assert f"127.0.0.1 on port {port}" in output


def test_when_all_fail_the_queue_takes_it_and_the_flush_follows_the_order(
        run: Runner, scripted_server: StartScripted, smtp_server: SmtpServer) -> None:
    first = scripted_server({"MAIL": "451 4.3.0 later"})
    closed = free_port()
    run.write_config(f"queue fallback\nhostname {first.hostport}, 127.0.0.1:{closed}\n")
    code, output = send(run)
    assert code == 0 and "queued as" in output, output
    # The second server comes up; the first still says 4xx: the flush moves on to the second, as a send does.
    run.write_config(f"queue fallback\nhostname {first.hostport}, {smtp_server.hostport}\n")
    flushed = run("-v", "--flush", program="esmtp")
    assert flushed.returncode == 0, flushed.stderr
    assert len(smtp_server.sink.messages) == 1 and first.messages == []
    assert run("-bp").stdout == "Mail queue is empty\n"


def test_a_failed_server_is_remembered_by_a_long_lived_process(run: Runner, scripted_server: StartScripted,
                                                               smtp_server: SmtpServer) -> None:
    first = scripted_server({"greeting": Reply("421 4.3.2 busy", then=DROP)})
    run.write_config(f"hostname {first.hostport}, {smtp_server.hostport}\n")
    for _ in range(3):
        code, output = send(run)
        assert code == 0, output
    assert len(smtp_server.sink.messages) == 3
    in_process = run.mode_env.get("ESMTP_RELAY_DAEMON") == "0"
    # A run of its own tries the first server every time; the warm relay remembers that it failed.
    assert len(first.connections) == (3 if in_process else 1)


# ---- the grammar ---------------------------------------------------------------------------------------------------


def test_each_server_may_have_its_own_tls_mode() -> None:
    config = parse_config("hostname a.example, b.example:2465/smtps, [2001:db8::1]/starttls, username u\n", "rc")
    identity = config.identities[0]
    assert identity.hostname == "a.example" and identity.username == "u"
    assert identity.servers == [("a.example", None), ("b.example:2465", "smtps"), ("[2001:db8::1]", "starttls")]
    from esmtp.smtp.failover import candidates

    one, two, three = candidates(identity)
    assert (one.endpoint(), one.starttls, one.implicit_tls) == (("a.example", 587), "disabled", False)
    assert (two.endpoint(), two.implicit_tls) == (("b.example", 2465), True)
    assert (three.endpoint(), three.starttls, three.implicit_tls) == (("2001:db8::1", 587), "required", False)


def test_a_bad_server_mode_names_the_line() -> None:
    with pytest.raises(ConfigError, match=re.escape("rc:2: hostname 'b.example/tls': after '/' comes smtps")):
        parse_config("identity a@x.org\nhostname a.example, b.example/tls\n", "rc")


def test_a_fallback_identity_that_does_not_exist_is_a_config_error(run: Runner, tmp_path: Path) -> None:
    run.write_config(f"hostname 127.0.0.1:{free_port()}\nfallback_identity nobody@example.org\n")
    code, output = send(run)
    assert code == 78, output
    assert "fallback_identity nobody@example.org names no identity block" in output


def test_the_flush_uses_the_fallback_identity_when_every_server_is_down(run: Runner, smtp_server: SmtpServer) -> None:
    closed = free_port()
    base = f"queue fallback\nidentity alice@example.org\n  hostname 127.0.0.1:{closed}\n"
    run.write_config(base)  # no fallback yet: the message waits in the queue
    code, output = send(run)
    assert code == 0 and "queued as" in output, output
    log = run.home / "flush.log"
    run.write_config(base + f"  fallback_identity backup@example.net\n  logfile {log}\n"
                     f"identity backup@example.net\n  hostname {smtp_server.hostport}\n")
    flushed = run("-v", "--flush", program="esmtp")
    assert flushed.returncode == 0, flushed.stderr
    assert "trying fallback_identity backup@example.net" in flushed.stderr
    assert len(smtp_server.sink.messages) == 1
    assert run("-bp").stdout == "Mail queue is empty\n"
    assert "host=127.0.0.1 " in log.read_text().splitlines()[-1]


def test_bs_follows_the_same_order_and_remembers_the_failed_server(run: Runner, scripted_server: StartScripted,
                                                                   smtp_server: SmtpServer) -> None:
    from test_stdio import Session

    first = scripted_server({"MAIL": "451 4.3.0 try again later"})
    run.write_config(f"hostname {first.hostport}, {smtp_server.hostport}\n")
    session = Session(run)
    client = session.smtplib()
    for index in range(3):
        message = f"From: alice@example.org\r\nSubject: m{index}\r\n\r\nbody\r\n".encode()
        assert client.sendmail("alice@example.org", ["bob@example.net"], message) == {}
    client.quit()
    status, stderr, _ = session.end()
    assert status == 0, stderr
    assert len(smtp_server.sink.messages) == 3 and first.messages == []
    assert len(first.connections) == 1  # tried once, then remembered as failed for the rest of the dialogue


def test_check_and_pretend_show_the_servers_the_path_the_limit_and_the_fallback(run: Runner) -> None:
    path = run.write_config("hostname a.example:587, b.example/smtps\nstarttls required\nproxy_host 127.0.0.1\n"
                            "rate_limit 5/hour\nfallback_identity backup@example.net\n"
                            "identity backup@example.net\nhostname c.example\n")
    checked = run("--check", "-C", str(path), program="esmtp")
    assert checked.returncode == 0, checked.stderr
    assert ("a.example:587 STARTTLS (starttls required), then b.example:465 implicit TLS (smtps enabled), network "
            "through the SOCKS5 proxy 127.0.0.1:1080, rate limit 5/hour, fallback identity backup@example.net") \
        in checked.stdout
    pretend = run("--pretend", "-C", str(path), "bob@example.net", input=b"Subject: x\n\n")
    assert pretend.returncode == 0, pretend.stderr
    for line in ("servers:         a.example:587 STARTTLS (starttls required), then b.example:465 implicit TLS",
                 "network:         through the SOCKS5 proxy 127.0.0.1:1080", "rate limit:      5/hour",
                 "fallback:        identity backup@example.net"):
        assert line in pretend.stdout


def test_a_421_then_a_close_is_reported_with_the_servers_words(run: Runner, scripted_server: StartScripted) -> None:
    """Pipelined MAIL, RCPT and DATA; the server answers MAIL with 421 and hangs up: the error is its 421, not a
    lost connection (RFC 5321 3.8)."""
    server = scripted_server({"MAIL": Reply("421 4.3.2 shutting down for maintenance", then=DROP)})
    run.write_config(f"hostname {server.hostport}\n")
    code, output = send(run)
    assert code == 75, output
    assert f"{server.hostport} closed the connection: 421 4.3.2 shutting down for maintenance" in output
