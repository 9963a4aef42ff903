"""``esmtp --listen`` in front of a real Postfix (STARTTLS required, then AUTH): clients that authenticate to the
listener over STARTTLS (msmtp and smtplib), 20 concurrent clients on one upstream TLS connection and login, the
smuggling sequences as Postfix receives them, and Postfix's refusals as the replies to the final dot."""

from __future__ import annotations

import re
import shutil
import smtplib
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from listener_support import Listener, hash_password, listeners, start_listener
from postfix_server import PostfixServer
from test_auth_interop import configure, trust_test_ca

pytestmark = pytest.mark.interop
__all__ = ["listeners"]


def _setup(run: Any, postfix: PostfixServer, *extra: str) -> None:
    trust_test_ca(run, postfix)
    users = run.home / "listen-users"
    users.write_text(f"app:{hash_password(run, 'app password')}\n")
    configure(run, postfix, postfix.ports.submission, "starttls required", f"listen_auth_file {users}",
              f"listen_tls_cert {postfix.tls.server_cert_pem}", f"listen_tls_key {postfix.tls.server_key_pem}", *extra)


def _connections(postfix: PostfixServer) -> int:
    return len(re.findall(r"\bconnect from ", postfix.log_text()))


def _message(marker: str) -> bytes:
    return f"From: <app@example.org>\r\nSubject: listener interop\r\nX-Marker: {marker}\r\n\r\nbody\r\n".encode()


def test_twenty_authenticated_clients_share_one_postfix_connection(
        run: Any, clean_postfix: PostfixServer, listeners: list[Listener]) -> None:
    postfix = clean_postfix
    _setup(run, postfix)
    listener = start_listener(run)
    listeners.append(listener)
    before = _connections(postfix)
    context = ssl.create_default_context(cafile=str(postfix.ca_pem))
    markers = [uuid.uuid4().hex for _ in range(20)]
    errors: list[BaseException] = []

    def send(marker: str) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as smtp:
                smtp.starttls(context=context)
                smtp.login("app", "app password")
                smtp.sendmail("app@example.org", ["rcpt@example.net"], _message(marker))
        except (OSError, smtplib.SMTPException) as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(marker,)) for marker in markers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    got = postfix.wait_for_messages(20)
    assert sorted(marker for m in got for marker in markers if marker.encode() in m.eml) == sorted(markers)
    assert {m.sasl_username for m in got} == {postfix.sasl_username(postfix.user)}
    assert all(b"(authenticated as app)" in m.eml for m in got)
    deadline = time.monotonic() + 5  # postlogd writes the log asynchronously
    while _connections(postfix) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connections(postfix) == before + 1


def test_msmtp_through_the_listener_to_postfix(
        run: Any, clean_postfix: PostfixServer, listeners: list[Listener]) -> None:
    if shutil.which("msmtp") is None:
        pytest.fail("msmtp is not installed (.ci/install-listener-deps.sh installs it)")
    postfix = clean_postfix
    _setup(run, postfix)
    listener = start_listener(run)
    listeners.append(listener)
    rc = Path(run.home) / "msmtprc"
    rc.write_text(f"account default\nhost 127.0.0.1\nport {listener.port}\ntls on\ntls_starttls on\n"
                  f"tls_trust_file {postfix.ca_pem}\nauth on\nuser app\npassword app password\n"
                  "from app@example.org\n")
    rc.chmod(0o600)
    marker = uuid.uuid4().hex
    proc = subprocess.run(["msmtp", "-C", str(rc), "rcpt@example.net"], input=_message(marker), capture_output=True,
                          timeout=60, env=run.env())
    assert proc.returncode == 0, proc.stderr.decode()
    (got,) = postfix.wait_for_messages(1)
    assert marker.encode() in got.eml and got.recipients == ("rcpt@example.net",)


def test_smuggling_sequences_reach_postfix_as_data_of_one_message(
        run: Any, clean_postfix: PostfixServer, listeners: list[Listener]) -> None:
    postfix = clean_postfix
    _setup(run, postfix, "listen_auth_plaintext enabled")
    listener = start_listener(run)
    listeners.append(listener)
    marker = uuid.uuid4().hex
    smuggled = b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
    body = b"".join(sequence + smuggled for sequence in (b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"))
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as smtp:
        smtp.login("app", "app password")
        smtp.sendmail("app@example.org", ["rcpt@example.net"], _message(marker) + body)
    (got,) = postfix.wait_for_messages(1)
    assert marker.encode() in got.eml and got.sender == "app@example.org"
    assert got.eml.count(b"evil@attacker.example") == 4  # all four stayed in the one message's data
    time.sleep(1)
    assert len(postfix.messages()) == 1


def test_postfix_refusal_is_the_reply_at_the_dot(
        run: Any, clean_postfix: PostfixServer, listeners: list[Listener]) -> None:
    postfix = clean_postfix
    _setup(run, postfix, "listen_auth_plaintext enabled")
    listener = start_listener(run)
    listeners.append(listener)
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as smtp:
        smtp.login("app", "app password")
        with pytest.raises(smtplib.SMTPDataError) as refused:  # a broken domain literal: Postfix refuses it at RCPT
            smtp.sendmail("app@example.org", ["rcpt@[bogus"], b"Subject: refused\r\n\r\nx\r\n")
    assert 500 <= refused.value.smtp_code < 600
