"""TLS against a real Postfix: STARTTLS, implicit TLS, client certificates, and the failures users meet.

Each case runs the project's ``sendmail`` by explicit path with its own HOME, certificates placed where esmtp users
keep them (``~/.authenticate``), and checks what Postfix delivered. Every connection that must fail is also checked
to have delivered nothing.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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


def test_enabled_against_a_server_without_starttls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.notls, "starttls enabled", "auth_mechanisms CRAM-MD5",
                          login=True)
    assert result.returncode == 0, result.stderr
    assert "does not offer STARTTLS; continuing WITHOUT encryption" in result.stderr
    assert assert_delivered(postfix, marker).sasl_method == "CRAM-MD5"


def _rogue_pin(postfix: PostfixServer) -> str:
    return format_fingerprint(ssl.PEM_cert_to_DER_cert(postfix.tls.rogue_cert_pem.read_text()))


@dataclass(frozen=True)
class Refusal:
    """A TLS problem esmtp must stop at: where it connects, what it is configured with, what it must say."""

    port: str
    lines: Callable[[PostfixServer], list[str]]
    code: int
    #: What stderr must contain (``{server}``, ``{path}``, ``{ca}``: the server, the client certificate file, ca.pem).
    says: tuple[str, ...]
    trusted: bool = True
    login: bool = True
    #: A client certificate installed first (an attribute of the server holding its file).
    certificate: str | None = None
    #: Whether esmtp may have connected at all (a bad key passphrase stops it before any connection).
    connects: bool = True


REFUSALS = {
    "untrusted CA": Refusal("rogue", lambda _: ["starttls required"], EX_UNAVAILABLE, (
        "{server}: the TLS certificate for localhost is issued by an untrusted CA", "ROGUE CA",
        "add the CA certificate to {ca}")),
    "wrong host name": Refusal("wronghost", lambda _: ["starttls required"], EX_UNAVAILABLE, (
        "the TLS certificate is not for host localhost (it is for wrong.example.invalid)",)),
    "expired certificate": Refusal("expired", lambda _: ["starttls required"], EX_UNAVAILABLE, (
        "the TLS certificate for localhost has expired (not after 20",)),
    "required against a server without STARTTLS": Refusal("notls", lambda _: ["starttls required"], EX_UNAVAILABLE, (
        "{server} does not offer STARTTLS",), trusted=False),
    "enabled without STARTTLS keeps a plain-text password back": Refusal(
        "notls", lambda _: ["starttls enabled", 'auth_mechanisms "PLAIN LOGIN"'], EX_NOPERM, (
            "refusing to send the password in clear",), trusted=False),
    "fingerprint mismatch": Refusal(
        "submission", lambda postfix: ["starttls required", f'tls_fingerprint "{_rogue_pin(postfix)}"'],
        EX_UNAVAILABLE, ("does not match tls_fingerprint",)),
    "client certificate from an untrusted CA": Refusal(
        "submission_cc", lambda _: ["starttls required"], EX_NOPERM, (
            "did not accept the TLS client certificate {path}",), login=False,
        certificate="rogue_client_combined_pem"),
    "encrypted client key with a wrong passphrase": Refusal(
        "submission_cc", lambda _: ["starttls required", 'certificate_passphrase "not the passphrase"'], EX_CONFIG, (
            "certificate_passphrase does not decrypt the private key in {path}",), login=False,
        certificate="client_combined_encrypted_pem", connects=False),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_tls_problem_stops_the_delivery_before_any_secret(run: Any, clean_postfix: PostfixServer,
                                                            case: Refusal) -> None:
    postfix = clean_postfix
    if case.trusted:
        trust(run, postfix)
    path = client_cert(run, getattr(postfix, case.certificate)) if case.certificate else None
    port = getattr(postfix.ports, case.port)
    result, _ = send(run, postfix, port, *case.lines(postfix), login=case.login)
    assert result.returncode == case.code, result.stderr
    fields = {"server": f"{postfix.hostname}:{port}", "path": path, "ca": run.home / ".authenticate" / "ca.pem"}
    for text in case.says:
        assert text.format(**fields) in result.stderr
    assert "C: AUTH" not in result.stderr
    if not case.connects:
        assert "connecting to" not in result.stderr  # stopped before any connection
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
    result, marker = send(run, postfix, postfix.ports.rogue, "starttls required",
                          f'tls_fingerprint "{_rogue_pin(postfix)}"')
    assert result.returncode == 0, result.stderr
    assert_delivered(postfix, marker)


def test_minimum_version_13(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result, marker = send(run, postfix, postfix.ports.smtps, "smtps enabled", "tls_min_version 1.3", login=True)
    assert result.returncode == 0, result.stderr
    assert "TLSv1.3" in result.stderr
    assert_delivered(postfix, marker)
