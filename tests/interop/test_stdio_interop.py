"""``sendmail -bs`` in front of a real Postfix (STARTTLS required, then AUTH): every transaction of the dialogue
goes over one TLS connection and one login, and Postfix's refusals come back as the replies to the final dot."""

from __future__ import annotations

import re
import smtplib
import time
import uuid
from typing import Any

import pytest
from postfix_server import PostfixServer
from test_auth_interop import configure, trust_test_ca
from test_stdio import Session

pytestmark = pytest.mark.interop


def test_one_tls_connection_and_one_login_for_the_whole_dialogue(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust_test_ca(run, postfix)
    configure(run, postfix, postfix.ports.submission, "starttls required")
    connections = len(re.findall(r"\bconnect from ", postfix.log_text()))
    markers = [uuid.uuid4().hex for _ in range(3)]
    session = Session(run)
    client = session.smtplib()
    for marker in markers:
        message = f"From: <sender@example.org>\r\nSubject: bs interop\r\nX-Marker: {marker}\r\n\r\n.body\r\n"
        client.sendmail("sender@example.org", ["rcpt@example.net"], message.encode())
    with pytest.raises(smtplib.SMTPDataError) as refused:  # a broken domain literal: Postfix refuses it at RCPT
        client.sendmail("sender@example.org", ["rcpt@[bogus"], b"Subject: refused\r\n\r\nx\r\n")
    assert 500 <= refused.value.smtp_code < 600 and b"refused" in refused.value.smtp_error
    client.quit()
    status, stderr, _ = session.end()
    assert status != 0 and status != 75, stderr  # the refusal was permanent

    got = postfix.wait_for_messages(3)
    assert sorted(marker for m in got for marker in markers if marker.encode() in m.eml) == sorted(markers)
    assert {m.sasl_username for m in got} == {postfix.sasl_username(postfix.user)}
    assert all(b"\n.body\n" in m.eml for m in got)
    deadline = time.monotonic() + 5  # postlogd writes the log asynchronously
    while len(re.findall(r"\bconnect from ", postfix.log_text())) <= connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(re.findall(r"\bconnect from ", postfix.log_text())) == connections + 1
