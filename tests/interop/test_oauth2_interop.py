"""XOAUTH2 and OAUTHBEARER against a real server: Postfix with Dovecot SASL, whose oauth2 passdb checks every token
with the loopback provider's introspection endpoint. What Postfix recorded (``sasl_method``, ``sasl_username``) and
delivered is the oracle."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from dovecot_server import DovecotPostfixServer
from oauth2_support import Grant
from test_auth_interop import send, trust_test_ca

pytestmark = pytest.mark.interop

MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


@pytest.fixture
def server(oauth2_postfix: DovecotPostfixServer) -> DovecotPostfixServer:
    oauth2_postfix.clear()
    return oauth2_postfix


def configure(run: Any, server: DovecotPostfixServer, mechanism: str, *lines: str) -> None:
    trust_test_ca(run, server)
    run.write_config("\n".join([
        f"hostname {server.host}:{server.ports.submission}", "starttls required", f"username {server.user}",
        f"auth_mechanisms {mechanism}", *lines,
    ]) + "\n")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_refreshed_token_delivers(run: Any, server: DovecotPostfixServer, mechanism: str) -> None:
    provider = server.provider
    refresh_token = "rt-" + secrets.token_urlsafe(12)
    provider.refresh[refresh_token] = Grant(server.user)
    configure(run, server, mechanism, provider.configuration(refresh_token))
    result, marker = send(run)
    assert result.returncode == 0, result.stderr
    [got] = server.wait_for_messages(1)
    assert (got.sasl_method, got.sasl_username) == (mechanism, server.user)
    assert f"X-Marker: {marker}".encode() in got.eml


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_bad_token_fails_cleanly(run: Any, server: DovecotPostfixServer, mechanism: str) -> None:
    configure(run, server, mechanism, 'password_command "echo not-a-valid-token"')
    result, _ = send(run)
    assert result.returncode == 77, result.stderr
    assert "535" in result.stderr and "the server says: status " in result.stderr
    assert "not-a-valid-token" not in result.stderr
    server.wait_for_log(rf"SASL {mechanism} authentication failed")
    assert server.queue_is_idle()
    assert server.messages() == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_token_of_another_user_is_refused_after_one_refresh(run: Any, server: DovecotPostfixServer,
                                                            mechanism: str) -> None:
    provider = server.provider
    refresh_token = "rt-" + secrets.token_urlsafe(12)
    provider.refresh[refresh_token] = Grant("someone-else")
    configure(run, server, mechanism, provider.configuration(refresh_token))
    before = provider.hits("/token")
    result, _ = send(run)
    assert result.returncode == 77, result.stderr
    assert provider.hits("/token") - before == 2
    assert server.messages() == []
