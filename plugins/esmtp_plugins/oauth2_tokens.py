"""Access tokens for an identity: reused from the cache while they have more than a minute left, else refreshed.

A refresh is a ``grant_type=refresh_token`` POST to the token endpoint. A refresh token that the endpoint rotates
replaces the stored one (only when esmtp stores it, not when the configuration names it). ``invalid_grant`` exits 77
and says how to log in again; an unreachable endpoint or a 5xx exits 75 (the queue keeps the message).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from esmtp.errors import AuthenticationError, TemporaryFailure

from .oauth2_settings import OAuth2Settings, configured_secret

if TYPE_CHECKING:
    from esmtp.trace import Trace

    from .oauth2_store import TokenStore

#: A cached token is reused only while more than this many seconds of its lifetime are left.
MIN_LIFETIME = 60
#: A longer lifetime than an endpoint's answer says is never believed (providers give an hour).
MAX_LIFETIME = 86400.0
DEFAULT_TIMEOUT = 30.0


def _timeout(settings: OAuth2Settings) -> float:
    return float(settings.identity.options.get("timeout") or DEFAULT_TIMEOUT)


def cached_token(store: TokenStore) -> str | None:
    """The cached access token when it has more than :data:`MIN_LIFETIME` seconds left."""
    value = store.get("access_token")
    if value is None:
        return None
    expiry, _, token = value.partition(" ")
    try:
        left = float(expiry) - time.time()
    except ValueError:
        return None
    return token if token and left > MIN_LIFETIME else None


def save_tokens(settings: OAuth2Settings, store: TokenStore, answer: dict[str, Any], *, rotate: bool) -> str:
    """Keep what a token endpoint answered: the access token (when it lives long enough), a rotated refresh token."""
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise TemporaryFailure(f"the OAuth2 token endpoint {settings.token_url} answered without an access_token")
    try:
        lifetime = float(answer.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    if math.isnan(lifetime):
        lifetime = 3600.0
    lifetime = min(lifetime, MAX_LIFETIME)  # 1e400 is infinity, and an infinite token would be cached for ever
    if lifetime > MIN_LIFETIME:
        store.set("access_token", f"{time.time() + lifetime:.0f} {token}")
    else:
        store.delete("access_token")  # serves this message only
    refresh = answer.get("refresh_token")
    if rotate and isinstance(refresh, str) and refresh:
        store.set("refresh_token", refresh)
    return token


def endpoint_refused(settings: OAuth2Settings, error: Any) -> AuthenticationError:
    """The error for a 4xx from the token endpoint; ``invalid_grant`` says how to log in again."""
    detail = f"{error.error}" + (f": {error.description}" if error.description else "")
    if error.error == "invalid_grant":
        how = (
            ("the refresh token in the configuration (oauth2_refresh_token or its _command) is no longer valid: "
             f"get a new one, or remove that keyword and log in with: {settings.login_hint}")
            if settings.refresh_token_configured else f"log in again with: {settings.login_hint}"
        )
        return AuthenticationError(
            f"the OAuth2 token endpoint {settings.token_url} refused the refresh token of identity {settings.name} "
            f"(HTTP {error.status}, {detail}); it was revoked or has expired: {how}"
        )
    return AuthenticationError(
        f"the OAuth2 token endpoint {settings.token_url} refused identity {settings.name} (HTTP {error.status}, "
        f"{detail}); check oauth2_client_id and oauth2_client_secret"
    )


def client_fields(settings: OAuth2Settings) -> tuple[dict[str, str], tuple[str, ...]]:
    """The client's form fields (id, secret when set) and the secrets among them."""
    fields = {"client_id": settings.client_id}
    secret = configured_secret(settings, "oauth2_client_secret")
    if secret:
        fields["client_secret"] = secret
    return fields, (secret or "",)


def refresh(settings: OAuth2Settings, store: TokenStore, trace: Trace) -> str:
    """A new access token from the refresh token (configured, else stored)."""
    from .oauth2_http import EndpointError, check_url, post_form

    check_url(settings.token_url, "oauth2_token_url")
    refresh_token = configured_secret(settings, "oauth2_refresh_token")
    stored = refresh_token is None
    if refresh_token is None:
        refresh_token = store.get("refresh_token")
    if not refresh_token:
        raise AuthenticationError(
            f"identity {settings.name} has no OAuth2 refresh token yet: log in once with: {settings.login_hint}"
        )
    fields, secrets = client_fields(settings)
    fields.update(grant_type="refresh_token", refresh_token=refresh_token)
    if settings.scope:
        fields["scope"] = settings.scope
    trace.info(f"refreshing the OAuth2 access token at {settings.token_url}")
    try:
        answer = post_form(settings.token_url, fields, timeout=_timeout(settings),
                           secrets=(refresh_token, *secrets))
    except EndpointError as error:
        raise endpoint_refused(settings, error) from None
    return save_tokens(settings, store, answer, rotate=stored)


def access_token(settings: OAuth2Settings, rejected: str | None, trace: Trace) -> str:
    """The token to send: the cached one, unless it is about to expire or the server just ``rejected`` it."""
    from .oauth2_store import open_store

    store = open_store(settings)
    if rejected is None:
        token = cached_token(store)
        if token is not None:
            trace.info(f"using the cached OAuth2 access token ({store.where})")
            return token
    else:
        trace.info("the server refused the OAuth2 access token; refreshing it once")
        store.delete("access_token")
    return refresh(settings, store, trace)
