"""The system service (``esmtp --system-daemon``): one protected relay configuration and one queue for every local
account (docs/system.md).

The service runs as CI runs it, as root in the foreground with a bare environment; callers are real local accounts
(``runuser``) running the installed front end; the smarthost is a real SMTP server. See :mod:`system_support`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import Reply, SmtpServer, StartScripted, free_port
from system_support import MAILNAME, SystemService, shared_python, system, test_users, wait_until

__all__ = ["shared_python", "system", "test_users"]

T1, T2, T3 = "esmtp-t1", "esmtp-t2", "esmtp-t3"


def message(subject: str, sender: str = "", body: bytes = b"Hi.\n") -> bytes:
    head = f"From: {sender}\n" if sender else ""
    return f"{head}Subject: {subject}\n\n".encode() + body


def auth_config(server: SmtpServer, extra: str = "") -> str:
    return f"hostname {server.hostport}\nusername alice\npassword s3cret\nauth_plaintext enabled\n{extra}"


def subjects(server: SmtpServer) -> list[str]:
    return sorted(m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in server.sink.messages)


def received_line(data: bytes) -> str:
    first = data.split(b"\r\n\r\n", 1)[0].decode()
    match = re.search(r"^Received: by [^\r\n]*(\r\n\t[^\r\n]*)?", first, re.M)
    assert match, first
    return match.group(0)


# ---- submission -------------------------------------------------------------------------------------------------


def test_php_mail_as_www_data_is_delivered_and_the_secret_stays_hidden(system: SystemService,
                                                                         auth_server: SmtpServer) -> None:
    if shutil.which("php") is None:
        pytest.skip("php is not installed (.ci/install-php-deps.sh installs php-cli)")
    system.write_config(auth_config(auth_server))
    system.start()
    auth_server.sink.clear()
    script = 'exit(mail("bob@example.net", "from php", "Hello from PHP.", "From: shop@example.org") ? 0 : 1);'
    result = system.as_user("www-data", "php", "-d", f"sendmail_path={system.bin / 'sendmail'} -t -i", "-r", script)
    assert result.returncode == 0, result.stderr + system.log()
    [got] = auth_server.sink.messages
    assert got.rcpt_tos == ["bob@example.net"]
    assert [login for _, login in auth_server.sink.auths] == ["alice"]
    assert b"Hello from PHP." in got.data
    uid = pwd.getpwnam("www-data").pw_uid
    assert f"from userid {uid} (www-data)" in received_line(got.data)
    # What www-data cannot do: read the configuration, or list or read the queue.
    assert system.as_user("www-data", "cat", str(system.config)).returncode != 0
    assert system.as_user("www-data", "ls", str(system.queue)).returncode != 0
    assert system.as_user("www-data", "ls", str(system.maildrop)).returncode != 0
    assert "s3cret" not in result.stderr + result.stdout


def test_user_without_home_and_nobody_can_send(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    smtp_server.sink.clear()
    for user in (T1, "nobody"):
        assert pwd.getpwnam(user).pw_dir == "/nonexistent"
        result = system.send(user, "bob@example.net", input=message(f"from {user}"))
        assert result.returncode == 0, result.stderr + system.log()
    senders = sorted(m.mail_from for m in smtp_server.sink.messages)
    assert senders == sorted([f"{T1}@{MAILNAME}", f"nobody@{MAILNAME}"])


def test_errors_reach_the_caller_with_their_exit_code(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    smtp_server.sink.rcpt_replies["nobody@example.net"] = "550 5.1.1 no such user"
    result = system.send(T1, "nobody@example.net", input=message("refused"))
    assert result.returncode == 65 or result.returncode in (67, 69), result.stderr
    assert "no such user" in result.stderr
    usage = system.send(T1, "-C", "/tmp/mine", "bob@example.net", input=message("x"))
    assert usage.returncode != 0  # -C: the user's own file (not readable here), never the service's
    flush = system.send(T1, "-q")
    assert flush.returncode == 77
    assert "only root may flush" in flush.stderr


def test_received_line_and_sender_policy(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    smtp_server.sink.clear()
    assert system.send(T2, "-f", "boss@example.org", "bob@example.net", input=message("on")).returncode == 0
    system.stop()
    system.write_config(f"hostname {smtp_server.hostport}\nallow_from_override off\n")
    system.start()
    assert system.send(T2, "-f", "boss@example.org", "bob@example.net", input=message("off")).returncode == 0
    on, off = sorted(smtp_server.sink.messages, key=lambda m: b"Subject: off" in m.data)
    assert on.mail_from == "boss@example.org"
    assert off.mail_from == f"{T2}@{MAILNAME}"
    uid = pwd.getpwnam(T2).pw_uid
    for got in (on, off):
        assert f"from userid {uid} ({T2})" in received_line(got.data)


# ---- the service down: the maildrop ----------------------------------------------------------------------------


def test_service_down_messages_wait_in_the_maildrop_and_go_once(system: SystemService,
                                                                 smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    for user in (T1, T2, T3):
        result = system.send(user, "bob@example.net", input=message(f"dropped by {user}"))
        assert result.returncode == 0, result.stderr
    assert len(os.listdir(system.maildrop)) == 3
    assert not smtp_server.sink.messages
    system.start()
    wait_until(lambda: len(smtp_server.sink.messages) == 3)
    time.sleep(0.5)
    assert subjects(smtp_server) == [f"dropped by {user}" for user in (T1, T2, T3)]
    assert os.listdir(system.maildrop) == []
    for got in smtp_server.sink.messages:
        user = got.mail_from.split("@")[0]
        assert f"({user})" in received_line(got.data)


@pytest.mark.parametrize("maildrop_mode, why", [(0o2700, "Permission denied"), (0o1733, "not set-group-ID")])
def test_neither_service_nor_maildrop_is_a_temporary_failure(system: SystemService, maildrop_mode: int,
                                                              why: str) -> None:
    system.socket.parent.chmod(0o700)  # the socket cannot be reached
    system.maildrop.chmod(maildrop_mode)  # nor the maildrop used
    (system.socket.parent / "submit.sock").touch()
    result = system.send(T1, "bob@example.net", input=message("nowhere"))
    assert result.returncode == 75
    assert "maildrop" in result.stderr and why in result.stderr
    assert "nothing was sent: try again later" in result.stderr
    assert os.listdir(system.maildrop) == []


def test_kill_9_during_a_burst_from_three_users_loses_nothing(system: SystemService,
                                                               smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    process = system.start()
    smtp_server.sink.clear()
    expected = [f"{user} m{index}" for user in (T1, T2, T3) for index in range(6)]
    procs = []
    for index in range(6):
        for user in (T1, T2, T3):
            proc = system.popen(user, "bob@example.net")
            assert proc.stdin is not None
            proc.stdin.write(message(f"{user} m{index}"))
            proc.stdin.close()
            procs.append(proc)
        if index == 2:
            process.send_signal(signal.SIGKILL)
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    system.process = None
    system.start()
    wait_until(lambda: set(subjects(smtp_server)) == set(expected), timeout=60)
    got = subjects(smtp_server)
    # Duplicates only in the final-dot window: a message the server had when the service died before answering.
    assert len(got) - len(expected) <= 3


# ---- hostile local users --------------------------------------------------------------------------------------

HOSTILE = r"""
import os, socket, sys
path, what = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
fds = [1, 2]
argv = b"\0".join([b"esmtp-system-1", b"uid=%d" % os.getuid(), b"sendmail", b"bob@example.net"])
if what == "junk":
    sock.sendall(b"\x00\x00\x00\x10not a request at all")
    sock.shutdown(socket.SHUT_WR)
elif what == "oversized":
    sock.sendall((1 << 31).to_bytes(4, "big") + b"x" * 1000)
elif what == "extra-fds":
    spool = os.open("/etc/hostname", os.O_RDONLY)
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(4)]
    sock.sendmsg([len(argv).to_bytes(4, "big") + argv], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                 b"".join(fd.to_bytes(4, sys.byteorder) for fd in [1, 2, spool, *extra]))])
elif what == "fifo":
    os.mkfifo("/tmp/esmtp-hostile-fifo-%d" % os.getpid())
    spool = os.open("/tmp/esmtp-hostile-fifo-%d" % os.getpid(), os.O_RDWR)
    sock.sendmsg([len(argv).to_bytes(4, "big") + argv], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                 b"".join(fd.to_bytes(4, sys.byteorder) for fd in [1, 2, spool]))])
elif what == "other-uid":
    argv = argv.replace(b"uid=%d" % os.getuid(), b"uid=0")
    spool = os.open("/etc/hostname", os.O_RDONLY)
    sock.sendmsg([len(argv).to_bytes(4, "big") + argv], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                 b"".join(fd.to_bytes(4, sys.byteorder) for fd in [1, 2, spool]))])
sock.settimeout(60)
print(sock.recv(64).decode().strip() or "closed")
"""


@pytest.mark.parametrize("what, code", [("junk", "64"), ("oversized", "64"), ("extra-fds", "64"), ("fifo", "64"),
                                        ("other-uid", "77")])
def test_hostile_requests_are_refused_and_the_service_keeps_serving(system: SystemService, smtp_server: SmtpServer,
                                                                     what: str, code: str) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    smtp_server.sink.clear()
    script = system.base / "hostile.py"
    script.write_text(HOSTILE)
    result = system.as_user(T1, str(system.bin / "python"), str(script), str(system.socket), what)
    assert result.stdout.strip() == code, result.stderr + system.log()
    assert "refused" in system.log() or "claims" in result.stdout
    assert not smtp_server.sink.messages
    assert system.send(T2, "bob@example.net", input=message("still served")).returncode == 0
    assert subjects(smtp_server) == ["still served"]


def _drop_file(system: SystemService, user: str, subject: str, claimed_uid: int | None = None,
               body: bytes = b"Hi.\n") -> bytes:
    """A maildrop file as the front end writes it."""
    uid = pwd.getpwnam(user).pw_uid if claimed_uid is None else claimed_uid
    words = b"\0".join([b"sendmail", b"bob@example.net"])
    body = message(subject, body=body)
    return b"esmtp-maildrop-1\n%d\n%d\n%d\n" % (uid, len(words), len(body)) + words + body


def test_hostile_maildrop_files_are_refused(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    drop = system.maildrop
    plant = system.base / "plant"
    plant.mkdir(mode=0o777)
    plant.chmod(0o777)
    t1 = pwd.getpwnam(T1).pw_uid
    write = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"
    # A symbolic link (to a file of T1's own), a hard link, a FIFO, a file claiming another uid, an oversized one.
    assert system.as_user(T1, str(system.bin / "python"), "-c", write, str(plant / "own"),
                          input=_drop_file(system, T1, "via a link")).returncode == 0
    assert system.as_user(T1, "ln", "-s", str(plant / "own"), str(drop / "symlink")).returncode == 0
    assert system.as_user(T1, "ln", str(plant / "own"), str(drop / "hardlink")).returncode == 0
    assert system.as_user(T1, "mkfifo", str(drop / "fifo")).returncode == 0
    assert system.as_user(T1, str(system.bin / "python"), "-c", write, str(drop / "claims-root"),
                          input=_drop_file(system, T1, "as root", claimed_uid=0)).returncode == 0
    assert system.as_user(T1, str(system.bin / "python"), "-c", write, str(drop / "claims-t2"),
                          input=_drop_file(system, T1, "as t2", claimed_uid=pwd.getpwnam(T2).pw_uid)).returncode == 0
    big = _drop_file(system, T1, "big", body=b"x" * 4096 + b"\n")
    assert system.as_user(T1, str(system.bin / "python"), "-c", write, str(drop / "big"), input=big).returncode == 0
    # A flood of junk from T3, and one honest message from T2 among it.
    flood = "import sys, os\nfor i in range(300): open(os.path.join(sys.argv[1], 'junk%d' % i), 'wb').write(b'junk')"
    assert system.as_user(T3, str(system.bin / "python"), "-c", flood, str(drop)).returncode == 0
    assert system.send(T2, "bob@example.net", input=message("honest")).returncode == 0
    system.extra["ESMTP_SYSTEM_MESSAGE_LIMIT"] = "2048"
    system.start()
    wait_until(lambda: os.listdir(drop) == [], timeout=60)
    assert subjects(smtp_server) == ["honest"]
    log = system.log()
    for reason in ("a symbolic link", "2 links", "not a regular file", "claims uid 0", f"belongs to uid {t1}",
                   "larger than the message limit", "not a maildrop file"):
        assert reason in log, log
    assert system.send(T1, "bob@example.net", input=message("after")).returncode == 0
    assert "after" in subjects(smtp_server)


# ---- the queue, per user ---------------------------------------------------------------------------------------


def test_users_see_and_remove_only_their_own_queued_messages(system: SystemService) -> None:
    closed = free_port()  # nothing listens: delivery fails temporarily and the message is queued
    system.write_config(f"hostname 127.0.0.1:{closed}\nqueue fallback\n")
    system.start()
    for user in (T1, T2):
        result = system.send(user, "bob@example.net", input=message(f"queued for {user}"))
        assert result.returncode == 0, result.stderr + system.log()
    mine = system.send(T1, "--json", program="mailq")
    theirs = system.send(T2, program="mailq")
    assert mine.returncode == 0, mine.stderr
    import json

    entries = json.loads(mine.stdout)["entries"]
    assert [entry["sender"] for entry in entries] == [f"{T1}@{MAILNAME}"]
    assert f"{T1}@" not in theirs.stdout and f"{T2}@" in theirs.stdout
    everything = system.send("root", program="mailq")
    assert f"{T1}@" in everything.stdout and f"{T2}@" in everything.stdout
    t2_id = re.search(r"^(\w+) ", theirs.stdout, re.M)
    assert t2_id
    refused = system.send(T1, "--remove", t2_id.group(1), program="sendmail")
    assert refused.returncode != 0 and "no queue entry" in refused.stderr
    assert f"{T2}@" in system.send("root", program="mailq").stdout
    removed = system.send(T2, "--remove", t2_id.group(1), program="sendmail")
    assert removed.returncode == 0, removed.stderr
    assert f"{T2}@" not in system.send("root", program="mailq").stdout


# ---- set-up and configuration checks ----------------------------------------------------------------------------


def test_setup_is_idempotent_and_says_what_to_do(system: SystemService) -> None:
    again = system.setup()
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert "write the relay's settings" in again.stdout
    system.config.write_text("hostname mail.example.org:587\nusername u\npassword p\n")
    system.config.chmod(0o644)
    configured = system.setup()
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert f"set the mode of {system.config} to 0640" in configured.stdout
    assert "systemctl enable" in configured.stdout
    info = system.config.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, pwd.getpwnam("esmtp").pw_gid, 0o640)
    assert (system.maildrop.stat().st_mode & 0o7777) == 0o3733


def test_a_readable_secret_is_refused_naming_the_file_mode_and_fix(system: SystemService) -> None:
    system.write_config("hostname mail.example.org:587\nusername u\npassword p\n", mode=0o644)
    process = system.start(wait=False)
    assert process.wait(timeout=60) == 78
    log = system.log()
    assert f"{system.config} holds a secret but every local user can read it (mode 0644)" in log
    assert f"chown root:esmtp {system.config} && chmod 0640 {system.config}" in log
    system.process = None


def test_the_service_cannot_become_root_again(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    process = system.start()
    status = Path(f"/proc/{process.pid}/status").read_text()
    esmtp = pwd.getpwnam("esmtp")
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    groups = re.search(r"^Groups:[ \t]*(.*)$", status, re.M)
    assert uids and gids and groups
    assert uids.group(1).split() == [str(esmtp.pw_uid)] * 4
    assert gids.group(1).split() == [str(esmtp.pw_gid)] * 4
    assert groups.group(1).strip() == ""


def test_sigterm_stops_accepting_and_exits(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    assert system.stop() == 0
    assert "stopped" in system.log()
    # Then the front end falls back on the maildrop.
    assert system.send(T1, "bob@example.net", input=message("later")).returncode == 0
    assert len(os.listdir(system.maildrop)) == 1



def test_check_shows_the_order_and_where_the_mail_goes(system: SystemService) -> None:
    result = system.send(T1, "--check", program="esmtp")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "order: ~/.esmtprc, then the system service, then /etc/esmtprc"
    assert lines[1] == "  1. /nonexistent/.esmtprc: not found"
    assert lines[2].startswith("  2. the system service: not running: messages wait in the maildrop")
    assert lines[2].endswith("<- your mail goes here")
    assert lines[3] == f"  3. {system.config}: not readable by you"


# ---- local names and bounces -------------------------------------------------------------------------------------


def test_local_names_and_double_bounces_go_to_admin_address(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\nqueue always\nbounce enabled\n"
                        "admin_address ops@example.org\n")
    smtp_server.sink.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    smtp_server.sink.rcpt_replies[f"{T1}@{MAILNAME}"] = "550 5.1.1 no such mailbox either"
    system.start()
    smtp_server.sink.clear()
    assert system.send("root", "root", input=message("for root")).returncode == 0
    assert system.send(T1, "gone@example.net", input=message("doomed")).returncode == 0  # queued: exit 0

    def to_ops() -> list[bytes]:
        return [m.data for m in smtp_server.sink.messages if m.rcpt_tos == ["ops@example.org"]]

    wait_until(lambda: len(to_ops()) == 2, timeout=60)
    first, second = sorted(to_ops(), key=lambda data: b"Undelivered" in data)
    assert b"Subject: for root" in first
    assert b"Subject: Undelivered Mail Returned to Sender" in second  # the bounce to T1 failed: a double bounce
    assert b"no such mailbox either" in second
    time.sleep(1.0)
    assert len(to_ops()) == 2  # reported once, never again
    assert system.process is not None
    wait_until(lambda: not zombies(system.process.pid), timeout=10)  # the queue's background runs are reaped


def zombies(parent: int) -> list[int]:
    """Children of ``parent`` that have ended and were not waited for."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def test_a_dropped_message_that_cannot_be_sent_is_kept_aside(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    assert system.send(T1, "gone@example.net", input=message("doomed")).returncode == 0  # the service is down
    system.start()
    failed = system.base / "spool" / "maildrop-failed"
    wait_until(lambda: len(os.listdir(failed)) == 1)
    assert os.listdir(system.maildrop) == []
    assert "cannot be sent (exit 67)" in system.log()


def test_sigterm_finishes_the_submission_in_progress(system: SystemService, scripted_server: StartScripted) -> None:
    server = scripted_server({"dot": Reply("250 2.0.0 queued", wait_for_next=2.0)})  # a slow final reply
    system.write_config(f"hostname {server.hostport}\n")
    system.start()
    proc = system.popen(T1, "bob@example.net")
    assert proc.stdin is not None
    proc.stdin.write(message("in flight"))
    proc.stdin.close()
    wait_until(lambda: any(c.verb == "DATA" for connection in server.connections for c in connection.commands))
    assert system.process is not None
    system.process.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert system.stop() == 0
    assert [m.subject for m in server.messages] == ["in flight"]
    assert os.listdir(system.maildrop) == []  # delivered by the service, not dropped


def test_a_burst_from_one_user_beyond_its_share_goes_to_the_maildrop_and_is_delivered(
        system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    system.start()
    smtp_server.sink.clear()
    procs = []
    for index in range(40):
        proc = system.popen(T1, "bob@example.net")
        assert proc.stdin is not None
        proc.stdin.write(message(f"burst {index:02d}"))
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    expected = sorted(f"burst {index:02d}" for index in range(40))
    wait_until(lambda: subjects(smtp_server) == expected, timeout=60)
    assert smtp_server.sink.connections <= 2  # one kept connection (and the maildrop's intake shares it)


def test_root_flushes_the_system_queue_through_the_service(system: SystemService, smtp_server: SmtpServer) -> None:
    closed = free_port()
    system.write_config(f"hostname 127.0.0.1:{closed}\nqueue fallback\n")
    system.start()
    assert system.send(T1, "bob@example.net", input=message("waited")).returncode == 0  # queued: the server is down
    assert not smtp_server.sink.messages
    system.write_config(f"hostname {smtp_server.hostport}\nqueue fallback\n")  # read again at the next request
    flush = system.send("root", "-q")
    assert flush.returncode == 0, flush.stderr + system.log()
    wait_until(lambda: subjects(smtp_server) == ["waited"])
    assert "Mail queue is empty" in system.send(T1, program="mailq").stdout


def test_a_message_over_the_limit_is_refused_by_the_service_and_by_the_maildrop(
        system: SystemService, smtp_server: SmtpServer) -> None:
    system.extra["ESMTP_SYSTEM_MESSAGE_LIMIT"] = "2048"
    system.write_config(f"hostname {smtp_server.hostport}\n")
    big = message("big", body=b"x" * 4096 + b"\n")
    down = system.send(T1, "bob@example.net", input=big)  # the service is down: the front end checks
    assert down.returncode == 65
    assert "larger than the mail system's limit (2048 bytes); nothing was sent" in down.stderr
    assert os.listdir(system.maildrop) == []
    system.start()
    up = system.send(T1, "bob@example.net", input=big)
    assert up.returncode == 65
    assert "larger than the mail system's limit (2048 bytes); nothing was sent" in up.stderr
    assert system.send(T1, "bob@example.net", input=message("small")).returncode == 0
    assert subjects(smtp_server) == ["small"]


@pytest.mark.parametrize("argv, mode", [
    (["sendmail", "-t", "-i"], "deliver"), (["sendmail", "-f", "a@b", "bob@x"], "deliver"), (["mailq"], "mailq"),
    (["sendmail", "-bp"], "mailq"), (["mailq", "--json"], "mailq"), (["sendmail", "-q"], "flush"),
    (["esmtp", "--remove", "ID"], "remove"), (["deliver"], "flush"),
    (["sendmail", "--identity", "x", "b@x"], "deliver"),
    (["sendmail", "-C", "/etc/mine", "bob@x"], None), (["sendmail", "-bs"], None), (["esmtp", "--check"], None),
    (["esmtp", "--version"], None), (["newaliases"], None), (["sendmail", "-I"], None), (["sendmail", "-bi"], None),
    (["sendmail", "-qIid"], "flush"), (["sendmail", "-q5m"], "flush"), (["sendmail", "-oi", "-Cmine", "b@x"], None),
    (["sendmail", "-abpx@example.org", "b@x"], "deliver"), (["sendmail", "--", "-bp"], "deliver"),
])
def test_what_the_front_end_hands_to_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                 mode: str | None) -> None:
    from esmtp import front

    (tmp_path / "submit.sock").touch()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESMTP_SYSTEM_SOCKET", str(tmp_path / "submit.sock"))
    assert front.system_mode(argv) == mode
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".esmtprc").touch()
    assert front.system_mode(argv) is None  # the user's own configuration wins


ACTIVATE = r"""
import os, socket, sys
# What systemd does for esmtp.socket: bind, then start the service with the socket as descriptor 3.
path, program = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
os.chmod(path, 0o666)
listener.listen(16)
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(program, [program, "--system-daemon"])
"""


def test_socket_activation_takes_systemds_socket(system: SystemService, smtp_server: SmtpServer) -> None:
    system.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    script = system.base / "activate.py"
    script.write_text(ACTIVATE)
    log = system.base / "activated.log"
    system.logs.append(log)
    with open(log, "wb") as out:
        system.process = subprocess.Popen([str(system.bin / "python"), str(script), str(system.socket),
                                           str(system.bin / "esmtp")], stdout=out, stderr=subprocess.STDOUT,
                                          env=system.env, cwd="/", pass_fds=())
    wait_until(lambda: b"serving" in log.read_bytes())
    assert system.send(T1, "bob@example.net", input=message("activated")).returncode == 0
    assert subjects(smtp_server) == ["activated"]
    assert system.stop() == 0
    assert system.socket.exists()  # systemd's socket: not the service's to remove


def test_the_documented_system_configuration_is_valid() -> None:
    from esmtp.config.parser import parse_config
    from esmtp.plugins import load_hooks, resolve_config

    guide = (Path(__file__).resolve().parent.parent / "docs" / "system.md").read_text()
    [example] = [block for block in guide.split("```") if "allow_from_override on" in block]
    config = parse_config("\n".join(line.strip() for line in example.splitlines()), "docs/system.md")
    resolve_config(config, load_hooks(config))
    assert config.options["admin_address"] == "ops@example.org"
    assert config.options["allow_from_override"] == "on"
