"""A hostile OAuth2 provider: token and device endpoints that echo secrets, drip, redirect, stall the login or answer
absurd numbers. The installed commands against the loopback provider of :mod:`oauth2_support`, scripted through its
``override``; what a user sees (exit code, stderr, the delivery log, the time it took) is checked."""

from __future__ import annotations

import base64
import json
import re
import socket
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler

from oauth2_support import USER, BearerServer, OAuth2Provider, oauth2_provider, respond
from support import Runner, entry_point
from test_oauth2 import bearer_server, configure, env, grant, send, state_files

__all__ = ["bearer_server", "oauth2_provider"]

#: Secrets whose form-encoded, percent-encoded and base64 spellings all differ from the raw one.
CLIENT_SECRET = "cs/Se+cret=4711~x"
REFRESH_TOKEN = "rt/Ab+cd=ef:gh~ij"


def spellings(secret: str) -> set[str]:
    """Every way an endpoint could echo ``secret`` as it was sent, or decoded, or re-encoded."""
    quote, quote_plus = urllib.parse.quote, urllib.parse.quote_plus
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), quote_plus(secret, safe="/")}
    forms |= {re.sub("%[0-9A-F]{2}", lambda match: match.group().lower(), form) for form in forms}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(secret.encode()).decode()
        forms |= {encoded, encoded.rstrip("=")}
    return forms


def test_secrets_echoed_by_the_token_endpoint_are_masked_in_every_encoding(
        run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer) -> None:
    """Once only the raw strings were masked: an endpoint echoing the request body put ``%2F``/``%2B`` spellings of
    the client secret and the refresh token on stderr and in the delivery log."""
    every = sorted(spellings(CLIENT_SECRET) | spellings(REFRESH_TOKEN))

    def echo(handler: BaseHTTPRequestHandler, path: str, raw: bytes) -> bool:
        text = raw.decode()
        answer = {"error": f"invalid_request {text}", "error_description": f"you sent {text}; " + " ".join(every)}
        respond(handler, 400, json.dumps(answer).encode())
        return True

    oauth2_provider.override = echo
    log = run.home / "mail.log"
    run.write_config(
        f"hostname {bearer_server.hostport}\nusername {USER}\nauth_plaintext enabled\nlogfile {log}\n"
        f"oauth2_token_url {oauth2_provider.url}/token\noauth2_client_id client\n"
        f"oauth2_client_secret \"{CLIENT_SECRET}\"\noauth2_refresh_token \"{REFRESH_TOKEN}\"\n"
    )
    result = send(run, "-v")
    assert result.returncode == 77, result.stderr
    shown = result.stderr + log.read_text()
    assert "you sent" in result.stderr and "****" in result.stderr and "errormsg=" in shown
    for form in every:
        assert form not in shown, form


def test_a_dripping_token_endpoint_is_bounded_by_the_timeout(run: Runner, oauth2_provider: OAuth2Provider,
                                                             bearer_server: BearerServer) -> None:
    """One byte every 0.3 s: the identity's ``timeout`` bounds the whole request (once it bounded each read, and a
    send with ``timeout 2`` took half a minute)."""
    def drip(handler: BaseHTTPRequestHandler, path: str, raw: bytes) -> bool:
        body = json.dumps({"access_token": "at-x", "expires_in": 3600, "padding": "x" * 60}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return True
            time.sleep(0.3)
        return True

    oauth2_provider.override = drip
    configure(run, bearer_server, oauth2_provider, "timeout 2\n", grant(oauth2_provider))
    started = time.monotonic()
    result = send(run)
    assert time.monotonic() - started < 10
    assert result.returncode == 75, result.stderr
    assert "did not answer within 2 s" in result.stderr
    assert bearer_server.sink.messages == []


def test_a_redirect_from_the_token_endpoint_is_not_followed(run: Runner, oauth2_provider: OAuth2Provider,
                                                            bearer_server: BearerServer) -> None:
    """A 302 to another origin (``http://[::1]``...) would get the refresh token and the client secret re-posted,
    and its token used."""
    elsewhere = OAuth2Provider(host="127.0.0.1")
    elsewhere.start()
    try:
        def moved(handler: BaseHTTPRequestHandler, path: str, raw: bytes) -> bool:
            respond(handler, 302, b"{}", {"Location": f"{elsewhere.url}/token"})
            return True

        oauth2_provider.override = moved
        configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
        result = send(run)
        assert result.returncode == 78, result.stderr
        assert "redirect" in result.stderr and "not followed" in result.stderr
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_an_infinite_expires_in_is_clamped(run: Runner, oauth2_provider: OAuth2Provider,
                                           bearer_server: BearerServer) -> None:
    def forever(handler: BaseHTTPRequestHandler, path: str, raw: bytes) -> bool:
        if path != "/token":
            return False
        status, answer, _ = oauth2_provider.handle("POST", path, dict(urllib.parse.parse_qsl(raw.decode())))
        respond(handler, status, json.dumps(answer).replace('"expires_in": 3600', '"expires_in": 1e400').encode())
        return True

    oauth2_provider.override = forever
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    result = send(run)
    assert result.returncode == 0, result.stderr
    [state] = state_files(run)
    expiry = json.loads(state.read_text())["access_token"].split(" ", 1)[0]
    assert expiry.isdigit() and int(expiry) <= time.time() + 86400 + 60, expiry


def test_a_state_directory_open_to_others_is_refused_when_read(run: Runner, oauth2_provider: OAuth2Provider,
                                                               bearer_server: BearerServer) -> None:
    """Once checked only when a token was written: a cached token in a 0777 directory was used."""
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    assert send(run).returncode == 0
    [state] = state_files(run)
    state.parent.chmod(0o777)
    result = send(run)
    assert result.returncode == 78, result.stderr
    assert f"chmod 700 {state.parent}" in result.stderr
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o777  # esmtp never changes it by itself
    assert len(bearer_server.sink.messages) == 1


# ---- esmtp --oauth2-login ------------------------------------------------------------------------------------------


def test_an_idle_connection_to_the_login_port_does_not_stall_the_login(
        run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer) -> None:
    """Any local user can connect to the loopback redirect port and say nothing: the request handler has a time-out,
    so the browser's request is still served (once the login waited for the idle connection forever)."""
    configure(run, bearer_server, oauth2_provider)
    proc = subprocess.Popen([entry_point("esmtp"), "--oauth2-login"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(run, ESMTP_OAUTH2_LOGIN_TIMEOUT="40"), text=True)
    assert proc.stdout is not None
    url = ""
    try:
        for line in proc.stdout:
            if line.startswith(oauth2_provider.url + "/authorize?"):
                url = line.strip()
            if line.startswith("Waiting for the browser to come back to http://127.0.0.1:"):
                port = int(line.split("127.0.0.1:", 1)[1].split("/", 1)[0])
                break
        with socket.create_connection(("127.0.0.1", port)):  # connected, silent
            time.sleep(0.5)  # the login server is in the idle connection's request handler now
            with urllib.request.urlopen(url, timeout=30) as page:  # the browser
                assert b"login done" in page.read()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "Logged in" in out


def test_a_device_endpoint_asking_for_a_huge_interval_keeps_the_overall_deadline(
        run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer) -> None:
    def huge(handler: BaseHTTPRequestHandler, path: str, raw: bytes) -> bool:
        if path != "/device":
            return False
        respond(handler, 200, json.dumps({"device_code": "dc", "user_code": "CODE", "expires_in": 600,
                                          "verification_uri": f"{oauth2_provider.url}/activate",
                                          "interval": 100000}).encode())
        return True

    oauth2_provider.override = huge
    configure(run, bearer_server, oauth2_provider)
    started = time.monotonic()
    result = run("--oauth2-login", "--device", program="esmtp", env=env(run, ESMTP_OAUTH2_LOGIN_TIMEOUT="2"),
                 timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 75, result.stderr
    assert "run the command again" in result.stderr


