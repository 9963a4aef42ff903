"""Form-encoded POSTs to OAuth2 endpoints and their JSON answers (stdlib ``urllib``), errors in esmtp's terms.

Imported only when a token is fetched: a send with a plain password never loads ``urllib``, ``http`` or ``json``
through this module. Messages never quote what was sent (it holds secrets), and any secret that an endpoint echoes
back is masked, in any encoding. A request has one deadline, and a redirect is never followed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from esmtp.errors import ConfigError, TemporaryFailure

USER_AGENT = "esmtp-oauth2"


@dataclass
class EndpointError(Exception):
    """The endpoint answered 4xx with an OAuth2 error (RFC 6749 5.2): ``error`` such as ``invalid_grant``."""

    url: str
    status: int
    error: str
    description: str


def check_url(url: str, keyword: str) -> None:
    """HTTPS only, except to a loopback address (tests, local proxies): tokens must not cross the net in clear."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    raise ConfigError(f"{keyword} must be an https:// URL (or http:// on loopback), not {url!r}")


def spellings(secret: str) -> set[str]:
    """``secret`` as it was sent (form-encoded), and as an endpoint could echo it: raw, percent-encoded with either
    case of hex digits, base64 (standard or URL-safe, padded or not)."""
    import base64
    import re
    from urllib.parse import quote, quote_plus

    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), quote_plus(secret, safe="/")}
    forms |= {re.sub("%[0-9A-F]{2}", lambda match: match.group().lower(), form) for form in forms}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(secret.encode("utf-8", "surrogateescape")).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    return forms


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (from an endpoint) with every spelling of every secret sent replaced by ``****``, longest first."""
    forms = sorted({form for secret in secrets if secret for form in spellings(secret)}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, "****")
    return text


class _Deadline:
    """Shuts the request's sockets down when the whole request has taken ``timeout`` seconds: urllib's own timeout
    bounds each read, and an endpoint that sends a byte at a time would hold a send for ever."""

    def __init__(self, timeout: float) -> None:
        import threading

        self.sockets: list[Any] = []
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        import socket

        with self._lock:
            self.expired = True
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def watch(self, sock: Any) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.expired:
                self._expire()

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _opener(deadline: _Deadline) -> Any:
    """urllib's opener, with the deadline watching each connection and no redirect followed (a redirect would post
    the secrets again, and the token it leads to would be used)."""
    import http.client
    import urllib.request

    class Http(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class Https(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(Https, req, context=self._context)  # type: ignore[attr-defined]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None  # the 3xx is then an HTTPError, answered below

    return urllib.request.build_opener(HttpHandler, HttpsHandler, NoRedirect)


def post_form(url: str, fields: dict[str, str], *, timeout: float, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """POST ``fields`` form-encoded to ``url`` and return the JSON object answered, within ``timeout`` seconds for
    the whole request.

    Raises EndpointError for a 4xx with an OAuth2 error body, TemporaryFailure (75) for a network failure, a time-out,
    a 5xx or an answer that is not JSON, ConfigError (78) for a redirect, which is never followed. ``secrets`` (the
    values sent) are masked in every message, in every spelling (:func:`spellings`).
    """
    import http.client
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode(fields).encode("ascii")
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                 "User-Agent": USER_AGENT},
    )
    location = None
    with _Deadline(timeout) as deadline:
        try:
            with _opener(deadline).open(request, timeout=timeout) as response:
                raw = response.read(1 << 20)
                status = response.status
        except urllib.error.HTTPError as error:
            location = error.headers.get("Location") if 300 <= error.code < 400 else None
            try:
                raw, status = error.read(1 << 20), error.code
            except OSError:
                raw, status = b"", error.code
            error.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            if deadline.expired:
                raise TemporaryFailure(f"the OAuth2 endpoint {url} did not answer within {timeout:g} s") from None
            reason = getattr(error, "reason", error)
            raise TemporaryFailure(f"cannot reach the OAuth2 endpoint {url}: {mask(str(reason), secrets)}") from None
    if deadline.expired:
        raise TemporaryFailure(f"the OAuth2 endpoint {url} did not answer within {timeout:g} s")
    if 300 <= status < 400:
        raise ConfigError(f"the OAuth2 endpoint {url} answered HTTP {status}, a redirect to "
                          f"{mask(str(location), secrets)!r}, which is not followed: configure the final URL")
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if status >= 500 or not isinstance(answer, dict):
        what = f"HTTP {status}" + ("" if isinstance(answer, dict) else ", not a JSON object")
        raise TemporaryFailure(f"the OAuth2 endpoint {url} answered {what}; try again later") from None
    if status >= 400 or ("error" in answer and status != 200):
        raise EndpointError(url, status, mask(str(answer.get("error", f"HTTP {status}")), secrets),
                            mask(str(answer.get("error_description", "")), secrets))
    return answer

