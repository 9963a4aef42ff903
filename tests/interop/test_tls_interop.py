"""TLS against a real Postfix: STARTTLS, implicit TLS, client certificates, and the failures users meet.

Each case runs the project's ``sendmail`` by explicit path with its own HOME, certificates placed where esmtp users
keep them (``~/.authenticate``), and checks what Postfix delivered. Every connection that must fail is also checked
to have delivered nothing.
"""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from postfix_server import PostfixServer

from esmtp.smtp.tls import format_fingerprint

pytestmark = pytest.mark.interop

EX_UNAVAILABLE, EX_NOPERM, EX_CONFIG = 69, 77, 78


def install(path: Path, source: Path, mode: int = 0o600) -> Path:
    """Copy a certificate file where esmtp looks, with esmtp's permissions (directories 0700)."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir(mode=0o700)
    path.write_bytes(source.read_bytes())
    path.chmod(mode)
    return path


def trust(run: Any, postfix: PostfixServer) -> Path:
    """The test CA in ``~/.authenticate/ca.pem``, as the esmtp README says."""
    return install(run.home / ".authenticate" / "ca.pem", postfix.ca_pem)


def client_cert(run: Any, source: Path) -> Path:
    return install(run.home / ".authenticate" / "private" / "smtp-starttls.pem", source)


def send(run: Any, postfix: PostfixServer, port: int, *lines: str, login: bool = False,
         host: str | None = None) -> tuple[Any, str]:
    """Write the configuration, send one message with -v, return the result and the message's marker."""
    config = [f"hostname {host or postfix.hostname}:{port}", *lines]
    if login:
        config += [f"username {postfix.user}", f'password "{postfix.password}"']
    run.write_config("\n".join(config) + "\n")
    marker = uuid.uuid4().hex
    message = f"From: <sender@example.org>\nTo: <rcpt@example.net>\nSubject: tls interop\nX-Marker: {marker}\n\nhi\n"
    result = run("-v", "-f", "sender@example.org", "rcpt@example.net", input=message.encode())
    return result, marker


def assert_delivered(postfix: PostfixServer, marker: str) -> Any:
    [got] = postfix.wait_for_messages(1)
    assert f"X-Marker: {marker}".encode() in got.eml
    assert got.recipients == ("rcpt@example.net",)
    return got


def assert_nothing_delivered(postfix: PostfixServer) -> None:
    assert postfix.queue_is_idle()
    assert postfix.messages() == []


# ---- the rows of the issue ---------------------------------------------------------------------------------------


def test_starttls_required_with_test_ca_in_authenticate(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.submission, "starttls required", login=True)
    assert result.returncode == 0, result.stderr
    got = assert_delivered(postfix, marker)
    # The submission port offers AUTH only inside TLS.
    assert got.sasl_username == postfix.sasl_username(postfix.user)
    assert "certificate verified" in result.stderr


def test_starttls_required_by_ip_address(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.submission, "starttls required", login=True, host=postfix.host)
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_implicit_tls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.smtps, "smtps enabled", login=True)
    assert result.returncode == 0, result.stderr
    assert assert_delivered(postfix, marker).sasl_username == postfix.sasl_username(postfix.user)
    assert "(implicit TLS)" in result.stderr


@pytest.mark.parametrize(("port", "option"), [("submission_cc", "starttls required"), ("smtps_cc", "smtps enabled")])
def test_client_certificate_accepted(run: Any, clean_postfix: PostfixServer, port: str, option: str) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    path = client_cert(run, postfix.client_combined_pem)
    result, marker = send(run, postfix, getattr(postfix.ports, port), option)
    assert result.returncode == 0, result.stderr
    assert assert_delivered(postfix, marker).sasl_method == ""  # relayed on the strength of the certificate
    assert f"client certificate: {path}" in result.stderr


@pytest.mark.parametrize(("port", "option"), [("submission_cc", "starttls required"), ("smtps_cc", "smtps enabled")])
def test_client_certificate_missing_is_refused(run: Any, clean_postfix: PostfixServer, port: str,
                                              option: str) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, _ = send(run, postfix, getattr(postfix.ports, port), option)
    assert result.returncode == EX_NOPERM, result.stderr
    assert "No client certificate presented" in result.stderr
    assert "requires a TLS client certificate and none is configured" in result.stderr
    assert str(run.home / ".authenticate" / "private" / "smtp-starttls.pem") in result.stderr
    assert_nothing_delivered(postfix)


def test_client_certificate_from_an_untrusted_ca_is_refused(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    path = client_cert(run, postfix.rogue_client_combined_pem)
    result, _ = send(run, postfix, postfix.ports.submission_cc, "starttls required")
    assert result.returncode == EX_NOPERM, result.stderr
    assert f"did not accept the TLS client certificate {path}" in result.stderr
    assert_nothing_delivered(postfix)


def test_per_host_client_certificate(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    client_cert(run, postfix.rogue_client_combined_pem)  # the general one would be refused
    install(run.home / ".authenticate" / postfix.hostname / "private" / "smtp-starttls.pem",
            postfix.client_combined_pem)
    result, marker = send(run, postfix, postfix.ports.submission_cc, "starttls required")
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_encrypted_client_key_with_the_right_passphrase(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    client_cert(run, postfix.client_combined_encrypted_pem)
    result, marker = send(run, postfix, postfix.ports.submission_cc, "starttls required",
                          f'certificate_passphrase "{postfix.client_key_passphrase}"')
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_encrypted_client_key_with_a_wrong_passphrase(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    path = client_cert(run, postfix.client_combined_encrypted_pem)
    result, _ = send(run, postfix, postfix.ports.submission_cc, "starttls required",
                     'certificate_passphrase "not the passphrase"')
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"certificate_passphrase does not decrypt the private key in {path}" in result.stderr
    assert "connecting to" not in result.stderr  # stopped before any connection
    assert_nothing_delivered(postfix)


def test_untrusted_ca(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, _ = send(run, postfix, postfix.ports.rogue, "starttls required", login=True)
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    server = f"{postfix.hostname}:{postfix.ports.rogue}"
    assert f"{server}: the TLS certificate for localhost is issued by an untrusted CA" in result.stderr
    assert "ROGUE CA" in result.stderr
    assert f"add the CA certificate to {run.home / '.authenticate' / 'ca.pem'}" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


def test_wrong_host_name(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, _ = send(run, postfix, postfix.ports.wronghost, "starttls required", login=True)
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert "the TLS certificate is not for host localhost (it is for wrong.example.invalid)" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


def test_expired_certificate(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, _ = send(run, postfix, postfix.ports.expired, "starttls required", login=True)
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert "the TLS certificate for localhost has expired (not after 20" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


def test_enabled_against_a_server_without_starttls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.notls, "starttls enabled", "auth_mechanisms CRAM-MD5",
                          login=True)
    assert result.returncode == 0, result.stderr
    assert "does not offer STARTTLS; continuing WITHOUT encryption" in result.stderr
    assert assert_delivered(postfix, marker).sasl_method == "CRAM-MD5"


def test_enabled_without_starttls_still_keeps_a_plaintext_password_back(run: Any,
                                                                        clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    result, _ = send(run, postfix, postfix.ports.notls, "starttls enabled", 'auth_mechanisms "PLAIN LOGIN"',
                     login=True)
    assert result.returncode == EX_NOPERM, result.stderr
    assert "refusing to send the password in clear" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


def test_required_against_a_server_without_starttls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    result, _ = send(run, postfix, postfix.ports.notls, "starttls required", login=True)
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert f"{postfix.hostname}:{postfix.ports.notls} does not offer STARTTLS" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


# ---- beyond the rows: other locations, pinning, minimum version ---------------------------------------------------


def test_libesmtp_xdg_locations(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    xdg = run.home / ".config" / "libesmtp"
    install(xdg / "ca.pem", postfix.ca_pem)
    install(xdg / "private" / f"{postfix.hostname}.pem", postfix.client_combined_pem)
    result, marker = send(run, postfix, postfix.ports.submission_cc, "starttls required")
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_fingerprint_pin_accepts_the_rogue_certificate(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    pin = format_fingerprint(ssl.PEM_cert_to_DER_cert(postfix.tls.rogue_cert_pem.read_text()))
    result, marker = send(run, postfix, postfix.ports.rogue, "starttls required", f'tls_fingerprint "{pin}"')
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_fingerprint_mismatch(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    pin = format_fingerprint(ssl.PEM_cert_to_DER_cert(postfix.tls.rogue_cert_pem.read_text()))
    result, _ = send(run, postfix, postfix.ports.submission, "starttls required", f'tls_fingerprint "{pin}"',
                     login=True)
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert "does not match tls_fingerprint" in result.stderr
    assert "C: AUTH" not in result.stderr
    assert_nothing_delivered(postfix)


def test_minimum_version_13(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.smtps, "smtps enabled", "tls_min_version 1.3", login=True)
    assert result.returncode == 0, result.stderr
    assert "TLSv1.3" in result.stderr
    assert_delivered(postfix, marker)
