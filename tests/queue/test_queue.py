"""The mail queue end to end: the installed commands, a real SMTP server, real background runs and real kills."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import Runner, SmtpServer, entry_point, free_port, wait_for_queue_runner

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: hello\n\nHi Bob.\n"


def qdir(run: Runner) -> Path:
    return run.home / ".local" / "state" / "esmtp" / "queue"


def configure(run: Runner, port: int, extra: str = "") -> None:
    run.write_config(f"hostname 127.0.0.1:{port}\nqueue always\n{extra}")


def wait_for_runner(run: Runner, timeout: float = 30) -> None:
    """Wait until no background run holds the runner lock (it is taken before the queueing command exits)."""
    wait_for_queue_runner(qdir(run), timeout)


def later(run: Runner, seconds: float) -> dict[str, str]:
    """The environment of a run whose queue clock is ``seconds`` ahead (the queue's test clock: queue/clock.py)."""
    return run.env(ESMTP_QUEUE_CLOCK_OFFSET=str(seconds))


def entries(run: Runner, failed: bool = False) -> list[dict[str, object]]:
    folder = qdir(run) / "failed" if failed else qdir(run)
    if not folder.exists():
        return []
    texts = [p.read_text() for p in sorted(folder.glob("*.json"))]
    return [json.loads(text) for text in texts if not text.startswith("D")]  # "D": delivered, files not yet removed


def message(subject: str) -> bytes:
    return f"From: alice@example.org\nTo: bob@example.net\nSubject: {subject}\n\nbody of {subject}\n".encode()


def subjects(server: SmtpServer) -> Counter[str]:
    found = Counter[str]()
    for got in server.sink.messages:
        match = re.search(rb"\r\nSubject: ([^\r\n]*)", b"\r\n" + got.data)
        found[match.group(1).decode() if match else "?"] += 1
    return found


def queue_offline(run: Runner, count: int, extra: str = "") -> int:
    """Queue ``count`` messages while the smarthost is down (a port nobody listens on); return that port."""
    dead = free_port()
    configure(run, dead, extra)
    for index in range(count):
        result = run("-f", "alice@example.org", "bob@example.net", input=message(f"m{index}"))
        assert result.returncode == 0, result.stderr
        assert result.stdout == result.stderr == ""
    wait_for_runner(run)
    return dead


# ---- queueing and delivery -----------------------------------------------------------------------------------------


def test_queued_while_down_then_delivered_exactly_once(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 1)
    [entry] = entries(run)
    assert entry["attempts"] == 1 and "Connect" in str(entry["last_error"])
    listing = run(program="mailq")
    assert listing.returncode == 0
    assert entry["id"] in listing.stdout and "<alice@example.org>" in listing.stdout
    assert "bob@example.net" in listing.stdout and "attempts: 1" in listing.stdout
    configure(run, smtp_server.port)
    result = run("--flush", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert subjects(smtp_server) == {"m0": 1}
    assert run("-q").returncode == 0  # nothing left to send twice
    assert len(smtp_server.sink.messages) == 1
    assert run("-bp").stdout == "Mail queue is empty\n"
    assert entries(run) == [] and entries(run, failed=True) == []


def test_background_run_delivers_and_keeps_quiet(run: Runner, smtp_server: SmtpServer) -> None:
    configure(run, smtp_server.port)
    result = run("-F", "Full Name", "-f", "alice@example.org", "bob@example.net", "Carol <carol@example.net>",
                 input=b"Subject: queued\n\nHi.\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    wait_for_runner(run)
    [got] = smtp_server.sink.messages
    assert got.mail_from == "alice@example.org"
    assert got.rcpt_tos == ["bob@example.net", "carol@example.net"]  # arguments with spaces survive (W1)
    head = got.data.split(b"\r\n\r\n")[0]
    assert b"From: Full Name <alice@example.org>" in head
    assert head.count(b"\r\nDate: ") == 1 and head.count(b"\r\nMessage-ID: ") == 1  # fix-ups ran once
    assert got.data.endswith(b"\r\n\r\nHi.\r\n")
    assert entries(run) == []


def test_many_messages_go_over_one_connection_and_one_login(run: Runner, auth_server: SmtpServer) -> None:
    login = "username alice\npassword s3cret\nauth_plaintext enabled\n"
    queue_offline(run, 25, login)
    assert len(entries(run)) == 25
    configure(run, auth_server.port, login)
    auth_server.sink.clear()  # forget the probe connection the test server makes to itself when it starts
    result = run("--flush", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert subjects(auth_server) == {f"m{i}": 1 for i in range(25)}
    assert auth_server.sink.connections == 1
    assert auth_server.sink.auths == [("PLAIN", "alice")]


def test_each_identity_gets_its_own_connection(run: Runner, smtp_server: SmtpServer, auth_server: SmtpServer) -> None:
    def write(default_port: int, work_port: int) -> None:
        run.write_config(
            f"hostname 127.0.0.1:{default_port}\nqueue always\n\n"
            f"identity work@example.com\n  hostname 127.0.0.1:{work_port}\n  username alice\n  password s3cret\n"
            "  auth_plaintext enabled\n"
        )

    write(free_port(), free_port())
    for index in range(4):
        sender = "work@example.com" if index % 2 else "home@example.org"
        assert run("-f", sender, "bob@example.net", input=message(f"m{index}")).returncode == 0
    wait_for_runner(run)
    write(smtp_server.port, auth_server.port)
    smtp_server.sink.clear()
    auth_server.sink.clear()
    result = run("-q")
    assert result.returncode == 0, result.stderr
    assert subjects(smtp_server) == {"m0": 1, "m2": 1} and smtp_server.sink.connections == 1
    assert subjects(auth_server) == {"m1": 1, "m3": 1} and auth_server.sink.connections == 1
    assert auth_server.sink.auths == [("PLAIN", "alice")] and smtp_server.sink.auths == []


# ---- preconnect and postconnect --------------------------------------------------------------------------------------


def test_flush_runs_preconnect_and_postconnect_around_the_connection(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 3)
    log = run.home / "hooks.log"
    configure(run, smtp_server.port, f'preconnect "echo pre >> {log}"\npostconnect "echo post >> {log}"\n')
    smtp_server.sink.clear()
    result = run("-q")
    assert result.returncode == 0, result.stderr
    assert subjects(smtp_server) == {"m0": 1, "m1": 1, "m2": 1} and smtp_server.sink.connections == 1
    assert log.read_text() == "pre\npost\n"  # once around the one connection, not once per message
    assert entries(run) == []


def test_failing_preconnect_defers_the_group_and_sends_nothing(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 2)
    before = {str(e["id"]): e for e in entries(run)}
    marker = run.home / "pre-ran"
    configure(run, smtp_server.port, f'preconnect "touch {marker}; exit 3"\npostconnect "touch {marker}.post"\n')
    smtp_server.sink.clear()
    result = run("-q")
    assert result.returncode == 75
    assert marker.exists() and not Path(f"{marker}.post").exists()
    assert smtp_server.sink.connections == 0 and smtp_server.sink.messages == []
    after = {str(e["id"]): e for e in entries(run)}
    assert after.keys() == before.keys()  # still queued, and due at the next flush (the server was never reached)
    assert all(e["last_error_kind"] == "connect" for e in after.values())
    configure(run, smtp_server.port, f'preconnect "touch {marker}"\n')
    assert run("-q").returncode == 0
    assert subjects(smtp_server) == {"m0": 1, "m1": 1} and entries(run) == []


def test_postconnect_failure_is_a_warning_in_the_flush_log(run: Runner, smtp_server: SmtpServer) -> None:
    configure(run, smtp_server.port, 'postconnect "exit 4"\n')
    result = run("-f", "alice@example.org", "bob@example.net", input=message("sent"))
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    wait_for_runner(run)
    assert subjects(smtp_server) == {"sent": 1} and entries(run) == []
    log = (qdir(run) / "flush.log").read_text()
    assert 'warning: Post-connect command "exit 4" exited with non-zero status 4 (the mail was sent)' in log


def test_postconnect_not_run_when_nothing_was_accepted(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 1)
    marker = run.home / "post-ran"
    smtp_server.sink.rcpt_replies["bob@example.net"] = "451 4.2.1 mailbox busy"
    configure(run, smtp_server.port, f'postconnect "touch {marker}"\n')
    assert run("-q").returncode == 75
    assert not marker.exists() and len(entries(run)) == 1


def test_local_and_remote_recipients_from_the_queue(run: Runner, smtp_server: SmtpServer) -> None:
    """A queued message is routed again when it is sent: local names go to the MDA, the rest by SMTP."""
    configure(run, smtp_server.port, "mda 'cat >> \"$HOME/inbox-%T\"'\n")
    result = run("-f", "alice@example.org", "bob", "carol@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    wait_for_runner(run)
    [got] = smtp_server.sink.messages
    assert got.rcpt_tos == ["carol@example.net"]
    local = (run.home / "inbox-bob").read_bytes()
    assert local.startswith(b"From: Alice <alice@example.org>\n") and local.endswith(b"\n\nHi Bob.\n")
    assert local.count(b"\nDate: ") == 1
    assert got.data.replace(b"\r\n", b"\n") == local
    assert entries(run) == []


def test_force_mda_gets_its_one_name_once(run: Runner, smtp_server: SmtpServer) -> None:
    """With force_mda every recipient routes to one local name: the MDA runs once, with that name once."""
    configure(run, smtp_server.port, "force_mda someuser\nmda 'cat >> \"$HOME/box-%T\"'\n")
    result = run("-f", "alice@example.org", "bob@example.net", "carol", "dave@example.org", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    wait_for_runner(run)
    assert [p.name for p in run.home.glob("box-*")] == ["box-someuser"]  # not "box-someuser someuser someuser"
    local = (run.home / "box-someuser").read_bytes()
    assert local.count(b"Subject: hello") == 1 and local.endswith(b"\n\nHi Bob.\n")
    assert smtp_server.sink.messages == [] and entries(run) == []


def test_deliver_program_and_selection_by_id(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 3)
    ids = [str(e["id"]) for e in entries(run)]
    configure(run, smtp_server.port)
    assert run(f"-qI{ids[1]}").returncode == 0
    assert subjects(smtp_server) == {"m1": 1}
    assert run(ids[0], program="deliver").returncode == 0
    assert subjects(smtp_server) == {"m0": 1, "m1": 1}
    missing = run("--flush", "0000000000000nothere", program="esmtp")
    assert missing.returncode == 66 and "no queue entry 0000000000000nothere" in missing.stderr
    assert run(program="deliver").returncode == 0
    assert subjects(smtp_server) == {"m0": 1, "m1": 1, "m2": 1}


def test_remove(run: Runner) -> None:
    queue_offline(run, 2)
    first, second = (str(e["id"]) for e in entries(run))
    result = run("--remove", first, program="esmtp")
    assert result.returncode == 0 and result.stdout == f"{first}: removed\n"
    assert [e["id"] for e in entries(run)] == [second]
    again = run("--remove", first, program="esmtp")
    assert again.returncode == 66 and f"no queue entry {first}" in again.stderr


def test_fallback_queues_only_temporary_failures_and_honours_backoff(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nqueue fallback\nqueue_retry 2s\n")
    assert run("bob@example.net", input=message("direct")).returncode == 0
    assert subjects(smtp_server) == {"direct": 1} and entries(run) == []
    smtp_server.sink.data_reply = "451 4.3.0 try again later"
    result = run("bob@example.net", input=message("later"))
    assert result.returncode == 0, result.stderr
    [entry] = entries(run)
    assert entry["attempts"] == 1 and entry["last_error_kind"] == "reply" and "451" in str(entry["last_error"])
    smtp_server.sink.data_reply = None
    assert run("-q").returncode == 0  # the server answered 451: not due before queue_retry
    assert subjects(smtp_server) == {"direct": 1}
    assert run("-q", env=later(run, 2.2)).returncode == 0  # the queue's clock 2.2 s on: due now
    assert subjects(smtp_server) == {"direct": 1, "later": 1}
    # A permanent failure is never queued: it is reported as before.
    smtp_server.sink.rcpt_replies["nobody@example.net"] = "550 5.1.1 no such user"
    refused = run("nobody@example.net", input=message("refused"))
    assert refused.returncode == 67 and entries(run) == []


def test_fallback_flushes_in_the_background_after_a_direct_success(run: Runner, smtp_server: SmtpServer) -> None:
    dead = free_port()
    run.write_config(f"hostname 127.0.0.1:{dead}\nqueue fallback\n")
    result = run("bob@example.net", input=message("offline"))
    assert result.returncode == 0, result.stderr
    assert len(entries(run)) == 1
    run.write_config(f"hostname {smtp_server.hostport}\nqueue fallback\n")
    assert run("bob@example.net", input=message("online")).returncode == 0
    wait_for_runner(run)
    assert subjects(smtp_server) == {"online": 1, "offline": 1}
    assert entries(run) == []


# ---- backoff, expiry, bounces --------------------------------------------------------------------------------------


def test_backoff_then_expiry_then_bounce(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["slow@example.net"] = "451 4.2.1 mailbox busy"
    configure(run, smtp_server.port, "queue_retry 1s\nqueue_max_age 8s\nbounce enabled\n")
    assert run("-f", "alice@example.org", "slow@example.net", input=MESSAGE).returncode == 0
    wait_for_runner(run)
    delays = []
    skew = 0.0  # how far the queue's clock is moved on: each try is made when it is due, without waiting for it
    for _ in range(10):
        if not entries(run):
            break
        [entry] = entries(run)
        delays.append(round(float(entry["next_retry"]) - float(entry["last_attempt"] or 0), 1))  # type: ignore[arg-type]
        skew = max(skew, float(entry["next_retry"]) - time.time() + 0.05)  # type: ignore[arg-type]
        run("-q", env=later(run, skew))
    assert delays[:2] == [1.0, 2.0]  # doubling (8 s leaves room for two tries under load), then cut short
    assert entries(run) == []
    [failed] = entries(run, failed=True)
    assert "expired" in str(failed["failure"])
    bounces = [m for m in smtp_server.sink.messages if m.mail_from in ("", "<>")]
    assert len(bounces) == 1 and bounces[0].rcpt_tos == ["alice@example.org"]
    report = email.message_from_bytes(bounces[0].data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = report.get_payload()[1].get_payload()  # type: ignore[index, union-attr]
    assert status[1]["Final-Recipient"] == "rfc822; slow@example.net" and status[1]["Status"] == "4.4.7"
    listing = run("-bp").stdout
    assert listing.startswith("Mail queue is empty\n") and "Failed permanently" in listing and failed["id"] in listing


def test_permanent_failure_bounces_only_the_refused_recipient(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["bad@example.net"] = "550 5.1.1 no such user"
    configure(run, smtp_server.port, "bounce enabled\n")
    assert run("-f", "alice@example.org", "good@example.net", "bad@example.net", input=MESSAGE).returncode == 0
    wait_for_runner(run)
    normal = [m for m in smtp_server.sink.messages if m.mail_from not in ("", "<>")]
    bounces = [m for m in smtp_server.sink.messages if m.mail_from in ("", "<>")]
    assert [m.rcpt_tos for m in normal] == [["good@example.net"]]
    assert [m.rcpt_tos for m in bounces] == [["alice@example.org"]]
    report = email.message_from_bytes(bounces[0].data, policy=email.policy.default)
    text = report.get_payload()[0].get_content()  # type: ignore[index, union-attr]
    assert "bad@example.net" in text and "550 5.1.1 no such user" in text and "good@example.net" in text
    [failed] = entries(run, failed=True)
    assert failed["failed"] == {"bad@example.net": f"127.0.0.1:{smtp_server.port}: 550 5.1.1 no such user"}
    assert failed["delivered"] == ["good@example.net"]
    assert "failed" in (qdir(run) / "flush.log").read_text()


def test_bounces_never_loop(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["bad@example.net"] = "550 5.1.1 no such user"
    smtp_server.sink.rcpt_replies["alice@example.org"] = "550 5.1.1 sender gone too"
    configure(run, smtp_server.port, "bounce enabled\n")
    assert run("-f", "alice@example.org", "bad@example.net", input=MESSAGE).returncode == 0
    wait_for_runner(run)
    assert smtp_server.sink.messages == []
    failed = entries(run, failed=True)
    assert len(failed) == 2  # the message, and its bounce, which is not bounced
    assert sorted(str(f["sender"]) for f in failed) == ["", "alice@example.org"]
    assert run("-q").returncode == 0 and entries(run) == []


def test_no_bounce_unless_enabled(run: Runner, smtp_server: SmtpServer) -> None:
    queue_offline(run, 1)
    smtp_server.sink.rcpt_replies["bob@example.net"] = "554 5.7.1 rejected"
    configure(run, smtp_server.port)
    result = run("-q")
    assert result.returncode == 69
    assert "failed" in result.stderr and "554 5.7.1 rejected" in result.stderr
    assert smtp_server.sink.messages == []
    assert len(entries(run, failed=True)) == 1


# ---- listing -------------------------------------------------------------------------------------------------------


def test_mailq_without_config_or_queue(run: Runner) -> None:
    result = run(program="mailq")
    assert (result.returncode, result.stdout) == (0, "Mail queue is empty\n")
    run.write_config("hostname 127.0.0.1:1\n")
    assert run("-bp").stdout == "Mail queue is empty\n"
    assert run("-q").returncode == 0


def test_mailq_lists_old_entries_when_queueing_is_disabled(run: Runner) -> None:
    queue_offline(run, 1)
    run.write_config("hostname 127.0.0.1:1\n")
    listing = run("-bp")
    assert str(entries(run)[0]["id"]) in listing.stdout


def test_queue_dir_keyword_and_environment(run: Runner, tmp_path: Path) -> None:
    dead = free_port()
    run.write_config(f"hostname 127.0.0.1:{dead}\nqueue always\nqueue_dir {tmp_path / 'kw'}\n")
    assert run("bob@example.net", input=MESSAGE).returncode == 0
    assert len(list((tmp_path / "kw").glob("*.json"))) == 1
    env = run.env(ESMTP_QUEUE_DIR=str(tmp_path / "env"))
    assert run("bob@example.net", input=MESSAGE, env=env).returncode == 0
    assert len(list((tmp_path / "env").glob("*.json"))) == 1
    assert "1 message" in run("-bp", env=env).stdout


def test_bad_queue_keyword_is_a_config_error(run: Runner) -> None:
    run.write_config("hostname 127.0.0.1:1\nqueue sometimes\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 78 and "queue" in result.stderr


# ---- what queueing costs -------------------------------------------------------------------------------------------


def test_queueing_does_not_load_the_smtp_machinery(run: Runner) -> None:
    configure(run, free_port())
    script = (
        "import sys\n"
        "from esmtp.cli import main\n"
        "code = main(['sendmail', '-f', 'alice@example.org', 'bob@example.net'])\n"
        "print(code, sorted(m for m in ('asyncio', 'ssl', 'aiosmtplib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=MESSAGE, capture_output=True, env=run.env())
    assert proc.stdout.decode() == "0 []\n", proc.stderr.decode()
    wait_for_runner(run)
    assert len(entries(run)) == 1


def test_full_disk_fails_loudly_and_leaves_no_entry(run: Runner, tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (needs root)")
    try:
        configure(run, free_port())
        env = run.env(ESMTP_QUEUE_DIR=str(mount / "queue"))
        big = MESSAGE + b"x" * 1_000_000
        result = run("bob@example.net", input=big, env=env)
        assert result.returncode == 73
        assert "could not be queued" in result.stderr and "No space left on device" in result.stderr
        assert list((mount / "queue").glob("*.json")) == list((mount / "queue").glob("*.eml")) == []
        assert list((mount / "queue" / "tmp").iterdir()) == []
        assert run("-bp", env=env).stdout == "Mail queue is empty\n"
        assert run("bob@example.net", input=MESSAGE, env=env).returncode == 0  # small mail still fits
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_unwritable_queue_fails_loudly(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    configure(run, free_port())
    result = run("bob@example.net", input=MESSAGE, env=run.env(ESMTP_QUEUE_DIR=str(tmp_path / "file" / "q")))
    assert result.returncode == 73 and "could not be queued" in result.stderr


def test_entry_point_exists() -> None:
    assert os.path.exists(entry_point("deliver")) and os.path.exists(entry_point("mailq"))
