"""logfile / logfile_format / syslog: one line per delivery attempt, through the installed command, real servers."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from relay_support import run_in_both_modes  # noqa: F401  (the `run` fixture: every test here runs in both modes)
from support import Runner, SmtpServer, entry_point, free_port
from test_startup import run_in_process

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: log\n\nHi.\n"
PASSWORD = "s3cret"


def parse(line: str) -> dict[str, str]:
    """A text log line: the time stamp, then key=value words as a POSIX shell splits them."""
    stamp, *words = shlex.split(line)
    assert stamp[:4].isdigit() and "T" in stamp, line
    return dict(word.split("=", 1) for word in words)


def test_a_delivery_leaves_one_line_with_msmtp_fields(run: Runner, auth_server: SmtpServer) -> None:
    log = run.home / "mail.log"
    run.write_config(f"hostname {auth_server.hostport}\nusername alice\npassword {PASSWORD}\n"
                     f"auth_plaintext enabled\nlogfile {log}\n")
    result = run("-f", "alice@example.org", "bob@example.net", "carol@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [line] = log.read_text().splitlines()
    fields = parse(line)
    assert fields == {
        "host": "127.0.0.1", "tls": "off", "auth": "on", "user": "alice", "from": "alice@example.org",
        "recipients": "bob@example.net,carol@example.net", "mailsize": fields["mailsize"], "smtpstatus": "250",
        "smtpmsg": "250 2.0.0 OK queued", "exitcode": "EX_OK", "identity": "(global)",
        "duration": fields["duration"],
    }
    assert int(fields["mailsize"]) > len(MESSAGE) and float(fields["duration"]) < 30
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert PASSWORD not in log.read_text()


def test_a_refused_recipient_is_logged_with_the_reply(run: Runner, smtp_server: SmtpServer) -> None:
    log = run.home / "mail.log"
    smtp_server.sink.rcpt_replies["bob@example.net"] = "550 5.1.1 no such user"
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {log}\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == 67
    [line] = log.read_text().splitlines()
    fields = parse(line)
    assert (fields["smtpstatus"], fields["exitcode"], fields["auth"]) == ("550", "EX_NOUSER", "off")
    assert fields["smtpmsg"] == "bob@example.net: 550 5.1.1 no such user"
    assert "refused 1 recipient(s)" in fields["errormsg"]
    assert "user" not in fields


def test_json_per_identity_and_the_global_log_for_the_others(run: Runner, smtp_server: SmtpServer) -> None:
    text_log, json_log = run.home / "all.log", run.home / "work.jsonl"
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {text_log}\n"
                     f"identity *@work.example\n  hostname {smtp_server.hostport}\n  logfile {json_log}\n"
                     "  logfile_format json\n")
    assert run("-f", "me@WORK.example", "bob@example.net", input=MESSAGE).returncode == 0
    assert run("-f", "me@home.example", "bob@example.net", input=MESSAGE).returncode == 0
    [record] = [json.loads(line) for line in json_log.read_text().splitlines()]
    assert record["identity"] == "*@work.example" and record["from"] == "me@WORK.example"
    assert record["smtpstatus"] == 250 and record["exitcode"] == "EX_OK" and "time" in record
    [line] = text_log.read_text().splitlines()
    assert parse(line)["from"] == "me@home.example"


def test_a_temporary_failure_queued_in_fallback_mode_names_the_queue_id(run: Runner) -> None:
    log = run.home / "mail.log"
    run.write_config(f"hostname 127.0.0.1:{free_port()}\nqueue fallback\nlogfile {log}\nlogfile_format json\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["exitcode"] == "EX_TEMPFAIL" and record["queue_id"]
    assert "smtpstatus" not in record and "127.0.0.1" in record["errormsg"]
    listing = run(program="mailq").stdout
    assert record["queue_id"] in listing


def test_mda_deliveries_are_logged(run: Runner, tmp_path: Path) -> None:
    log, box = run.home / "mail.log", tmp_path / "box"
    run.write_config(f"mda \"/bin/sh -c 'cat >> {box}' %T\"\nlogfile {log}\n")
    result = run("-f", "alice@example.org", "root", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert b"Subject: log" in box.read_bytes()
    fields = parse(log.read_text())
    assert (fields["host"], fields["recipients"], fields["exitcode"]) == ("mda", "root", "EX_OK")


def test_an_unwritable_log_is_a_warning_and_mail_goes_out(run: Runner, smtp_server: SmtpServer) -> None:
    missing = run.home / "no-such-dir" / "mail.log"
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {missing}\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0
    assert result.stderr == (f"sendmail: warning: cannot write the log file {missing}: No such file or directory "
                             "(mail is delivered anyway)\n")
    assert len(smtp_server.sink.messages) == 1


def test_twenty_concurrent_senders_neither_interleave_nor_lose_lines(run: Runner, smtp_server: SmtpServer) -> None:
    log = run.home / "mail.log"
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {log}\n")
    senders = [
        subprocess.Popen([entry_point(), "-f", f"sender{n}@example.org", f"rcpt{n}@example.net"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run.env())
        for n in range(20)
    ]
    for process in senders:
        _, err = process.communicate(MESSAGE, timeout=120)
        assert process.returncode == 0, err
    lines = log.read_text().splitlines()
    assert len(lines) == 20
    seen = {parse(line)["from"]: parse(line) for line in lines}
    assert sorted(seen) == sorted(f"sender{n}@example.org" for n in range(20))
    assert all(fields["recipients"] == fields["from"].replace("sender", "rcpt").replace(".org", ".net")
               and fields["exitcode"] == "EX_OK" for fields in seen.values())


def test_syslog_is_imported_only_when_configured(run: Runner, tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = run.write_config(f"hostname {smtp_server.hostport}\nlogfile {run.home / 'mail.log'}\n")
    code, modules = run_in_process(run, tmp_path, "sendmail", "bob@example.net", input=MESSAGE)
    assert code == 0 and "syslog" not in modules
    config.write_text(f"hostname {smtp_server.hostport}\nsyslog local3\n")
    code, modules = run_in_process(run, tmp_path, "sendmail", "bob@example.net", input=MESSAGE)
    assert code == 0 and "syslog" in modules


def test_a_bad_syslog_facility_names_file_and_line(run: Runner) -> None:
    config = run.write_config("hostname h\n\nsyslog kern\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert result.stderr.startswith(f"sendmail: {config}:3: 'syslog' takes one of enabled, disabled, mail,")


def test_the_transcript_has_a_header_per_session_and_a_stamp_per_line(run: Runner, smtp_server: SmtpServer) -> None:
    transcript = run.home / "x.log"
    run.write_config(f"hostname {smtp_server.hostport}\n")
    for _ in range(2):
        assert run("-X", str(transcript), "bob@example.net", input=MESSAGE).returncode == 0
    text = transcript.read_text().splitlines()
    headers = [line for line in text if line.startswith("=== ")]
    assert len(headers) == 2
    assert all(f"session with {smtp_server.hostport}" in line and " pid " in line for line in headers)
    assert all(line[2] == ":" and line[12] == " " for line in text if not line.startswith("=== "))
    assert stat.S_IMODE(os.stat(transcript).st_mode) == 0o600


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_the_session_header_comes_before_what_the_run_says_about_it(run: Runner, smtp_server: SmtpServer,
                                                                      verbose: list[str]) -> None:
    """``# delivering to ...`` belongs to the session it announces: the header line opens the block, as in every
    transcript appended to the same file."""
    transcript = run.home / "x.log"
    run.write_config(f"hostname {smtp_server.hostport}\n")
    for _ in range(2):
        assert run(*verbose, "-X", str(transcript), "bob@example.net", input=MESSAGE).returncode == 0
    text = transcript.read_text().splitlines()
    headers = [n for n, line in enumerate(text) if line.startswith("=== ")]
    delivering = [n for n, line in enumerate(text) if "# delivering to bob@example.net by smtp" in line]
    assert headers[0] == 0 and len(headers) == len(delivering) == 2
    assert all(h < d for h, d in zip(headers, delivering, strict=True)), text
    assert delivering[0] < headers[1]


def test_a_flush_logs_each_try_with_the_queue_id_and_a_bounce_the_same_way(run: Runner,
                                                                           smtp_server: SmtpServer) -> None:
    log = run.home / "mail.log"
    run.write_config(f"hostname 127.0.0.1:{free_port()}\nqueue fallback\nbounce enabled\nlogfile {log}\n")
    assert run("-f", "alice@example.org", "bob@example.net", input=MESSAGE).returncode == 0
    assert run("-f", "alice@example.org", "nobody@example.net", input=MESSAGE).returncode == 0
    queued = [parse(line) for line in log.read_text().splitlines()]
    assert [fields["exitcode"] for fields in queued] == ["EX_TEMPFAIL", "EX_TEMPFAIL"]
    ids = {fields["recipients"]: fields["queue_id"] for fields in queued}

    smtp_server.sink.rcpt_replies["nobody@example.net"] = "550 5.1.1 no such user"
    run.write_config(f"hostname {smtp_server.hostport}\nqueue fallback\nbounce enabled\nlogfile {log}\n")
    result = run("--flush", program="esmtp")
    assert result.returncode != 0  # one entry failed for good
    lines = [parse(line) for line in log.read_text().splitlines()[2:]]
    by_queue_id: dict[str, list[dict[str, str]]] = {}
    for fields in lines:
        by_queue_id.setdefault(fields["queue_id"], []).append(fields)
    [delivered] = by_queue_id.pop(ids["bob@example.net"])
    assert (delivered["exitcode"], delivered["smtpstatus"], delivered["host"]) == ("EX_OK", "250", "127.0.0.1")
    refused, given_up = by_queue_id.pop(ids["nobody@example.net"])
    assert (refused["exitcode"], refused["smtpstatus"]) == ("EX_NOUSER", "550")
    assert (given_up["host"], given_up["exitcode"], given_up["recipients"]) == ("queue", "EX_UNAVAILABLE",
                                                                                "nobody@example.net")
    assert "550 5.1.1 no such user" in given_up["errormsg"]
    [bounce] = by_queue_id.pop(given_up["bounce_id"])
    assert (bounce["from"], bounce["recipients"], bounce["exitcode"]) == ("<>", "alice@example.org", "EX_OK")
    assert by_queue_id == {}


def _shared_directory(run: Runner) -> Path:
    """A directory anyone may write to (sticky, as /tmp): where another user can plant a file or a link."""
    shared = run.home / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def test_a_symbolic_link_planted_as_the_log_is_never_followed(run: Runner, smtp_server: SmtpServer) -> None:
    shared = _shared_directory(run)
    victim = run.home / "victim"
    victim.write_text("precious\n")
    (shared / "mail.log").symlink_to(victim)
    (shared / "dangling.log").symlink_to(run.home / "created-by-the-link")
    for name in ("mail.log", "dangling.log"):
        run.write_config(f"hostname {smtp_server.hostport}\nlogfile {shared / name}\n")
        result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
        assert result.returncode == 0, result.stderr
        assert f"cannot write the log file {shared / name}: it is a symbolic link" in result.stderr
    assert victim.read_text() == "precious\n"
    assert not (run.home / "created-by-the-link").exists()
    assert len(smtp_server.sink.messages) == 2  # mail is never held back for its log


def test_a_log_owned_by_another_user_is_refused(run: Runner, smtp_server: SmtpServer) -> None:
    shared = _shared_directory(run)
    theirs = shared / "mail.log"
    theirs.write_text("")
    theirs.chmod(0o666)
    os.chown(theirs, 65534, 65534)  # nobody's (these tests run as root; a user's run refuses root's the same way)
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {theirs}\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert f"cannot write the log file {theirs}: it is owned by uid 65534, not by you or root" in result.stderr
    assert theirs.read_text() == ""  # no recipient of ours in someone else's file
    fifo = shared / "fifo.log"
    os.mkfifo(fifo)
    run.write_config(f"hostname {smtp_server.hostport}\nlogfile {fifo}\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE, timeout=20)  # never waits for a reader
    assert result.returncode == 0 and f"cannot write the log file {fifo}" in result.stderr
