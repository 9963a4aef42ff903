"""The warm relay: one resident process per user and configuration takes over the work of ``sendmail``.

Everything here runs the installed command as callers do, against real SMTP servers, and checks what the server got
and what the caller saw. Resident processes are ended on teardown (see :mod:`relay_support`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from relay_support import PYTHON, relay_pids, socket_path, start_relay, stop_relays
from support import (
    DROP,
    Connection,
    Reply,
    Runner,
    Sink,
    SmtpServer,
    StartScripted,
    _Controller,
    _Server,
    entry_point,
    start_server,
)

RELAY = {"ESMTP_RELAY_DAEMON": "1"}


def message(subject: str, body: bytes = b"Hi.\n") -> bytes:
    return f"From: alice@example.org\nSubject: {subject}\n\n".encode() + body


def auth_config(server: SmtpServer, extra: str = "") -> str:
    return f"hostname {server.hostport}\nusername alice\npassword s3cret\nauth_plaintext enabled\n{extra}"


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def subjects(server: SmtpServer) -> list[str]:
    return sorted(m.data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip().decode() for m in server.sink.messages)


def test_messages_share_one_authenticated_connection(run: Runner, auth_server: SmtpServer) -> None:
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(auth_config(auth_server))
    auth_server.sink.clear()  # the server's own start-up probe
    for index in range(4):
        result = run("-v", "bob@example.net", input=message(f"m{index}"))
        assert result.returncode == 0, result.stderr
    assert "reusing the open connection" in result.stderr
    assert subjects(auth_server) == ["m0", "m1", "m2", "m3"]
    assert auth_server.sink.connections == 1
    assert len(auth_server.sink.auths) == 1
    # After a finished transaction the session is ready for the next MAIL (RFC 5321 4.1.4): no RSET round trip.
    assert "RSET" not in result.stderr


def test_server_ending_the_kept_connection_at_mail_means_one_copy_on_a_new_one(
        run: Runner, scripted_server: StartScripted) -> None:
    """No RSET checks a kept connection before the next message: a server that has ended it (421 at the next MAIL,
    then a close) costs a new connection, and the message goes once."""
    def mail(connection: Connection, line: str) -> Reply | None:
        return Reply("421 4.3.2 shutting down", then=DROP) if connection.messages else None

    server = scripted_server({"MAIL": mail})
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(f"hostname {server.hostport}\n")
    assert run("bob@example.net", input=message("first")).returncode == 0
    result = run("-v", "bob@example.net", input=message("second"))
    assert result.returncode == 0, result.stderr
    assert "the kept connection is gone" in result.stderr
    assert [m.subject for m in server.messages] == ["first", "second"]
    assert [c.verb for c in server.connections[-2].commands][-1:] == ["MAIL"]


def test_first_message_is_sent_here_and_starts_the_process(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(auth_config(auth_server, "relay_daemon auto\n"))
    auth_server.sink.clear()
    assert run("bob@example.net", input=message("first")).returncode == 0
    # At once: the next command waits for the process that is starting instead of sending by itself.
    for index in range(3):
        assert run("bob@example.net", input=message(f"warm{index}")).returncode == 0
    assert subjects(auth_server) == ["first", "warm0", "warm1", "warm2"]
    assert auth_server.sink.connections == 2  # the first run's own, and the resident process's
    assert len(relay_pids(run.runtime)) == 1


@pytest.mark.parametrize("setting, env", [("", {}), ("relay_daemon auto\n", {"ESMTP_RELAY_DAEMON": "0"})])
def test_no_process_unless_asked_for(run: Runner, smtp_server: SmtpServer, setting: str, env: dict[str, str]) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\n{setting}")
    result = run("bob@example.net", input=message("x"), env=run.env(**env))
    assert result.returncode == 0, result.stderr
    assert not (run.runtime / "esmtp").exists()
    assert not relay_pids(run.runtime)


class _ImpatientController(_Controller):
    """A server that closes a session idle for half a second (421, as servers do after a few minutes)."""

    def factory(self) -> AiosmtpdSMTP:
        server = _Server(self.handler, timeout=0.5)
        server.sink = self.sink
        return server


def test_server_closing_an_idle_session_means_a_new_connection(run: Runner) -> None:
    sink = Sink()
    controller = _ImpatientController(sink, users=None)
    controller.start()
    try:
        server = SmtpServer("127.0.0.1", controller.port, sink, controller)
        run.mode_env = RELAY
        start_relay(run)
        run.write_config(f"hostname {server.hostport}\n")
        sink.clear()
        assert run("bob@example.net", input=message("before")).returncode == 0
        time.sleep(1.0)  # the server closes the kept session
        result = run("-v", "bob@example.net", input=message("after"))
        assert result.returncode == 0, result.stderr
        assert subjects(server) == ["after", "before"]
        assert sink.connections == 2
    finally:
        controller.stop()


@pytest.mark.parametrize("point, copies", [("handover", 1), ("data", 1), ("reply", 2)])
def test_kill_9_of_the_resident_process_loses_nothing(run: Runner, smtp_server: SmtpServer, point: str,
                                                     copies: int) -> None:
    """Killed after taking the message, in the middle of DATA, or after the server's 250 but before answering: the
    front end sends the message itself from its spool file. Only the last point (the server has the message) gives
    a second copy: the documented final-dot window."""
    run.mode_env = {**RELAY, "ESMTP_RELAY_TEST_CRASH": point}
    start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    body = b"".join(b"line %06d of a message larger than a few spool chunks\n" % n for n in range(8000))
    result = run("bob@example.net", input=message("crash", body))
    assert result.returncode == 0, result.stderr
    assert len(smtp_server.sink.messages) == copies
    assert all(m.data.endswith(body.replace(b"\n", b"\r\n")) for m in smtp_server.sink.messages)


def test_fifty_concurrent_senders(run: Runner, smtp_server: SmtpServer) -> None:
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    procs = [subprocess.Popen([entry_point(), "bob@example.net"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=run.env()) for _ in range(50)]
    for index, proc in enumerate(procs):
        assert proc.stdin is not None
        proc.stdin.write(message(f"c{index:02d}"))
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert subjects(smtp_server) == [f"c{index:02d}" for index in range(50)]
    assert smtp_server.sink.connections == 1


PROBE = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except OSError:
    print("refused")
    raise SystemExit
payload = b"\\0".join([b"esmtp-relay-1", b"/", b"", b"mailq"])
try:
    sock.sendmsg([len(payload).to_bytes(4, "big") + payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                 (1).to_bytes(4, sys.byteorder) + (2).to_bytes(4, sys.byteorder))])
    print(sock.recv(64) or "closed")
except OSError:
    print("closed")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a second user")
def test_another_user_is_not_served(run: Runner, smtp_server: SmtpServer) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="esmtp-relay-test-"))
    runtime.chmod(0o755)
    try:
        run.mode_env = {**RELAY, "XDG_RUNTIME_DIR": str(runtime)}
        start_relay(run)
        path = socket_path(run)

        def as_nobody() -> str:
            # The system's interpreter: the test's may live where nobody may not go. What it sends is a well-formed
            # request (esmtp.front's protocol), with its stdout and stderr.
            proc = subprocess.run([shutil.which("python3", path="/usr/bin:/bin") or "python3", "-I", "-c", PROBE,
                                   str(path)], user="nobody", capture_output=True, text=True, cwd="/",
                                  env={"PATH": "/usr/bin:/bin"}, timeout=30)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout.strip()

        assert as_nobody() == "refused"  # the 0700 directory
        path.parent.chmod(0o755)
        path.chmod(0o777)
        assert as_nobody() == "closed"  # SO_PEERCRED: the connection is closed unanswered
        run.write_config(f"hostname {smtp_server.hostport}\n")
        assert run("-bp").stdout == "Mail queue is empty\n"  # still serving its own user
    finally:
        stop_relays(runtime)
        shutil.rmtree(runtime, ignore_errors=True)


def test_stale_socket_file_is_replaced(run: Runner, smtp_server: SmtpServer) -> None:
    run.mode_env = RELAY
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    path = socket_path(run)
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # left behind, as by a process killed with -9
    assert run("bob@example.net", input=message("one")).returncode == 0
    lock = Path(f"{path}.lock")
    wait_for(lambda: len(relay_pids(run.runtime)) == 1 and lock.exists() and lock.read_text().strip() != "")
    assert run("bob@example.net", input=message("two")).returncode == 0
    assert subjects(smtp_server) == ["one", "two"]
    assert smtp_server.sink.connections == 2


def test_two_front_ends_racing_start_one_process(run: Runner, smtp_server: SmtpServer) -> None:
    run.mode_env = RELAY
    run.write_config(f"hostname {smtp_server.hostport}\n")
    procs = [subprocess.Popen([entry_point(), "bob@example.net"], stdin=subprocess.PIPE, env=run.env())
             for _ in range(2)]
    for index, proc in enumerate(procs):
        proc.communicate(message(f"r{index}"), timeout=60)
        assert proc.returncode == 0
    path = socket_path(run)
    wait_for(lambda: path.exists() and len(relay_pids(run.runtime)) == 1)
    time.sleep(0.3)  # a loser still starting would show up here
    assert len(relay_pids(run.runtime)) == 1
    assert subjects(smtp_server) == ["r0", "r1"]


def test_configuration_change_applies_to_the_next_message(run: Runner, smtp_server: SmtpServer) -> None:
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    assert run("bob@example.net", input=message("old")).returncode == 0
    other = start_server()
    try:
        run.write_config(f"hostname {other.hostport}\n", name=".esmtprc.new")
        os.replace(run.home / ".esmtprc.new", run.home / ".esmtprc")
        assert run("bob@example.net", input=message("new")).returncode == 0
        assert subjects(smtp_server) == ["old"]
        assert subjects(other) == ["new"]
    finally:
        other.controller.stop()


def test_caller_reading_to_eof_returns_when_sendmail_exits(run: Runner, smtp_server: SmtpServer) -> None:
    """PHP's proc_open and cron read the command's output to end of file: the process it starts must not hold
    their pipes (the resident process stays for 60 s; the run must not wait for it)."""
    run.write_config(f"hostname {smtp_server.hostport}\nrelay_daemon auto\nrelay_daemon_idle 60\n")
    started = time.monotonic()
    proc = subprocess.run([entry_point(), "bob@example.net"], input=message("eof"), capture_output=True,
                          env=run.env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 30
    wait_for(lambda: len(relay_pids(run.runtime)) == 1)  # it was started, and did not hold the pipes


def test_idle_process_exits(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nrelay_daemon auto\nrelay_daemon_idle 0.5\n")
    run.mode_env = RELAY
    start_relay(run)
    assert run("bob@example.net", input=message("x")).returncode == 0
    wait_for(lambda: not relay_pids(run.runtime), timeout=10)
    assert not socket_path(run).exists()


@pytest.mark.parametrize("config_option", [False, True])
def test_idle_time_applies_to_a_process_never_used(run: Runner, smtp_server: SmtpServer, config_option: bool) -> None:
    """A resident process started after one message and never asked again leaves after ``relay_daemon_idle``,
    not after the default 300 s: it reads the setting when it starts (``-C`` file or the default one)."""
    rc = run.write_config(f"hostname {smtp_server.hostport}\nrelay_daemon auto\nrelay_daemon_idle 0.5\n",
                          name="other.rc" if config_option else ".esmtprc")
    args = ["-C", str(rc)] if config_option else []
    assert run(*args, "bob@example.net", input=message("x")).returncode == 0
    wait_for(lambda: relay_pids(run.runtime))
    wait_for(lambda: not relay_pids(run.runtime), timeout=10)


def test_mailq_and_enqueue_go_through_the_process(run: Runner, tmp_path: Path) -> None:
    run.mode_env = {**RELAY, "ESMTP_QUEUE_DIR": str(tmp_path / "queue")}
    pid = start_relay(run)
    run.write_config("hostname 127.0.0.1:9\nqueue always\n")
    assert run("bob@example.net", input=message("queued")).returncode == 0
    listing = run("-bp")
    assert listing.returncode == 0
    assert "bob@example.net" in listing.stdout
    assert relay_pids(run.runtime) == [pid]


def test_relative_config_file_is_the_callers(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    run.mode_env = RELAY
    rc = run.write_config(f"hostname {smtp_server.hostport}\n", name="relative.rc")
    start_relay(run, str(rc))
    for subject in ("a", "b"):
        proc = subprocess.run([entry_point(), "-C", "relative.rc", "bob@example.net"], input=message(subject),
                              capture_output=True, env=run.env(), cwd=rc.parent, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert subjects(smtp_server) == ["a", "b"]
    assert smtp_server.sink.connections == 2  # the server's start-up probe, then the resident process's one


def test_front_end_imports_only_os_sys_and_socket(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    out = tmp_path / "modules"
    driver = ("import sys; before = set(sys.modules); out = sys.argv[1]; sys.argv = ['sendmail', 'bob@example.net']\n"
              "from esmtp.front import main\ncode = main()\n"
              "open(out, 'w').write(' '.join(sorted(set(sys.modules) - before)))\nsys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", driver, str(out)], input=message("x"), env=run.env(),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(out.read_text().split()) <= {"esmtp", "esmtp.front", "_socket"}
    assert len(smtp_server.sink.messages) == 1


def test_large_message_memory_across_both_processes(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    run.mode_env = RELAY
    pid = start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    body = tmp_path / "big.eml"
    line = b"x" * 76 + b"\n"
    with body.open("wb") as handle:
        handle.write(b"Subject: big\n\n")
        for _ in range(20 * 1024 * 1024 // len(line)):
            handle.write(line)
    probe = ("import resource, subprocess, sys\n"
             "with open(sys.argv[2], 'rb') as stdin:\n"
             "    code = subprocess.run([sys.argv[1], 'x@example.net'], stdin=stdin).returncode\n"
             "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-I", "-c", probe, entry_point(), str(body)], capture_output=True,
                          env=run.env(), timeout=120)
    code, front_kb = (int(field) for field in proc.stdout.split())
    assert code == 0, proc.stderr.decode()
    status = Path(f"/proc/{pid}/status").read_text()
    resident_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert (front_kb + resident_kb) / 1024 < 50, f"front {front_kb} KB + resident {resident_kb} KB"
    assert len(smtp_server.sink.messages) == 1


def test_socket_activation_takes_the_first_callers_environment(run: Runner, smtp_server: SmtpServer) -> None:
    """As systemd starts it (contrib/systemd): the listening socket on descriptor 3, LISTEN_PID and LISTEN_FDS set,
    and an environment that is not the caller's (here: another PATH and no HOME)."""
    run.mode_env = RELAY
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    path = socket_path(run)
    path.parent.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)
    launcher = ("import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
                "os.dup2(int(sys.argv[1]), 3); os.execv(sys.executable, [sys.executable, '-P', '-c', "
                "'import sys; from esmtp.relay.daemon import main; sys.exit(main(sys.argv[1:]))', sys.argv[2]])")
    with listener:
        subprocess.Popen([PYTHON, "-c", launcher, str(listener.fileno()), str(path)], pass_fds=(listener.fileno(),),
                         env={"PATH": "/usr/bin:/bin", "ESMTP_RELAY_DAEMON": "1"}, cwd="/",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for subject in ("s1", "s2"):
        result = run("bob@example.net", input=message(subject))
        assert result.returncode == 0, result.stderr
    assert subjects(smtp_server) == ["s1", "s2"]
    assert smtp_server.sink.connections == 1  # both through the activated process
    assert path.exists()  # systemd's socket file: left in place


def test_the_warm_relay_logs_each_message_once(run: Runner, auth_server: SmtpServer) -> None:
    """Delivery log lines come from the resident process as from a run of its own: one line per message."""
    run.mode_env = RELAY
    start_relay(run)
    log = run.home / "mail.log"
    run.write_config(auth_config(auth_server, f"logfile {log}\n"))
    for index in range(3):
        assert run("bob@example.net", input=message(f"m{index}")).returncode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 3
    assert all(" exitcode=EX_OK " in line and " user=alice " in line for line in lines)
    assert "s3cret" not in log.read_text()


def test_glued_identity_option_starting_with_bp_sends_the_message(run: Runner, smtp_server: SmtpServer) -> None:
    """``-abpx@example.org`` names the identity ``bpx@example.org``: a send, not a queue listing. The front end
    once read it as ``-bp``, did not spool standard input, and the relay sent a message without subject or body."""
    run.mode_env = RELAY
    start_relay(run)
    run.write_config(f"identity bpx@example.org\n  hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    result = run("-abpx@example.org", "bob@example.net", input=message("glued", b"the body\n"))
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert b"Subject: glued" in got.data and got.data.endswith(b"the body\r\n")


#: Variables the code reads that cannot change what a relayed run does, and why.
_NOT_IN_THE_FINGERPRINT = {
    "LISTEN_PID": "systemd socket activation of the resident process itself",
    "LISTEN_FDS": "systemd socket activation of the resident process itself",
    "XDG_RUNTIME_DIR": "where the socket is: a caller with another one finds another socket",
    "DISPLAY": "--oauth2-login only, which never goes through the relay",
    "WAYLAND_DISPLAY": "--oauth2-login only, which never goes through the relay",
    "XDG_CONFIG_HOME": "--import-msmtprc only, which never goes through the relay",
    "ESMTP_SYSTEM_SOCKET": "the system service: the front end decides on it before any resident process",
    "ESMTP_SYSTEM_MAILDROP": "the system service: the front end decides on it before any resident process",
    "ESMTP_SYSTEM_SPOOL": "the system service's own paths (and the front end's decision, before any relay)",
    "ESMTP_SYSTEM_USER": "the system service only",
    "ESMTP_SYSTEM_MAILNAME": "the system service only (the submitter's mail domain)",
    "ESMTP_SYSTEM_MESSAGE_LIMIT": "the system service and the front end's maildrop, never the warm relay",
}


def test_every_environment_variable_the_code_reads_is_in_the_fingerprint() -> None:
    """A resident process serves only callers whose environment agrees on everything the code reads: one list,
    ``front.FINGERPRINT_VARS``, checked here against every ``os.environ``/``os.getenv`` read in esmtp and its
    plugins (``ESMTP_DISABLE_PLUGINS`` was once missing)."""
    from esmtp.front import FINGERPRINT_VARS

    read = re.compile(r"""(?:os\.environ\.get|os\.environ\[|os\.getenv)\(?\s*["']([A-Z0-9_]+)["']""")
    root = Path(__file__).resolve().parent.parent
    found = {name for tree in ("esmtp", "plugins") for path in (root / tree).rglob("*.py")
             for name in read.findall(path.read_text())}
    assert "ESMTP_DISABLE_PLUGINS" in found and "HOME" in found  # the pattern finds what it must
    missing = found - set(FINGERPRINT_VARS) - set(_NOT_IN_THE_FINGERPRINT)
    assert not missing, f"read by the code but not in front.FINGERPRINT_VARS: {sorted(missing)}"


def test_a_caller_with_other_disabled_plugins_is_not_served(run: Runner, smtp_server: SmtpServer) -> None:
    """A resident process started with the Message-ID and Date fix-ups disabled once served a caller without that
    variable: its message went out with neither header."""
    run.mode_env = RELAY
    start_relay(run, ESMTP_DISABLE_PLUGINS="fixup_message_id,fixup_date")
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    result = run("bob@example.net", input=message("fixed up"))
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert b"\r\nMessage-ID: " in got.data and b"\r\nDate: " in b"\r\n" + got.data


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_descriptors_received_with_a_refused_request_are_closed(run: Runner, smtp_server: SmtpServer) -> None:
    """A caller (the same user, speaking the protocol itself) that passes a directory as the message's descriptor:
    the run fails, and every descriptor it passed is closed anyway. Once each such request left one open (9 became
    39 after 30), until ``mailq`` through the relay hit the descriptor limit."""
    run.mode_env = RELAY
    pid = start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    assert run("bob@example.net", input=message("warm")).returncode == 0  # configuration and session loaded
    before = _open_descriptors(pid)
    code = ("import os; from esmtp import front\n"
            "path, ours = front.socket_path(None), front.fingerprint(None)\n"
            "for _ in range(30):\n"
            "    sock, directory = front._connect(path), os.open('/', os.O_RDONLY)\n"
            "    assert front._request(sock, ['sendmail', 'bob@example.net'], directory, ours) is None\n"
            "    os.close(directory)\n"
            "    sock.close()\n")
    subprocess.run([PYTHON, "-c", code], env=run.env(), check=True, timeout=60, cwd="/")
    wait_for(lambda: _open_descriptors(pid) <= before)
    assert run("-bp").returncode == 0
    assert len(smtp_server.sink.messages) == 1


def test_an_in_place_edit_of_the_same_size_with_the_old_mtime_applies(run: Runner, smtp_server: SmtpServer) -> None:
    """Same inode, same size, the modification time set back (an editor or a ``cp -p`` can do it): the change time
    still tells (once the message went to the old server)."""
    run.mode_env = RELAY
    start_relay(run)
    config = run.write_config(f"hostname {smtp_server.hostport}\n")
    assert run("bob@example.net", input=message("old")).returncode == 0
    other = start_server()
    try:
        old = config.stat()
        new_text = f"hostname {other.hostport}".ljust(old.st_size - 1) + "\n"
        with open(config, "r+") as handle:
            handle.write(new_text)
        os.utime(config, ns=(old.st_atime_ns, old.st_mtime_ns))
        now = config.stat()
        assert (now.st_ino, now.st_size, now.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)
        assert run("bob@example.net", input=message("new")).returncode == 0
        assert subjects(smtp_server) == ["old"]
        assert subjects(other) == ["new"]
    finally:
        other.controller.stop()


def test_a_killed_resident_process_leaves_no_spool_file_behind(run: Runner, smtp_server: SmtpServer,
                                                               tmp_path: Path) -> None:
    """SIGKILL in the middle of DATA leaves the body's spool file (``esmtp-PID-*.body``) in ``$TMPDIR``: the next
    resident process removes those of processes that are gone (and nothing else)."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    alive = spool / f"esmtp-{os.getpid()}-0123456789ab.body"  # a live process's (ours): kept
    alive.write_bytes(b"in use")
    other = spool / "esmtp-notes.body"  # not a spool file's name: kept
    other.write_bytes(b"mine")
    run.mode_env = {**RELAY, "TMPDIR": str(spool), "ESMTP_RELAY_TEST_CRASH": "data"}
    start_relay(run)
    run.write_config(f"hostname {smtp_server.hostport}\n")
    body = b"".join(b"line %06d of a message larger than a few spool chunks\n" % n for n in range(8000))
    assert run("bob@example.net", input=message("crash", body)).returncode == 0
    left = sorted(path.name for path in spool.glob("esmtp-*.body") if path not in (alive, other))
    assert len(left) == 1, left  # the killed process's
    run.mode_env = {**RELAY, "TMPDIR": str(spool)}
    start_relay(run)
    wait_for(lambda: sorted(spool.iterdir()) == sorted([alive, other]))

@pytest.mark.parametrize("relay", ["", "relay_daemon auto\n"])
def test_esmtprc_that_is_a_fifo_is_refused_without_reading_it(run: Runner, relay: str, tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes: the front end must check what the file is before it reads it,
    and refuse it as esmtp does (78), whether or not the warm relay is on."""
    os.mkfifo(run.home / ".esmtprc", 0o600)
    result = run("bob@example.net", input=message("x"), timeout=15)
    assert result.returncode == 78, result
    assert f"File {run.home}/.esmtprc must be a regular file." in result.stderr
    assert not relay_pids(run.runtime)


def test_a_runtime_directory_with_a_long_name_still_serves(run: Runner, auth_server: SmtpServer,
                                                           tmp_path: Path) -> None:
    """A socket path over 108 bytes (sun_path) once disabled the warm relay without a word (pytest's base temp under
    a long directory): the front end and the resident process reach it through a short name for the directory."""
    runtime = tmp_path / ("r" * 80) / ("u" * 80)
    runtime.mkdir(parents=True, mode=0o700)
    run.mode_env = {**RELAY, "XDG_RUNTIME_DIR": str(runtime)}
    assert len(str(socket_path(run))) > 108
    try:
        start_relay(run)
        run.write_config(auth_config(auth_server))
        auth_server.sink.clear()  # the server's own start-up probe
        for subject in ("one", "two"):
            result = run("-v", "bob@example.net", input=message(subject))
            assert result.returncode == 0, result.stderr
        assert "reusing the open connection" in result.stderr
        assert subjects(auth_server) == ["one", "two"]
        assert auth_server.sink.connections == 1  # the resident process's one kept connection: it did serve them
        assert len(relay_pids(runtime)) == 1
    finally:
        stop_relays(runtime)
