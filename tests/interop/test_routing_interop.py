"""Routing against the real Postfix (issue 23): ``source_ip`` shows in the ``Received:`` line Postfix writes."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from postfix_server import PostfixServer

pytestmark = pytest.mark.interop


def test_source_ip_shows_in_postfixs_received_line(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    run.write_config(f"hostname {postfix.host}:{postfix.ports.smtp}\nsource_ip 127.0.0.2\n")
    marker = uuid.uuid4().hex
    message = f"From: <sender@example.org>\nSubject: source_ip\nX-Marker: {marker}\n\nbody\n".encode()
    result = run("-f", "sender@example.org", "rcpt@example.net", input=message)
    assert result.returncode == 0, result.stderr
    [delivered] = postfix.wait_for_messages(1)
    assert delivered.client_address == "127.0.0.2"
    received = delivered.eml.split(b"\n\n", 1)[0].decode()
    assert re.search(r"^Received: from \S+ \(\S+ \[127\.0\.0\.2\]\)", received, re.MULTILINE), received
