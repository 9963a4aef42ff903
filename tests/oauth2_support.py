"""A real OAuth2 provider on loopback for the tests, and an aiosmtpd server that verifies bearer tokens with it.

:class:`OAuth2Provider` (stdlib ``http.server``, one thread) serves:

- ``POST /token``: ``grant_type=refresh_token`` (refresh tokens in :attr:`OAuth2Provider.refresh`; optional rotation),
  ``authorization_code`` (PKCE S256 checked against the authorisation request) and the device-code grant;
- ``POST /introspect`` (RFC 7662): ``token=`` → ``{"active": ..., "username": ...}``, the verifier that both the
  aiosmtpd server here and Dovecot's ``oauth2`` passdb (tests/interop) ask;
- ``GET /authorize``: what the browser opens; it redirects to the client's loopback ``redirect_uri`` with a code;
- ``POST /device``: starts a device-code login that completes after one ``authorization_pending``.

Every request is recorded (path and form fields), so a test can count token-endpoint hits.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from aiosmtpd.smtp import AuthResult
from support import Sink, SmtpServer, _Controller, _Handler, _Server

CLIENT_ID = "esmtp-test-client"
CLIENT_SECRET = "client-Secret-4711"
USER = "alice@example.org"


@dataclass
class Grant:
    """A refresh token's owner and the lifetime of the access tokens it yields."""

    username: str
    expires_in: int = 3600


@dataclass
class OAuth2Provider:
    """The provider's state; tests add tokens, revoke them, and read :attr:`requests`."""

    host: str = "127.0.0.1"
    port: int = 0
    #: access token → (username, unix expiry)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh: dict[str, Grant] = field(default_factory=dict)
    rotate: bool = False
    #: Answer 503 to everything (an endpoint that is down behind a proxy).
    unavailable: bool = False
    #: authorisation code → (code_challenge, redirect_uri, username)
    codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    #: A hostile provider: called first for each POST with the request handler, the path and the raw body; it
    #: answers itself (True) or leaves the request to :meth:`handle` (False).
    override: Callable[[BaseHTTPRequestHandler, str, bytes], bool] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for seen, _ in self.requests if seen == path)

    def issue(self, username: str, expires_in: int = 3600) -> str:
        token = "at-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (username, time.time() + expires_in)
        return token

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()

    def active(self, token: str) -> str | None:
        with self.lock:
            found = self.tokens.get(token)
        return found[0] if found is not None and found[1] > time.time() else None

    def configuration(self, refresh_token: str | None = None) -> str:
        """esmtprc lines for an identity of this provider (explicit keywords)."""
        lines = [
            f"oauth2_token_url {self.url}/token",
            f"oauth2_authorize_url {self.url}/authorize",
            f"oauth2_device_url {self.url}/device",
            f"oauth2_client_id {CLIENT_ID}",
            f"oauth2_client_secret {CLIENT_SECRET}",
            "oauth2_scope mail",
        ]
        if refresh_token is not None:
            lines.append(f"oauth2_refresh_token {refresh_token}")
        return "\n".join(lines) + "\n"

    # ---- the endpoints ----------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, fields: dict[str, str]) -> tuple[int, dict[str, Any], str | None]:
        """(status, JSON answer, Location header)."""
        with self.lock:
            self.requests.append((path, dict(fields)))
        if self.unavailable:
            return 503, {"error": "temporarily_unavailable"}, None
        if path == "/introspect":
            username = self.active(fields.get("token", ""))
            return 200, ({"active": True, "username": username} if username else {"active": False}), None
        if path == "/authorize":
            return self._authorize(fields)
        if path == "/device":
            code = "dc-" + secrets.token_urlsafe(8)
            self.devices[code] = 0
            return 200, {"device_code": code, "user_code": "WDJB-MJHT", "verification_uri": f"{self.url}/activate",
                         "expires_in": 60, "interval": 0}, None
        if path == "/token":
            if fields.get("client_id") != CLIENT_ID or fields.get("client_secret") != CLIENT_SECRET:
                return 401, {"error": "invalid_client"}, None
            return self._token(fields)
        return 404, {"error": "not_found"}, None

    def _authorize(self, fields: dict[str, str]) -> tuple[int, dict[str, Any], str | None]:
        if fields.get("code_challenge_method") != "S256" or fields.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_request"}, None
        code = "code-" + secrets.token_urlsafe(12)
        redirect = fields["redirect_uri"]
        self.codes[code] = (fields["code_challenge"], redirect, fields.get("login_hint") or USER)
        query = urllib.parse.urlencode({"code": code, "state": fields["state"]})
        return 302, {}, f"{redirect}?{query}"

    def _grant(self, username: str, expires_in: int, refresh_token: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = {"access_token": self.issue(username, expires_in), "token_type": "Bearer",
                                  "expires_in": expires_in}
        if refresh_token is not None:
            answer["refresh_token"] = refresh_token
        return answer

    def _new_refresh(self, username: str, expires_in: int = 3600) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        self.refresh[token] = Grant(username, expires_in)
        return token

    def _token(self, fields: dict[str, str]) -> tuple[int, dict[str, Any], str | None]:
        grant_type = fields.get("grant_type")
        if grant_type == "refresh_token":
            grant = self.refresh.get(fields.get("refresh_token", ""))
            if grant is None:
                return 400, {"error": "invalid_grant", "error_description": "token revoked"}, None
            rotated = None
            if self.rotate:
                del self.refresh[fields["refresh_token"]]
                rotated = self._new_refresh(grant.username, grant.expires_in)
            return 200, self._grant(grant.username, grant.expires_in, rotated), None
        if grant_type == "authorization_code":
            found = self.codes.pop(fields.get("code", ""), None)
            verifier = fields.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if found is None or found[0] != digest or found[1] != fields.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "bad code or verifier"}, None
            return 200, self._grant(found[2], 3600, self._new_refresh(found[2])), None
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            code = fields.get("device_code", "")
            if code not in self.devices:
                return 400, {"error": "expired_token"}, None
            self.devices[code] += 1
            if self.devices[code] < 2:
                return 400, {"error": "authorization_pending"}, None
            return 200, self._grant(USER, 3600, self._new_refresh(USER)), None
        return 400, {"error": "unsupported_grant_type"}, None

    # ---- the server -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str, fields: dict[str, str]) -> None:
                status, answer, location = provider.handle(method, urllib.parse.urlsplit(self.path).path, fields)
                body = json.dumps(answer).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if provider.override is not None and provider.override(self, urllib.parse.urlsplit(self.path).path,
                                                                       raw):
                    return
                self._answer("POST", dict(urllib.parse.parse_qsl(raw.decode())))

            def do_GET(self) -> None:
                self._answer("GET", dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def respond(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Answer a request of an :attr:`OAuth2Provider.override` (JSON unless ``headers`` say otherwise)."""
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def oauth2_provider() -> Iterator[OAuth2Provider]:
    provider = OAuth2Provider()
    provider.start()
    yield provider
    provider.stop()


# ---- an SMTP server that checks bearer tokens ----------------------------------------------------------------------


def introspect(provider: OAuth2Provider, token: str) -> str | None:
    """Ask the provider's introspection endpoint over HTTP, as a real server does."""
    body = urllib.parse.urlencode({"token": token}).encode()
    with urllib.request.urlopen(f"{provider.url}/introspect", data=body, timeout=10) as response:
        answer = json.loads(response.read())
    return answer.get("username") if answer.get("active") else None


class BearerHandler(_Handler):
    """aiosmtpd handler with XOAUTH2 and OAUTHBEARER checked against the provider."""

    def __init__(self, sink: Sink, provider: OAuth2Provider, drop_after_failure: bool = False) -> None:
        super().__init__(sink)
        self.provider = provider
        self.drop_after_failure = drop_after_failure
        #: (mechanism, username, accepted) per AUTH attempt
        self.attempts: list[tuple[str, str, bool]] = []

    async def _check(self, server: AiosmtpdSMTP, mechanism: str, args: list[str], user: str, token: str,
                     error_answer: bytes) -> AuthResult:
        loop = asyncio.get_running_loop()
        owner = await loop.run_in_executor(None, introspect, self.provider, token)
        accepted = owner is not None and owner == user
        self.attempts.append((mechanism, user, accepted))
        if accepted:
            self.sink.auths.append((mechanism, user))
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.example.org/"})
        answer = await server.challenge_auth(error)
        if answer != error_answer and answer != b"":
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad answer to the error challenge")
        if self.drop_after_failure:
            await server.push("535 5.7.8 token refused; goodbye")
            assert server.transport is not None
            server.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    @staticmethod
    def _initial(args: list[str]) -> bytes:
        return base64.b64decode(args[1]) if len(args) > 1 else b""

    async def auth_XOAUTH2(self, server: AiosmtpdSMTP, args: list[str]) -> AuthResult:
        fields = dict(part.split("=", 1) for part in self._initial(args).decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        return await self._check(server, "XOAUTH2", args, fields.get("user", ""), token, b"")

    async def auth_OAUTHBEARER(self, server: AiosmtpdSMTP, args: list[str]) -> AuthResult:
        gs2, _, rest = self._initial(args).decode().partition("\x01")
        user = next((part[2:] for part in gs2.split(",") if part.startswith("a=")), "")
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        return await self._check(server, "OAUTHBEARER", args, user, token, b"\x01")


class _BearerController(_Controller):
    def __init__(self, sink: Sink, handler: BearerHandler) -> None:
        super().__init__(sink, users=None)
        self.handler = handler

    def factory(self) -> AiosmtpdSMTP:
        server = _Server(self.handler, enable_SMTPUTF8=True, auth_require_tls=False,
                         auth_exclude_mechanism=["PLAIN", "LOGIN"])
        server.sink = self.sink
        return server


@dataclass
class BearerServer(SmtpServer):
    handler: BearerHandler | None = None


def start_bearer_server(provider: OAuth2Provider, *, drop_after_failure: bool = False) -> BearerServer:
    sink = Sink()
    handler = BearerHandler(sink, provider, drop_after_failure)
    controller = _BearerController(sink, handler)
    controller.start()
    return BearerServer("127.0.0.1", controller.port, sink, controller, handler)
