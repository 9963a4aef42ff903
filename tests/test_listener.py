"""``esmtp --listen``: the installed command as a subprocess, real SMTP clients (Python's smtplib, swaks, msmtp,
Symfony Mailer) and a real upstream (aiosmtpd with AUTH). What is checked is what the upstream received (envelope
and bytes), the replies the clients got, and the listener's delivery log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from listener_support import Listener, hash_password, listeners, start_listener
from support import Runner, SmtpServer, entry_point, free_port, port_for_a_program

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from interop_tls import TLSFiles, generate_tls_files

__all__ = ["listeners"]  # the fixture

MESSAGE = b"From: app@example.org\r\nTo: bob@example.net\r\nSubject: listener\r\n\r\nHello.\r\n.dot line\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return generate_tls_files(tmp_path_factory.mktemp("pki") / "tls")


def configure(run: Runner, server: SmtpServer, extra: str = "") -> Path:
    """The upstream (aiosmtpd with AUTH alice/s3cret), a delivery log, and ``extra`` global lines."""
    log = run.home / "delivery.log"
    server.sink.clear()  # (aiosmtpd's controller connects once to see that it is up)
    run.write_config(f"hostname {server.hostport}\nusername alice\npassword s3cret\nauth_plaintext enabled\n"
                     f"logfile {log}\n{extra}")
    return log


def client(listener: Listener, timeout: float = 30) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", listener.port, local_hostname="app.example", timeout=timeout)


def wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_delivery_with_received_header_bcc_in_envelope_and_log(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    log = configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        code, features = smtp.ehlo("app.example")
        assert code == 250
        for keyword in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"SIZE", b"DSN"):
            assert keyword in features
        assert b"AUTH" not in features and b"STARTTLS" not in features  # no auth file, no certificate
        refused = smtp.sendmail("app@example.org", ["bob@example.net", "hidden@example.net"], MESSAGE)
        assert refused == {}
    got = auth_server.sink.messages
    assert len(got) == 1
    assert got[0].mail_from == "app@example.org"
    assert got[0].rcpt_tos == ["bob@example.net", "hidden@example.net"]  # the Bcc recipient stays in the envelope
    assert b"hidden" not in got[0].data  # ... and appears nowhere in the message
    first = got[0].data.split(b"\r\n")[0]
    assert first.startswith(b"Received: from app.example ([127.0.0.1])"), got[0].data[:200]
    assert b"with ESMTP id " in got[0].data
    assert got[0].data.endswith(b"\r\nHello.\r\n.dot line\r\n")
    assert auth_server.sink.auths == [("PLAIN", "alice")]  # the upstream login is the configuration's
    line = log.read_text()
    assert line.count("\n") == 1 and "client=127.0.0.1" in line and "exitcode=EX_OK" in line
    assert listener.stop() == 0
    assert "Traceback" not in listener.text


def test_pipelined_messages_on_one_connection_share_one_upstream_session(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    body = b"Subject: pipelined %d\r\n\r\nbody %d\r\n.\r\n"
    batch = b"EHLO app.example\r\n" + b"".join(
        b"MAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n" + body % (n, n) for n in range(3)
    ) + b"QUIT\r\n"
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:
        sock.sendall(batch)  # every command and every message in one write: the server must sort it out
        received = b""
        while not received.endswith(b"221 2.0.0 " + received.split(b"221 2.0.0 ")[-1]) or b"\r\n221 " not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    codes = [line[:3] for line in received.split(b"\r\n") if line[3:4] == b" "]
    assert codes == [b"220", b"250"] + [b"250", b"250", b"354", b"250"] * 3 + [b"221"], received
    assert [m.data.split(b"\r\n")[-2] for m in auth_server.sink.messages] == [b"body 0", b"body 1", b"body 2"]
    assert auth_server.sink.connections == 1


def test_twenty_concurrent_clients_share_one_upstream_connection(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def send(number: int) -> None:
        try:
            with client(listener) as smtp:
                start.wait(30)
                smtp.sendmail("app@example.org", [f"rcpt{number}@example.net"], MESSAGE)
        except (OSError, smtplib.SMTPException, threading.BrokenBarrierError) as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(m.rcpt_tos[0] for m in auth_server.sink.messages) == sorted(f"rcpt{n}@example.net" for n in range(20))
    assert auth_server.sink.connections == 1
    assert len(auth_server.sink.auths) == 1


def test_client_outside_listen_allow_gets_554_and_is_closed(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_allow 10.0.0.0/8,192.168.1.7\n")
    listener = start_listener(run)
    listeners.append(listener)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        greeting = sock.recv(1024)
        assert greeting.startswith(b"554 5.7.1 ") and b"127.0.0.1" in greeting
        assert sock.recv(1024) == b""  # closed
    assert auth_server.sink.connections == 0


def test_upstream_down_gives_451_and_with_queue_fallback_250_queued(
        run: Runner, listeners: list[Listener], tmp_path: Path) -> None:
    dead = free_port()
    run.write_config(f"hostname 127.0.0.1:{dead}\n")
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
    assert refused.value.smtp_code == 451  # temporary: the application keeps the message
    assert b"try again later" in refused.value.smtp_error
    listener.stop()

    queue = tmp_path / "queue"
    run.write_config(f"hostname 127.0.0.1:{dead}\nqueue fallback\nqueue_dir {queue}\n")
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        smtp.ehlo("app.example")
        smtp.mail("app@example.org")
        smtp.rcpt("bob@example.net")
        code, text = smtp.data(MESSAGE)
    assert code == 250 and b"queued as" in text
    listing = run(program="mailq")
    assert "bob@example.net" in listing.stdout, listing.stdout


def test_limits_each_with_a_clear_reply(run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_max_size 2000\nlisten_max_recipients 2\n")
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        assert smtp.ehlo("app.example")[0] == 250
        assert smtp.esmtp_features["size"] == "2000"
        assert smtp.mail("app@example.org", ["SIZE=5000"])[0] == 552
        assert smtp.mail("app@example.org")[0] == 250
        assert smtp.rcpt("a@example.net")[0] == 250
        assert smtp.rcpt("b@example.net")[0] == 250
        code, text = smtp.rcpt("c@example.net")
        assert code == 452 and b"at most 2" in text
        code, text = smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100)
        assert code == 552, text  # enforced while streaming, answered at the dot
        assert smtp.mail("app@example.org")[0] == 250  # the session goes on
        assert smtp.rcpt("a@example.net")[0] == 250
        long_line = b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\n"
        code, text = smtp.data(long_line)
        assert code == 500 and b"998" in text
        assert smtp.noop()[0] == 250
    assert auth_server.sink.messages == []


def test_per_address_limit(run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_max_per_address 2\n")
    listener = start_listener(run)
    listeners.append(listener)
    first, second = client(listener), client(listener)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as third:
        assert third.recv(1024).startswith(b"421 4.7.0 ")
    first.quit()
    time.sleep(0.5)  # the listener sees the hang-up
    with client(listener) as fourth:
        assert fourth.noop()[0] == 250
    second.quit()


# ---- AUTH, TLS, sender policy ----------------------------------------------------------------------------------------


def auth_setup(run: Runner, server: SmtpServer, pki: TLSFiles, extra: str = "") -> Path:
    users = run.home / "listen-users"
    users.write_text(f"app:{hash_password(run, 'app password')}\n"
                     f"limited:{hash_password(run, 'limited pw')}:limited@example.org, *@apps.example.org\n")
    return configure(run, server, f"listen_auth_file {users}\nlisten_tls_cert {pki.server_cert_pem}\n"
                                  f"listen_tls_key {pki.server_key_pem}\n{extra}")


def tls_client(pki: TLSFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_pem))


def test_hash_password_reads_stdin_and_never_prints_the_password(run: Runner) -> None:
    hashed = hash_password(run, "correct horse")
    assert hashed.startswith("$scrypt$n=16384,r=8,p=1$") and "correct" not in hashed
    assert hash_password(run, "correct horse") != hashed  # a new salt each time
    result = run("--hash-password", "secret-in-argv", program="esmtp")
    assert result.returncode != 0 or "secret-in-argv" not in result.stdout


def test_auth_over_starttls_required_and_plaintext_auth_not_offered(
        run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    auth_setup(run, auth_server, pki)
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        smtp.ehlo("app.example")
        assert "starttls" in smtp.esmtp_features and "auth" not in smtp.esmtp_features
        assert smtp.mail("app@example.org")[0] == 530  # AUTH is required
        assert smtp.docmd("AUTH", "PLAIN AGFwcABhcHAgcGFzc3dvcmQ=")[0] == 538  # never in clear text
        smtp.starttls(context=tls_client(pki))
        smtp.ehlo("app.example")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            smtp.login("app", "wrong password")
        assert wrong.value.smtp_code == 535
        smtp.login("app", "app password")
        smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
    message = auth_server.sink.messages[0]
    assert b"(authenticated as app)" in message.data and b"with ESMTPSA id" in message.data


def test_wrong_password_relays_nothing_and_three_failures_close(
        run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    auth_setup(run, auth_server, pki, "listen_auth_plaintext enabled\n")
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        smtp.ehlo("app.example")
        assert "auth" in smtp.esmtp_features  # opted in: offered without TLS
        for _ in range(2):
            assert smtp.docmd("AUTH", "PLAIN AGFwcABub3Bl")[0] == 535  # \0app\0nope
            assert smtp.mail("app@example.org")[0] == 530
            smtp.rset()
        assert smtp.docmd("AUTH", "PLAIN AGFwcABub3Bl")[0] == 421
    assert auth_server.sink.messages == [] and auth_server.sink.connections == 0


def test_sender_policy(run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    auth_setup(run, auth_server, pki)
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        smtp.starttls(context=tls_client(pki))
        smtp.login("limited", "limited pw")
        code, text = smtp.mail("boss@example.org")
        assert code == 550 and b"may not send" in text
        assert smtp.mail("worker@apps.example.org")[0] == 250
        smtp.rset()
        smtp.sendmail("Limited@example.org", ["bob@example.net"], MESSAGE)
    assert [m.mail_from for m in auth_server.sink.messages] == ["Limited@example.org"]


def test_implicit_tls(run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    port = port_for_a_program()
    auth_setup(run, auth_server, pki, f"listen_smtps {port}\n")
    listener = start_listener(run, port=port)
    listeners.append(listener)
    with smtplib.SMTP_SSL("127.0.0.1", port, context=tls_client(pki), timeout=30) as smtp:
        smtp.ehlo("app.example")
        assert "starttls" not in smtp.esmtp_features
        smtp.login("app", "app password")
        smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
    assert b"with ESMTPSA" in auth_server.sink.messages[0].data


# ---- real clients ----------------------------------------------------------------------------------------------------


def _need(program: str, installer: str) -> None:
    if shutil.which(program) is None:
        reason = f"{program} is not installed ({installer} installs it)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason}; CI=true: a skip is a failure", pytrace=False)
        pytest.skip(reason)


def test_swaks(run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    _need("swaks", ".ci/install-listener-deps.sh")
    auth_setup(run, auth_server, pki)
    listener = start_listener(run)
    listeners.append(listener)
    base = ["swaks", "--server", "127.0.0.1", "--port", str(listener.port), "--from", "app@example.org",
            "--to", "bob@example.net", "--helo", "swaks.example", "--header", "Subject: from swaks"]
    good = subprocess.run([*base, "--tls", "--auth", "PLAIN", "--auth-user", "app", "--auth-password", "app password",
                           "--tls-verify", "--tls-ca-path", str(pki.ca_pem)], capture_output=True, timeout=60)
    assert good.returncode == 0, good.stdout.decode()[-2000:]
    bad = subprocess.run([*base, "--tls", "--auth", "LOGIN", "--auth-user", "app", "--auth-password", "wrong"],
                         capture_output=True, timeout=60)
    assert bad.returncode != 0 and b"535 5.7.8" in bad.stdout
    assert [m.rcpt_tos for m in auth_server.sink.messages] == [["bob@example.net"]]
    assert b"Subject: from swaks" in auth_server.sink.messages[0].data


def test_msmtp_client_auth_over_starttls(
        run: Runner, auth_server: SmtpServer, pki: TLSFiles, listeners: list[Listener]) -> None:
    _need("msmtp", ".ci/install-listener-deps.sh")
    auth_setup(run, auth_server, pki)
    listener = start_listener(run)
    listeners.append(listener)

    def msmtp(password: str) -> subprocess.CompletedProcess[bytes]:
        rc = run.home / "msmtprc"
        rc.write_text(f"account default\nhost 127.0.0.1\nport {listener.port}\ntls on\ntls_starttls on\n"
                      f"tls_trust_file {pki.ca_pem}\nauth on\nuser app\npassword {password}\nfrom app@example.org\n")
        rc.chmod(0o600)
        return subprocess.run(["msmtp", "-C", str(rc), "bob@example.net", "hidden@example.net"], input=MESSAGE,
                              capture_output=True, timeout=60, env=run.env())

    good = msmtp("app password")
    assert good.returncode == 0, good.stderr.decode()
    bad = msmtp("not it")
    assert bad.returncode == 77 and b"535" in bad.stderr, bad.stderr.decode()  # EX_NOPERM: authentication failed
    assert [m.rcpt_tos for m in auth_server.sink.messages] == [["bob@example.net", "hidden@example.net"]]


SYMFONY = r"""<?php
require $argv[1];
use Symfony\Component\Mailer\Transport;
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mime\Email;

$mailer = new Mailer(Transport::fromDsn($argv[2]));
$outcomes = [];
foreach (['bob@example.net', 'jörg@example.net'] as $to) {
    try {
        $mailer->send((new Email())->from('app@example.org')->to($to)->bcc('hidden@example.net')
            ->subject('Symfony')->text("Hello.\n.\nA lone dot above.\n"));
        $outcomes[] = 'sent';
    } catch (\Throwable $error) {
        $outcomes[] = get_class($error) . ': ' . $error->getMessage();
    }
}
echo json_encode($outcomes), "\n";
"""


def test_symfony_mailer_smtp_transport(run: Runner, auth_server: SmtpServer, listeners: list[Listener],
                                       tmp_path: Path) -> None:
    from test_stdio_php import AUTOLOAD, _php_unavailable

    reason = _php_unavailable()
    if reason is not None:
        _need("php-symfony-mailer-missing", ".ci/install-php-deps.sh")
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    script = tmp_path / "send.php"
    script.write_text(SYMFONY)
    proc = subprocess.run(["php", str(script), AUTOLOAD, f"smtp://127.0.0.1:{listener.port}"], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    assert json.loads(proc.stdout.decode().strip().splitlines()[-1]) == ["sent", "sent"]
    first, utf8 = auth_server.sink.messages
    assert first.rcpt_tos == ["bob@example.net", "hidden@example.net"]
    assert b"hidden" not in first.data and b"Hello.\r\n.\r\nA lone dot above.\r\n" in first.data
    assert utf8.rcpt_tos[0] == "jörg@example.net"


# ---- stopping --------------------------------------------------------------------------------------------------------


def test_sigterm_during_data_delivers_then_closes_and_idle_clients_get_421(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    idle = client(listener)
    idle.ehlo("idle.example")
    busy = client(listener)
    busy.ehlo("app.example")
    busy.mail("app@example.org")
    busy.rcpt("bob@example.net")
    assert busy.docmd("DATA")[0] == 354
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    time.sleep(0.3)
    listener.proc.send_signal(signal.SIGTERM)
    assert idle.getreply()[0] == 421  # told at once, without a command
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=5).recv(10)  # no longer accepting
    time.sleep(0.3)
    busy.send(b"second half\r\n.\r\n")
    code, text = busy.getreply()
    assert code == 250, text  # the message in flight was finished and delivered...
    assert [m.data.split(b"\r\n")[-2] for m in auth_server.sink.messages] == [b"second half"]  # ... once
    assert busy.getreply()[0] == 421
    assert listener.proc.wait(30) == 0


def test_sigterm_grace_runs_out_mid_data_gives_421_and_nothing_relayed(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_grace 1\n")
    listener = start_listener(run)
    listeners.append(listener)
    busy = client(listener)
    busy.ehlo("app.example")
    busy.mail("app@example.org")
    busy.rcpt("bob@example.net")
    assert busy.docmd("DATA")[0] == 354
    busy.send(b"Subject: never finished\r\n\r\nfirst half\r\n")
    listener.proc.send_signal(signal.SIGTERM)
    code, _ = busy.getreply()
    assert code == 421  # the client keeps the message
    assert listener.proc.wait(30) == 0
    assert auth_server.sink.messages == []


def test_auth_file_without_tls_or_plaintext_opt_in_is_refused_at_start(run: Runner, auth_server: SmtpServer) -> None:
    users = run.home / "listen-users"
    users.write_text(f"app:{hash_password(run, 'pw')}\n")
    configure(run, auth_server, f"listen_auth_file {users}\n")
    result = run("--listen", "127.0.0.1:1", program="esmtp")
    assert result.returncode == 78 and "listen_auth_file needs TLS" in result.stderr
    users.write_text("app:plaintext-password\n")
    configure(run, auth_server, f"listen_auth_file {users}\nlisten_auth_plaintext enabled\n")
    result = run("--listen", "127.0.0.1:1", program="esmtp")
    assert result.returncode == 78
    assert "listen-users:1: user 'app': the hash does not start with $scrypt$" in result.stderr
    assert "plaintext-password" not in result.stderr


def test_sighup_is_ignored(run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    listener.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP ignored" in listener.text)
    with client(listener) as smtp:
        smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
    assert len(auth_server.sink.messages) == 1
    assert listener.stop() == 0


def test_listen_usage_errors(run: Runner) -> None:
    for value in ("nonsense", "127.0.0.1:99999", "[::1]"):
        result = run("--listen", value, program="esmtp")
        assert result.returncode in (64, 78) and "--listen" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    result = run("--listen", program="esmtp")
    assert result.returncode == 64


def test_entry_points_exist() -> None:
    assert Path(entry_point("esmtp")).exists()
