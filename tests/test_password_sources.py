"""Passwords that are not in the configuration: ``password_command``/``passwordeval``, the keyring (a real
``keyrings.alt`` file backend, no desktop needed) and ``~/.netrc``, through the installed ``sendmail``."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Result, Runner, SmtpServer, entry_point, free_port

PASSWORD = "s3cret"  # auth_server's password for alice
MESSAGE = b"Subject: sources\n\nbody\n"
FILE_KEYRING = "keyrings.alt.file.PlaintextKeyring"
NO_KEYRING = "keyring.backends.fail.Keyring"


def configure(run: Runner, server: SmtpServer, *lines: str) -> Path:
    return run.write_config("\n".join([f"hostname {server.hostport}", "username alice", "auth_plaintext enabled",
                                       *lines]) + "\n")


def send(run: Runner, *args: str, keyring: str | None = NO_KEYRING, **env: str) -> Result:
    """A send; ``keyring``: the backend chosen with PYTHON_KEYRING_BACKEND (None: no choice made)."""
    chosen = {"PYTHON_KEYRING_BACKEND": keyring} if keyring is not None else {}
    return run(*args, "bob@example.net", input=MESSAGE, env=run.env(**chosen, **env), timeout=30)


def write_netrc(run: Runner, text: str, mode: int = 0o600) -> Path:
    netrc = run.home / ".netrc"
    netrc.write_text(text)
    netrc.chmod(mode)
    return netrc


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in (secret, base64.b64encode(secret.encode()).decode(),
                     base64.b64encode(f"\0alice\0{secret}".encode()).decode()):
            assert form not in text


# ---- password_command ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["password_command", "passwordeval"])
def test_password_command_supplies_the_password(run: Runner, auth_server: SmtpServer, tmp_path: Path,
                                                keyword: str) -> None:
    counter = tmp_path / "runs"
    configure(run, auth_server, f"{keyword} \"echo run >> {counter}; printf '{PASSWORD}\\r\\nsecond line\\n'\"")
    transcript = tmp_path / "transcript"
    result = send(run, "-v", "-X", str(transcript))
    assert result.returncode == 0, result.stderr
    assert auth_server.sink.auths == [("PLAIN", "alice")]
    assert counter.read_text() == "run\n"
    assert f"running {keyword}" in result.stderr
    assert_no_secret(result.stderr + transcript.read_text(), PASSWORD)


def test_password_command_not_run_when_no_auth_is_offered(run: Runner, smtp_server: SmtpServer,
                                                          tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    configure(run, smtp_server, f'password_command "touch {marker}; echo x"')
    result = send(run)
    assert result.returncode == 77  # a username but no AUTH offered
    assert not marker.exists()


def test_password_command_failing_exits_75_quoting_stderr(run: Runner, auth_server: SmtpServer) -> None:
    config = configure(run, auth_server, f"password_command \"echo {PASSWORD}; echo 'agent locked' >&2; exit 3\"")
    result = send(run)
    assert result.returncode == 75
    assert f"{config}:4: password_command failed with exit status 3: agent locked" in result.stderr
    assert_no_secret(result.stderr, PASSWORD)
    assert auth_server.sink.messages == []


def test_password_command_not_found_exits_78_naming_the_line(run: Runner, auth_server: SmtpServer) -> None:
    config = configure(run, auth_server, "", "passwordeval \"/no/such/helper --get smtp\"")
    result = send(run)
    assert result.returncode == 78
    assert f"{config}:5: passwordeval was not found (exit 127)" in result.stderr
    assert auth_server.sink.messages == []


def test_slow_password_command_is_bounded_by_the_timeout(run: Runner, auth_server: SmtpServer) -> None:
    marker = f"{20 + os.getpid() % 1000 / 1000:.3f}"  # a sleep this test alone runs
    configure(run, auth_server, "timeout 1", f'password_command "sleep {marker}; echo late"')
    result = send(run)
    assert result.returncode == 75
    assert "password_command did not finish within 1 s" in result.stderr
    assert auth_server.sink.messages == []
    # What the command started dies with it: no sleep is left behind, handed to init.
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True, check=False)
    assert left.stdout == "", left.stdout


def test_password_command_printing_a_lot_after_the_password_is_read_in_bounded_memory(
        run: Runner, auth_server: SmtpServer) -> None:
    """The first line, and a bounded amount after it: 100 MB after the password once made sendmail hold 321 MB."""
    configure(run, auth_server, f"password_command \"printf '{PASSWORD}\\n'; head -c 100000000 /dev/zero\"")
    measure = ("import resource, subprocess, sys; "
               "done = subprocess.run(sys.argv[1:], input=b'Subject: big\\n\\nx\\n'); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", measure, entry_point(), "bob@example.net"], capture_output=True,
                         env=run.env(PYTHON_KEYRING_BACKEND=NO_KEYRING), timeout=60, check=True, text=True)
    code, peak_kib = map(int, out.stdout.split())
    assert code == 0, out.stderr
    assert peak_kib < 120 * 1024, peak_kib
    assert auth_server.sink.auths == [("PLAIN", "alice")]


def test_password_command_leaving_a_child_behind_is_done_when_it_exits(run: Runner, auth_server: SmtpServer) -> None:
    """``echo pw; sleep 20 &``: the command has exited, the background child still holds the pipe. Its first line is
    taken at once (it once waited for the child, then said the command "did not finish")."""
    marker = f"{20 + os.getpid() % 1000 / 1000:.3f}"
    configure(run, auth_server, "timeout 5", f'password_command "echo {PASSWORD}; sleep {marker} &"')
    started = time.monotonic()
    try:
        result = send(run)
        elapsed = time.monotonic() - started
    finally:
        left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True, check=False)
        for pid in left.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
    assert result.returncode == 0, result.stderr
    assert elapsed < 4.5
    assert len(auth_server.sink.messages) == 1


def test_password_command_output_is_the_bearer_token_for_xoauth2(run: Runner, auth_server: SmtpServer) -> None:
    """msmtp style: an external helper prints the token; auth_mechanisms picks the bearer mechanism."""
    configure(run, auth_server, "auth_mechanisms XOAUTH2", 'password_command "echo tok"')
    result = send(run)
    assert result.returncode == 77  # the server does not offer XOAUTH2
    assert "allowed: XOAUTH2" in result.stderr


def test_password_and_password_command_conflict(run: Runner, auth_server: SmtpServer) -> None:
    config = configure(run, auth_server, f"password {PASSWORD}", 'password_command "echo x"')
    for _ in range(2):  # the second run reads the keyword declarations from the plugin index
        result = send(run)
        assert result.returncode == 78
        assert f"{config}:5: 'password_command' cannot be used together with 'password' (line 4)" in result.stderr
        assert_no_secret(result.stderr, PASSWORD)


# ---- keyring ---------------------------------------------------------------------------------------------------------


def test_store_password_then_send_from_the_keyring(run: Runner, auth_server: SmtpServer, tmp_path: Path) -> None:
    configure(run, auth_server)
    env = run.env(PYTHON_KEYRING_BACKEND=FILE_KEYRING, XDG_DATA_HOME=str(tmp_path / "data"))
    stored = run("--store-password", input=f"{PASSWORD}\n".encode(), program="esmtp", env=env)
    assert stored.returncode == 0, stored.stderr
    assert "service esmtp:127.0.0.1" in stored.stdout
    assert_no_secret(stored.stdout + stored.stderr, PASSWORD)
    result = run("-v", "bob@example.net", input=MESSAGE, env=env)
    assert result.returncode == 0, result.stderr
    assert "from the keyring (esmtp:127.0.0.1)" in result.stderr
    assert auth_server.sink.auths == [("PLAIN", "alice")]


def test_a_plain_text_keyring_is_used_only_when_chosen(run: Runner, auth_server: SmtpServer, tmp_path: Path) -> None:
    """keyrings.alt (which the test extra installs) makes its plain-text file the default backend when nothing better
    is there. esmtp stores nothing there, and reads nothing from there, unless it was chosen explicitly
    (ESMTP_KEYRING_BACKEND, or keyring's own PYTHON_KEYRING_BACKEND); then it says where the secret went and how safe
    that is."""
    configure(run, auth_server)
    data = tmp_path / "data"
    plain_file = data / "python_keyring" / "keyring_pass.cfg"
    refused = run("--store-password", input=f"{PASSWORD}\n".encode(), program="esmtp",
                  env=run.env(XDG_DATA_HOME=str(data)))
    assert refused.returncode == 78, refused
    assert "PlaintextKeyring" in refused.stderr and "plain text" in refused.stderr
    assert f"ESMTP_KEYRING_BACKEND={FILE_KEYRING}" in refused.stderr  # how to choose it anyway
    assert not plain_file.exists()
    for chosen in ({"ESMTP_KEYRING_BACKEND": FILE_KEYRING}, {"PYTHON_KEYRING_BACKEND": FILE_KEYRING}):
        stored = run("--store-password", input=f"{PASSWORD}\n".encode(), program="esmtp",
                     env=run.env(XDG_DATA_HOME=str(data), **chosen))
        assert stored.returncode == 0, stored.stderr
        assert f"plain text (base64) in {plain_file}" in stored.stdout
        assert_no_secret(stored.stdout + stored.stderr, PASSWORD)
    # A send without the choice does not read the plain-text file either: ~/.netrc would come next, and there is none.
    assert send(run, keyring=None, XDG_DATA_HOME=str(data)).returncode == 78
    assert send(run, keyring=None, XDG_DATA_HOME=str(data), ESMTP_KEYRING_BACKEND=FILE_KEYRING).returncode == 0


def test_store_password_warns_when_it_will_not_be_used_or_replaces_an_entry(run: Runner, auth_server: SmtpServer,
                                                                            tmp_path: Path) -> None:
    config = configure(run, auth_server, "password s3cret")
    env = run.env(PYTHON_KEYRING_BACKEND=FILE_KEYRING, XDG_DATA_HOME=str(tmp_path / "data"))
    stored = run("--store-password", input=b"other\n", program="esmtp", env=env)
    assert stored.returncode == 0, stored.stderr
    assert (f"esmtp: identity default has a password in {config}:4, which wins over the keyring: the stored one is "
            "used only once that line is removed") in stored.stderr
    configure(run, auth_server)
    again = run("--store-password", input=f"{PASSWORD}\n".encode(), program="esmtp", env=env)
    assert again.returncode == 0, again.stderr
    assert ("replaced the keyring entry esmtp:127.0.0.1, user alice: every configuration and identity with that "
            "server host and username (the key is host + user) now uses the new password") in again.stderr
    same = run("--store-password", input=f"{PASSWORD}\n".encode(), program="esmtp", env=env)
    assert same.returncode == 0 and "replaced" not in same.stderr
    assert send(run, keyring=FILE_KEYRING, XDG_DATA_HOME=str(tmp_path / "data")).returncode == 0


def test_store_password_for_an_unknown_identity(run: Runner, auth_server: SmtpServer, tmp_path: Path) -> None:
    configure(run, auth_server)
    env = run.env(PYTHON_KEYRING_BACKEND=FILE_KEYRING, XDG_DATA_HOME=str(tmp_path / "data"))
    result = run("--store-password", "--identity", "x@example.org", input=b"pw\n", program="esmtp", env=env)
    assert result.returncode == 64
    assert "no identity 'x@example.org'" in result.stderr


def test_keyring_not_installed_is_skipped_quietly(run: Runner, auth_server: SmtpServer, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "keyring"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('keyring is not installed')\n")
    configure(run, auth_server)
    netrc = write_netrc(run, f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    result = send(run, "-v", PYTHONPATH=str(shadow.parent))
    assert result.returncode == 0, result.stderr
    assert "from " + str(netrc) in result.stderr
    assert "the keyring" not in result.stderr and "ImportError" not in result.stderr


# ---- ~/.netrc --------------------------------------------------------------------------------------------------------


def test_netrc_supplies_the_password(run: Runner, auth_server: SmtpServer) -> None:
    configure(run, auth_server)
    write_netrc(run, f"machine other.example login alice password nope\nmachine 127.0.0.1 login alice "
                f"password {PASSWORD}\n")
    result = send(run, "-v")
    assert result.returncode == 0, result.stderr
    assert auth_server.sink.auths == [("PLAIN", "alice")]
    assert_no_secret(result.stderr, PASSWORD)


def test_netrc_readable_by_others_is_refused(run: Runner, auth_server: SmtpServer) -> None:
    configure(run, auth_server)
    netrc = write_netrc(run, f"machine 127.0.0.1 login alice password {PASSWORD}\n", 0o644)
    result = send(run)
    assert result.returncode == 78
    assert f"chmod 600 {netrc}" in result.stderr
    assert auth_server.sink.messages == []


def test_netrc_entry_for_another_login_is_not_used(run: Runner, auth_server: SmtpServer) -> None:
    configure(run, auth_server)
    write_netrc(run, f"machine 127.0.0.1 login bob password {PASSWORD}\n")
    result = send(run)
    assert result.returncode == 78
    assert "no password for alice at 127.0.0.1" in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX shell quoting")
def test_password_command_runs_once_per_identity_in_a_queue_flush(run: Runner, auth_server: SmtpServer,
                                                                  tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    command = f"password_command \"echo run >> {counter}; echo {PASSWORD}\""
    queue_env = {"ESMTP_QUEUE_DIR": str(tmp_path / "queue")}
    down = SmtpServer("127.0.0.1", free_port(), auth_server.sink, auth_server.controller)  # nobody listens there
    configure(run, down, command, "queue fallback")
    for _ in range(3):
        assert send(run, **queue_env).returncode == 0  # queued: the server is unreachable
    assert not counter.exists()  # no AUTH, so no secret was needed
    configure(run, auth_server, command, "queue fallback")
    flushed = run("-q", env=run.env(PYTHON_KEYRING_BACKEND=NO_KEYRING, **queue_env), timeout=60)
    assert flushed.returncode == 0, flushed.stderr
    assert len(auth_server.sink.messages) == 3
    assert counter.read_text() == "run\n"  # once for the identity, in the whole flush


def test_no_secret_in_the_queue_log(run: Runner, auth_server: SmtpServer, tmp_path: Path) -> None:
    """A background delivery whose password_command fails records its stderr, never its output (log, entry, mailq)."""
    import time

    configure(run, auth_server, f"password_command \"echo {PASSWORD}; echo 'agent locked' >&2; exit 1\"",
              "queue always")
    queue_dir = tmp_path / "queue"
    assert send(run, ESMTP_QUEUE_DIR=str(queue_dir)).returncode == 0
    log = queue_dir / "flush.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "1 deferred" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    listing = run(program="mailq", env=run.env(ESMTP_QUEUE_DIR=str(queue_dir)))
    assert "password_command failed with exit status 1: agent locked" in listing.stdout
    stored = "".join(path.read_text(errors="replace") for path in queue_dir.rglob("*") if path.is_file())
    assert_no_secret(listing.stdout + listing.stderr + stored, PASSWORD)
    assert auth_server.sink.messages == []


def test_password_command_cache_is_per_command_and_configuration_generation(tmp_path: Path) -> None:
    """A secret is reused for the identity it was fetched for, never for a reloaded configuration (the warm relay
    loads an edited file into new identity objects) or an edited command at the same line."""
    from esmtp_plugins.password_command import esmtp_secret

    from esmtp.config.model import Identity
    from esmtp.trace import Trace
    from esmtp.types import SaslMechanism

    runs = tmp_path / "runs"
    mechanism = SaslMechanism("PLAIN", 1, lambda credentials: None)  # type: ignore[arg-type, return-value]

    def identity(command: str) -> Identity:
        return Identity("me@example.org", username="me", source="/home/me/.esmtprc", lineno=3,
                        options={"password_command": command})

    def secret(block: Identity) -> str | None:
        return esmtp_secret(identity=block, mechanism=mechanism, trace=Trace())

    first = identity(f"echo run >> {runs}; echo old")
    assert secret(first) == "old" and secret(first) == "old"
    assert runs.read_text().count("run") == 1  # once per identity
    assert secret(identity(f"echo run >> {runs}; echo old")) == "old"  # the file loaded again: run again
    assert runs.read_text().count("run") == 2
    assert secret(identity("echo new")) == "new"  # the command edited at the same line
