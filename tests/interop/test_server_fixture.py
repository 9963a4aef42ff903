"""The interop server fixture itself, exercised with the standard library's smtplib only.

These tests pin down what the esmtp interop tests rely on: each port behaves as documented on
:class:`postfix_server.Ports`, delivered messages are recorded with their AUTH data, and the broken TLS
ports fail certificate verification for the right reason.
"""

from __future__ import annotations

import base64
import os
import smtplib
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from postfix_server import (
    DeliveredMessage,
    PostfixServer,
    _session_members,
    must_fail_instead_of_skip,
    parse_env,
    runtime_directory,
)

pytestmark = pytest.mark.interop

SENDER = "sender@example.org"
RECIPIENTS = ["rcpt1@example.net", "rcpt2@example.com"]


def _message(marker: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {', '.join(RECIPIENTS)}\r\nSubject: interop {marker}\r\n\r\n"
        f"body {marker}\r\n.leading dot\r\n"
    ).encode()


def _send(smtp: smtplib.SMTP, marker: str) -> str:
    """MAIL/RCPT/DATA by hand (smtplib.sendmail hides the DATA reply); return the queue id."""
    code, reply = smtp.mail(SENDER)
    assert code == 250, reply
    for rcpt in RECIPIENTS:
        code, reply = smtp.rcpt(rcpt)
        assert code == 250, reply
    code, reply = smtp.data(_message(marker))
    assert code == 250, reply
    assert b"queued as " in reply, reply
    return reply.decode().rsplit(" ", 1)[-1]


def _verifying(postfix: PostfixServer, cafile: Path | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile or postfix.ca_pem))


def _delivered(postfix: PostfixServer, queue_id: str, marker: str) -> DeliveredMessage:
    [record] = postfix.wait_for_messages(1)
    assert record.queue_id == queue_id
    assert record.sender == SENDER
    assert sorted(record.recipients) == sorted(RECIPIENTS)
    assert f"body {marker}\n.leading dot\n".encode() in record.eml  # LF endings, dot-unstuffed
    assert record.message()["Subject"] == f"interop {marker}"
    return record


@contextmanager
def _smtp(postfix: PostfixServer, port: int, *, host: str | None = None) -> Iterator[smtplib.SMTP]:
    smtp = smtplib.SMTP(host or postfix.host, port, timeout=10)
    try:
        yield smtp
    finally:
        smtp.close()


# ------------------------------------------------------------------------------------------ layout


def test_ports_are_distinct_and_not_fixed(postfix: PostfixServer) -> None:
    ports = postfix.ports.all()
    assert len(set(ports.values())) == len(ports) == 9
    assert all(port >= 1024 for port in ports.values())
    assert postfix.host == "127.0.0.1" and postfix.hostname == "localhost"


def test_tls_files_exist(postfix: PostfixServer) -> None:
    for path in (
        postfix.ca_pem,
        postfix.client_cert_pem,
        postfix.client_key_pem,
        postfix.client_combined_pem,
        postfix.client_combined_encrypted_pem,
        postfix.rogue_client_cert_pem,
        postfix.rogue_client_key_pem,
    ):
        assert path.is_file() and path.stat().st_size > 0
    assert b"ENCRYPTED PRIVATE KEY" in postfix.client_combined_encrypted_pem.read_bytes()
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(postfix.client_combined_encrypted_pem, password=postfix.client_key_passphrase)
    with pytest.raises(ssl.SSLError):
        ssl.create_default_context().load_cert_chain(postfix.client_combined_encrypted_pem, password="wrong")


def test_smtp_port_offers_starttls_and_all_mechanisms(postfix: PostfixServer) -> None:
    with _smtp(postfix, postfix.ports.smtp) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls")
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5", "NTLM"}


# ------------------------------------------------------------------------------------------ AUTH


@pytest.mark.parametrize("mechanism", ["PLAIN", "CRAM-MD5"])
def test_starttls_auth_delivers_and_records_sasl(clean_postfix: PostfixServer, mechanism: str) -> None:
    postfix = clean_postfix
    marker = uuid.uuid4().hex
    with _smtp(postfix, postfix.ports.smtp, host=postfix.hostname) as smtp:
        smtp.starttls(context=_verifying(postfix))
        smtp.ehlo("client.example")
        smtp.user, smtp.password = postfix.user, postfix.password
        code, _ = smtp.auth(mechanism, smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_cram_md5)
        assert code == 235
        queue_id = _send(smtp, marker)
        smtp.quit()
    record = _delivered(postfix, queue_id, marker)
    assert record.sasl_method == mechanism
    assert record.sasl_username == postfix.sasl_username(postfix.user) == f"{postfix.user}@{postfix.realm}"
    assert b" with ESMTPSA id " in record.eml  # TLS + AUTH, per Postfix's Received header


def test_unicode_password_with_auth_plain(clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    token = base64.b64encode(f"\0{postfix.unicode_user}\0{postfix.unicode_password}".encode()).decode()
    with _smtp(postfix, postfix.ports.notls) as smtp:
        smtp.ehlo("client.example")
        code, reply = smtp.docmd("AUTH", f"PLAIN {token}")  # smtplib.auth() encodes as ASCII only
        assert code == 235, reply
        queue_id = _send(smtp, "unicode")
        smtp.quit()
    record = _delivered(postfix, queue_id, "unicode")
    assert record.sasl_username == postfix.sasl_username(postfix.unicode_user)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password_gives_535(postfix: PostfixServer, mechanism: str) -> None:
    with _smtp(postfix, postfix.ports.notls) as smtp:
        smtp.ehlo("client.example")
        smtp.user, smtp.password = postfix.user, "wrong-password"
        authobject = getattr(
            smtp, {"PLAIN": "auth_plain", "LOGIN": "auth_login", "CRAM-MD5": "auth_cram_md5"}[mechanism]
        )
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.auth(mechanism, authobject)
        assert err.value.smtp_code == 535
    postfix.wait_for_log(rf"{mechanism} authentication failed")


def test_notls_port_has_no_starttls_and_requires_auth(postfix: PostfixServer) -> None:
    with _smtp(postfix, postfix.ports.notls) as smtp:
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5", "NTLM"}
        assert smtp.mail(SENDER)[0] == 250
        code, reply = smtp.rcpt(RECIPIENTS[0])
        assert code == 554 and b"5.7.1" in reply  # relay refused without AUTH


def test_submission_requires_starttls_then_auth(clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    with _smtp(postfix, postfix.ports.submission) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, reply = smtp.mail(SENDER)
        assert code == 530 and b"STARTTLS" in reply
        smtp.rset()
        smtp.starttls(context=_verifying(postfix))
        smtp.ehlo("client.example")
        assert smtp.has_extn("auth")
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt(RECIPIENTS[0])[0] == 554  # AUTH still required
        smtp.rset()
        smtp.login(postfix.user, postfix.password)
        queue_id = _send(smtp, "submission")
        smtp.quit()
    assert _delivered(postfix, queue_id, "submission").sasl_username == postfix.sasl_username(postfix.user)


# ------------------------------------------------------------------------------------------ TLS


def test_smtps_implicit_tls_verified_with_ca(clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    with smtplib.SMTP_SSL(postfix.host, postfix.ports.smtps, context=_verifying(postfix), timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.user, smtp.password = postfix.user, postfix.password
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
        queue_id = _send(smtp, "smtps")
    assert _delivered(postfix, queue_id, "smtps").sasl_method == "LOGIN"


def test_smtps_refuses_unverified_default_trust(postfix: PostfixServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(postfix.host, postfix.ports.smtps, context=ssl.create_default_context(), timeout=10)


@pytest.mark.parametrize("combined", ["plain", "encrypted"])
def test_client_cert_accepted_on_submission_cc(clean_postfix: PostfixServer, combined: str) -> None:
    postfix = clean_postfix
    ctx = _verifying(postfix)
    if combined == "plain":
        ctx.load_cert_chain(postfix.client_combined_pem)
    else:
        ctx.load_cert_chain(postfix.client_combined_encrypted_pem, password=postfix.client_key_passphrase)
    with _smtp(postfix, postfix.ports.submission_cc) as smtp:
        smtp.starttls(context=ctx)
        assert smtp.ehlo("client.example")[0] == 250
        queue_id = _send(smtp, "ccert")  # the certificate alone authorizes relay
        smtp.quit()
    record = _delivered(postfix, queue_id, "ccert")
    assert record.sasl_method == "" and record.sasl_username == ""


def test_client_cert_accepted_on_smtps_cc(clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    ctx = _verifying(postfix)
    ctx.load_cert_chain(postfix.client_cert_pem, postfix.client_key_pem)
    with smtplib.SMTP_SSL(postfix.host, postfix.ports.smtps_cc, context=ctx, timeout=10) as smtp:
        smtp.ehlo("client.example")
        queue_id = _send(smtp, "smtps-cc")
    _delivered(postfix, queue_id, "smtps-cc")


@pytest.mark.parametrize("cert", ["none", "rogue"])
def test_client_cert_required_on_submission_cc(postfix: PostfixServer, cert: str) -> None:
    ctx = _verifying(postfix)
    if cert == "rogue":
        ctx.load_cert_chain(postfix.rogue_client_cert_pem, postfix.rogue_client_key_pem)
    with _smtp(postfix, postfix.ports.submission_cc) as smtp:
        smtp.starttls(context=ctx)
        code, reply = smtp.ehlo("client.example")
    assert code == 421
    assert (b"No client certificate presented" if cert == "none" else b"Client certificate not trusted") in reply


@pytest.mark.parametrize(
    ("port_name", "connect_to", "why"),
    [
        ("expired", "localhost", "certificate has expired"),
        ("wronghost", "localhost", "Hostname mismatch"),
        ("rogue", "127.0.0.1", "unable to get local issuer certificate"),
    ],
)
def test_bad_server_certificates_fail_verification(
    postfix: PostfixServer, port_name: str, connect_to: str, why: str
) -> None:
    port = getattr(postfix.ports, port_name)
    with _smtp(postfix, port, host=connect_to) as smtp:
        with pytest.raises(ssl.SSLCertVerificationError) as err:
            smtp.starttls(context=_verifying(postfix))
        assert why in str(err.value.verify_message)
    # The same port completes STARTTLS when verification is off: only the certificate is wrong.
    lax = ssl.create_default_context()
    lax.check_hostname, lax.verify_mode = False, ssl.CERT_NONE
    with _smtp(postfix, port, host=connect_to) as smtp:
        assert smtp.starttls(context=lax)[0] == 220
        assert smtp.ehlo("client.example")[0] == 250


def test_rogue_port_verifies_against_rogue_ca(postfix: PostfixServer) -> None:
    with _smtp(postfix, postfix.ports.rogue, host=postfix.hostname) as smtp:
        assert smtp.starttls(context=_verifying(postfix, postfix.tls.rogue_ca_pem))[0] == 220


def test_hashed_ca_dir_verifies(postfix: PostfixServer) -> None:
    if postfix.tls.ca_dir is None:
        pytest.skip("no openssl CLI to hash the CA directory")
    ctx = ssl.create_default_context(capath=str(postfix.tls.ca_dir))
    with _smtp(postfix, postfix.ports.smtp, host=postfix.hostname) as smtp:
        assert smtp.starttls(context=ctx)[0] == 220


# ------------------------------------------------------------------------------------------ reading back


def test_clear_and_log(clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    assert postfix.messages() == []
    with _smtp(postfix, postfix.ports.smtp) as smtp:
        smtp.ehlo("client.example")
        queue_id = _send(smtp, "noauth")  # loopback relays without AUTH on "smtp"
        smtp.quit()
    record = _delivered(postfix, queue_id, "noauth")
    assert record.sasl_method == "" and record.client_address == "127.0.0.1"
    postfix.wait_for_log(rf"{queue_id}: .*status=sent")
    postfix.clear()
    assert postfix.messages() == []


def test_parse_env_keeps_repeated_keys() -> None:
    env = parse_env(b"queue_id=ABC\nsender=\nrcpt=a@x\nrcpt=b=c@y\n")
    assert env == {"queue_id": ["ABC"], "sender": [""], "rcpt": ["a@x", "b=c@y"]}


# ------------------------------------------------------------------------------------------ lifecycle


def test_stop_leaves_no_process(tmp_path: Path, postfix: PostfixServer) -> None:
    second = PostfixServer(runtime_directory())
    try:
        second.start()
        pid = second._master_pid
        assert pid is not None and len(_session_members(pid)) >= 2
        assert set(second.ports.all().values()).isdisjoint(postfix.ports.all().values())
    finally:
        second.stop()
        second.move_to(tmp_path / "second")
    assert not second.running()
    assert all(_is_zombie(member) for member in _session_members(pid))
    assert second.log_path.is_file() and "starting the Postfix mail system" in second.log_text()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize(
    ("environ", "fails"),
    [({"CI": "true"}, True), ({"CI": "TRUE"}, True), ({"CI": "false"}, False), ({"CI": ""}, False), ({}, False)],
)
def test_ci_turns_skip_into_failure(environ: dict[str, str], fails: bool) -> None:
    assert must_fail_instead_of_skip(environ) is fails


@pytest.mark.parametrize("ci", [True, False])
def test_missing_server_skips_or_fails(tmp_path: Path, ci: bool) -> None:
    """End to end: with Postfix "missing", a test using the fixture is skipped, or fails under CI=true."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["ESMTP_INTEROP_SIMULATE_MISSING"] = "1"
    if ci:
        env["CI"] = "true"
    test_id = f"{Path(__file__).resolve()}::test_ports_are_distinct_and_not_fixed"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--basetemp={tmp_path}", test_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    if ci:
        assert proc.returncode == 1, out
        assert "1 error" in out and "CI=true" in out and "simulated" in out
    else:
        assert proc.returncode == 0, out
        assert "1 skipped" in out and "simulated" in out
