"""``esmtp --oauth2-login``: get a refresh token once, by the authorisation-code flow with PKCE (RFC 7636) and a
loopback redirect (RFC 8252: ``http://127.0.0.1:<ephemeral port>/``), or by the device-code flow (RFC 8628,
``--device``) on a machine without a browser. The refresh token goes to the keyring when one is available, else to
the private state file, and the command says where.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from esmtp.errors import AuthenticationError, ConfigError, TemporaryFailure

from .oauth2_settings import OAuth2Settings
from .oauth2_store import TokenStore, open_store
from .oauth2_tokens import client_fields, save_tokens

#: How long to wait for the browser to come back, or for the user to enter the device code.
LOGIN_TIMEOUT = float(os.environ.get("ESMTP_OAUTH2_LOGIN_TIMEOUT", "300"))
#: How long one connection to the loopback redirect port may take to send its request.
REQUEST_TIMEOUT = 5.0
#: The most a device endpoint may make us wait between two polls (RFC 8628 3.5 suggests 5 s).
MAX_INTERVAL = 60.0


def _seconds(value: Any, default: float, most: float) -> float:
    """A number of seconds from an endpoint's answer, within [0, ``most``] (``default`` when it is no number)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(seconds) else min(max(seconds, 0.0), most)


def _say(text: str) -> None:
    print(text, flush=True)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _open_browser(url: str) -> bool:
    """Open ``url`` in a browser when this session has one (a desktop, or macOS); False when not tried."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        return False
    import webbrowser

    try:
        return webbrowser.open(url)
    except (webbrowser.Error, OSError):
        return False


def _wait_for_redirect(state: str) -> tuple[str, Any]:
    """Listen on 127.0.0.1 (ephemeral port); returns the redirect URI and a function that waits for the code."""
    import http.server
    import urllib.parse

    result: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if query.get("state") != state:
                self.send_error(400, "unexpected request (state does not match)")
                return
            result.update(query)
            body = ("esmtp: login " + ("failed: " + query["error"] if "error" in query else "done") +
                    ". You can close this window.\n").encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the query holds the code: never logged

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 1.0
    redirect_uri = f"http://127.0.0.1:{server.server_port}/"

    def wait() -> dict[str, str]:
        deadline = time.monotonic() + LOGIN_TIMEOUT
        try:
            while not result and time.monotonic() < deadline:
                # Any local user can connect and say nothing: each connection gets a few seconds, never the login.
                Handler.timeout = max(0.1, min(REQUEST_TIMEOUT, deadline - time.monotonic()))
                server.handle_request()
        finally:
            server.server_close()
        if not result:
            raise TemporaryFailure(f"no answer from the browser within {LOGIN_TIMEOUT:g} s; run the command again")
        return result

    return redirect_uri, wait


def browser_login(settings: OAuth2Settings) -> dict[str, Any]:
    """The authorisation-code flow; returns the token endpoint's answer."""
    import secrets
    import urllib.parse

    from .oauth2_http import EndpointError, check_url, post_form

    if not settings.authorize_url:
        raise ConfigError(f"identity {settings.name} has no oauth2_authorize_url (or oauth2_provider)")
    check_url(settings.authorize_url, "oauth2_authorize_url")
    check_url(settings.token_url, "oauth2_token_url")
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    redirect_uri, wait = _wait_for_redirect(state)
    query = {
        "response_type": "code", "client_id": settings.client_id, "redirect_uri": redirect_uri,
        "scope": settings.scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        "login_hint": settings.identity.username or "",
    }
    url = settings.authorize_url + ("&" if "?" in settings.authorize_url else "?") + urllib.parse.urlencode(query)
    if settings.authorize_extra:
        url += "&" + settings.authorize_extra
    _say(f"Open this URL in a browser and log in as {settings.identity.username}:\n\n{url}\n")
    if _open_browser(url):
        _say("(A browser window was opened.)")
    _say(f"Waiting for the browser to come back to {redirect_uri} ...")
    answer = wait()
    if "error" in answer:
        raise AuthenticationError(
            f"the provider refused the login: {answer['error']}" +
            (f": {answer['error_description']}" if answer.get("error_description") else "")
        )
    if not answer.get("code"):
        raise AuthenticationError("the browser came back without an authorisation code")
    fields, secrets_sent = client_fields(settings)
    fields.update(grant_type="authorization_code", code=answer["code"], redirect_uri=redirect_uri,
                  code_verifier=verifier)
    try:
        return post_form(settings.token_url, fields, timeout=30.0, secrets=(answer["code"], verifier, *secrets_sent))
    except EndpointError as error:
        raise AuthenticationError(
            f"the token endpoint {settings.token_url} refused the authorisation code (HTTP {error.status}, "
            f"{error.error}{': ' + error.description if error.description else ''})"
        ) from None


def device_login(settings: OAuth2Settings) -> dict[str, Any]:
    """The device-code flow; returns the token endpoint's answer."""
    from .oauth2_http import EndpointError, check_url, mask, post_form

    if not settings.device_url:
        raise ConfigError(
            f"identity {settings.name} has no oauth2_device_url: this provider does not offer the device-code flow "
            "for mail (Microsoft does); run esmtp --oauth2-login without --device on a machine with a browser"
        )
    check_url(settings.device_url, "oauth2_device_url")
    check_url(settings.token_url, "oauth2_token_url")
    fields, secrets_sent = client_fields(settings)
    try:
        start = post_form(settings.device_url, {**fields, "scope": settings.scope}, timeout=30.0,
                          secrets=secrets_sent)
    except EndpointError as error:
        raise AuthenticationError(f"the device endpoint {settings.device_url} refused: {error.error}") from None
    device_code = str(start.get("device_code", ""))
    uri = start.get("verification_uri_complete") or start.get("verification_uri") or start.get("verification_url")
    if not device_code or not uri:
        raise TemporaryFailure(f"the device endpoint {settings.device_url} answered without a device_code")
    _say(mask(f"On any device, open {uri} and enter the code {start.get('user_code', '')} "
              f"(log in as {settings.identity.username}).", secrets_sent))
    # One deadline for the whole login, whatever the endpoint asks for: an interval of days is clamped.
    interval = _seconds(start.get("interval"), 5.0, MAX_INTERVAL)
    deadline = time.monotonic() + _seconds(start.get("expires_in"), LOGIN_TIMEOUT, LOGIN_TIMEOUT)
    fields.update(grant_type="urn:ietf:params:oauth:grant-type:device_code", device_code=device_code)
    while time.monotonic() + interval < deadline:
        time.sleep(interval)
        try:
            return post_form(settings.token_url, fields, timeout=max(0.1, min(30.0, deadline - time.monotonic())),
                             secrets=(device_code, *secrets_sent))
        except EndpointError as error:
            if error.error == "authorization_pending":
                continue
            if error.error == "slow_down":
                interval = min(interval + 5, MAX_INTERVAL)
                continue
            raise AuthenticationError(f"the device login failed: {error.error}"
                                      f"{': ' + error.description if error.description else ''}") from None
    raise TemporaryFailure("the device code expired before the login was completed; run the command again")


def login(settings: OAuth2Settings, *, device: bool) -> int:
    """Run the flow, store the refresh token (and the first access token), say where."""
    answer = device_login(settings) if device else browser_login(settings)
    if not isinstance(answer.get("refresh_token"), str) or not answer["refresh_token"]:
        raise AuthenticationError(
            "the provider sent no refresh token (for Microsoft add the offline_access scope; Google sends one only "
            "with access_type=offline, which oauth2_provider google asks for)"
        )
    store: TokenStore = open_store(settings)
    save_tokens(settings, store, answer, rotate=True)
    _say(f"Logged in: the refresh token for identity {settings.name} ({settings.identity.username}) is stored in "
         f"{store.where}.")
    if settings.refresh_token_configured:
        _say("Note: the configuration sets oauth2_refresh_token or oauth2_refresh_token_command, which take "
             "precedence over the stored token.")
    return 0
