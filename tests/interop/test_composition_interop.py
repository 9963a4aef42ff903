"""A subset of the composition matrix (tests/test_composition.py) against the real servers: the direct send, the warm
relay, ``sendmail -bs`` and the queue flush, with the password from ``password_command`` (Postfix with Cyrus SASL)
and with OAuth2 and a refresh token (Postfix with Dovecot SASL, whose oauth2 passdb asks the loopback provider), over
STARTTLS on the submission port (STARTTLS required, then AUTH required).

The paths and sources are the entries of :mod:`composition_support`, so a path or source added there can join this
subset by name. What Postfix recorded is the oracle: the envelope, the bytes after its ``Received:`` header (exactly
those sent), the SASL mechanism and user of each message, each letter exactly once, and the connections in its log.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from composition_support import MODES, PATHS, SOURCES, Case, DeliveryPath, Source, known_failures
from postfix_server import PostfixServer
from support import Runner

pytestmark = pytest.mark.interop

INTEROP_PATHS = ("direct", "warm-relay", "bs", "queue-flush")
INTEROP_SOURCES = ("password_command", "oauth2")
STARTTLS = next(mode for mode in MODES if mode.name == "starttls")

CASES = [
    pytest.param(path, source, id=f"{path.name}-{source.name}", marks=known_failures(path, source))
    for path in PATHS if path.name in INTEROP_PATHS
    for source in SOURCES if source.name in INTEROP_SOURCES
]


def without_received(eml: bytes) -> bytes:
    """A message as Postfix delivered it without the ``Received:`` header it put first (LF line ends)."""
    assert eml.startswith(b"Received: "), eml[:200]
    lines = eml.split(b"\n")
    end = 1
    while lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\n".join(lines[end:])


def connections(server: PostfixServer) -> int:
    return len(re.findall(r"\bconnect from ", server.log_text()))


@pytest.mark.parametrize("path, source", CASES)
def test_composition_interop(path: DeliveryPath, source: Source, run: Runner, request: pytest.FixtureRequest) -> None:
    # Passwords go to the Cyrus SASL Postfix, bearer tokens to the Dovecot one (the session's servers).
    server: Any = request.getfixturevalue("oauth2_postfix" if source.bearer else "postfix")
    server.clear()
    case = Case(f"{path.name}-{source.name}-interop", run, f"{server.host}:{server.ports.submission}",
                STARTTLS.config_lines, server.ca_pem, server.user, server.password,
                getattr(server, "provider", None), server.user)
    case.trust_ca()
    source.configure(case)
    before = connections(server)

    outcome = path.run(case)

    got = server.wait_for_messages(len(outcome.letters))
    assert sorted(without_received(message.eml) for message in got) == sorted(letter.data for letter in outcome.letters)
    for letter in outcome.letters:
        [delivered] = [message for message in got if without_received(message.eml) == letter.data]
        assert (delivered.sender, sorted(delivered.recipients)) == (letter.sender, sorted(letter.recipients))
        assert delivered.sasl_username == server.sasl_username(case.login)
        assert delivered.sasl_method in ({"OAUTHBEARER"} if source.bearer else {"PLAIN", "LOGIN", "CRAM-MD5", "NTLM"})
    deadline = time.monotonic() + 5  # postlogd writes the log asynchronously
    while connections(server) - before < outcome.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections(server) - before == outcome.connections
    outputs = "".join(result.stdout + result.stderr for result in case.results)
    for secret in case.secrets():
        assert secret not in outputs
