"""AUTH against a real Postfix with Cyrus SASL: each mechanism delivers with the right password and fails closed.

The project's command is run by explicit path (Postfix installs its own /usr/sbin/sendmail). What the server
recorded (``sasl_method``, ``sasl_username`` of the delivered message, the Postfix log) is the oracle.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from postfix_server import PostfixServer

pytestmark = pytest.mark.interop

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "NTLM")


def trust_test_ca(run: Any, postfix: PostfixServer) -> None:
    """Put the test CA where esmtp looks for it (``~/.authenticate/ca.pem``, private to the user)."""
    directory = run.home / ".authenticate"
    directory.mkdir(mode=0o700, exist_ok=True)
    ca = directory / "ca.pem"
    ca.write_bytes(postfix.ca_pem.read_bytes())
    ca.chmod(0o600)


def configure(run: Any, postfix: PostfixServer, port: int, *lines: str, user: str | None = None,
              password: str | None = None) -> None:
    user = postfix.user if user is None else user
    password = postfix.password if password is None else password
    # esmtprc processes backslash escapes in values: a literal backslash is written twice.
    quoted_user = user.replace("\\", "\\\\")
    run.write_config("\n".join([
        f"hostname {postfix.host}:{port}", f'username "{quoted_user}"', f'password "{password}"', *lines,
    ]) + "\n")


def send(run: Any, *args: str) -> tuple[Any, str]:
    marker = uuid.uuid4().hex
    message = (f"From: <sender@example.org>\nTo: <rcpt@example.net>\nSubject: auth interop\nX-Marker: {marker}\n\n"
               "body\n").encode()
    return run(*args, "-f", "sender@example.org", "rcpt@example.net", "other@example.com", input=message), marker


def assert_nothing_delivered(postfix: PostfixServer) -> None:
    assert postfix.queue_is_idle()
    assert postfix.messages() == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_mechanism_over_starttls(run: Any, clean_postfix: PostfixServer, mechanism: str) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.submission, "starttls required", f"auth_mechanisms {mechanism}")
    result, marker = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == (mechanism, postfix.sasl_username(postfix.user))
    assert got.sender == "sender@example.org"
    assert set(got.recipients) == {"rcpt@example.net", "other@example.com"}
    assert f"X-Marker: {marker}".encode() in got.eml


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_fails_and_delivers_nothing(run: Any, clean_postfix: PostfixServer, mechanism: str) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.submission, "starttls required", f"auth_mechanisms {mechanism}",
              password="Wrong-Pass.123")
    result, _ = send(run)
    assert result.returncode == 77, result.stderr
    assert "535" in result.stderr and mechanism in result.stderr
    assert "Wrong-Pass.123" not in result.stderr
    postfix.wait_for_log(rf"SASL {mechanism} authentication failed")
    assert_nothing_delivered(postfix)


@pytest.mark.parametrize(
    "mechanism",
    [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        pytest.param("NTLM", marks=pytest.mark.xfail(
            strict=True, reason="Cyrus's NTLM plugin turns the password into UTF-16 byte by byte, so a non-ASCII "
            "password cannot match a correct NTLM client (pyspnego)")),
    ],
)
def test_utf8_user_and_password(run: Any, clean_postfix: PostfixServer, mechanism: str) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.submission, "starttls required", f"auth_mechanisms {mechanism}",
              user=postfix.unicode_user, password=postfix.unicode_password)
    result, _ = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == (mechanism, postfix.sasl_username(postfix.unicode_user))


@pytest.mark.parametrize("form", ["{realm}\\{user}", "{REALM}\\{user}", "{user}@{realm}"])
def test_ntlm_domain_forms(run: Any, clean_postfix: PostfixServer, form: str) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    user = form.format(realm=postfix.realm, REALM=postfix.realm.upper(), user=postfix.user)
    configure(run, postfix, postfix.ports.submission, "starttls required", "auth_mechanisms NTLM", user=user)
    result, _ = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == ("NTLM", f"{postfix.user}@{postfix.realm}")


def test_default_choice_is_the_strongest(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.submission, "starttls required")
    result, _ = send(run, "-v")
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert got.sasl_method == "CRAM-MD5"


def test_implicit_tls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.smtps, "smtps enabled", "auth_mechanisms PLAIN")
    result, _ = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == ("PLAIN", postfix.sasl_username(postfix.user))


def test_plaintext_refused_without_tls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    configure(run, postfix, postfix.ports.notls, 'auth_mechanisms "PLAIN LOGIN"')
    result, _ = send(run)
    assert result.returncode == 77
    assert "auth_plaintext enabled" in result.stderr
    assert_nothing_delivered(postfix)


def test_challenge_response_without_tls(run: Any, clean_postfix: PostfixServer) -> None:
    """Without TLS, the default picks a mechanism that does not reveal the password, and delivery works."""
    postfix = clean_postfix
    configure(run, postfix, postfix.ports.notls)
    result, _ = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == ("CRAM-MD5", postfix.sasl_username(postfix.user))


def test_auth_plaintext_enabled_without_tls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    configure(run, postfix, postfix.ports.notls, "auth_mechanisms LOGIN", "auth_plaintext enabled")
    result, _ = send(run)
    assert result.returncode == 0, result.stderr
    [got] = postfix.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == ("LOGIN", postfix.sasl_username(postfix.user))
