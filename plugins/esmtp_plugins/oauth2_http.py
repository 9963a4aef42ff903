"""Form-encoded POSTs to OAuth2 endpoints and their JSON answers (stdlib ``urllib``), errors in esmtp's terms.

Imported only when a token is fetched: a send with a plain password never loads ``urllib``, ``http`` or ``json``
through this module. Messages never quote what was sent (it holds secrets), and any secret that an endpoint echoes
back is masked.
"""

from __future__ import annotations

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


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def post_form(url: str, fields: dict[str, str], *, timeout: float, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """POST ``fields`` form-encoded to ``url`` and return the JSON object answered.

    Raises EndpointError for a 4xx with an OAuth2 error body, TemporaryFailure (75) for a network failure, a time-out,
    a 5xx or an answer that is not JSON. ``secrets`` (the values sent) are masked in every message.
    """
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
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(1 << 20)
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(1 << 20), error.code
        error.close()
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise TemporaryFailure(f"cannot reach the OAuth2 endpoint {url}: {_mask(str(reason), secrets)}") from None
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if status >= 500 or not isinstance(answer, dict):
        what = f"HTTP {status}" + ("" if isinstance(answer, dict) else ", not a JSON object")
        raise TemporaryFailure(f"the OAuth2 endpoint {url} answered {what}; try again later") from None
    if status >= 400 or ("error" in answer and status != 200):
        raise EndpointError(url, status, _mask(str(answer.get("error", f"HTTP {status}")), secrets),
                            _mask(str(answer.get("error_description", "")), secrets))
    return answer
