"""OAuth2 for SMTP AUTH: access tokens for XOAUTH2/OAUTHBEARER, refreshed and cached by esmtp itself, and
``esmtp --oauth2-login [--device] [--identity NAME]`` to get the refresh token once.

An identity with any ``oauth2_*`` keyword is an OAuth2 identity: its secret is an access token, and only bearer
mechanisms are chosen for it. The token, HTTP and login code lives in ``oauth2_*`` helper modules imported only when
a token is needed, so this module costs nothing on other runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.password_sources import PasswordSource
from esmtp.types import KeywordSpec

from .oauth2_settings import KEYWORDS, PROVIDERS, SECRET_KEYWORDS

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.options import Options
    from esmtp.trace import Trace
    from esmtp.types import SaslMechanism


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    """The ``oauth2_*`` keywords (per identity)."""
    return [
        KeywordSpec(name, help=text, secret=name in SECRET_KEYWORDS,
                    choices=tuple(PROVIDERS) if name == "oauth2_provider" else None)
        for name, text in KEYWORDS.items()
    ]


@hookimpl(tryfirst=True)
def esmtp_secret(identity: Identity, mechanism: SaslMechanism, rejected: str | None, trace: Trace) -> str | None:
    """The access token of an OAuth2 identity for a bearer mechanism: cached, or refreshed (again if ``rejected``)."""
    if not mechanism.bearer or not _is_oauth2(identity):
        return None
    from .oauth2_settings import resolve
    from .oauth2_tokens import access_token

    return access_token(resolve(identity), rejected, trace)


@hookimpl
def esmtp_command(options: Options, config: Config) -> int | None:
    """``--oauth2-login``: log the identity in and store its refresh token."""
    if options.mode != "oauth2-login":
        return None
    from esmtp.errors import ConfigError

    from .credentials import find_identity, identity_name
    from .oauth2_login import login
    from .oauth2_settings import resolve

    identity = find_identity(config, options.identity)
    if not _is_oauth2(identity):
        others = [identity_name(other) for other in config.identities if _is_oauth2(other)]
        hint = f"name one with --identity ({', '.join(others)})" if others else (
            "add oauth2_provider and oauth2_client_id to it (see docs/gmail.md or docs/microsoft365.md)")
        raise ConfigError(
            f"{identity.source or config.path}:{identity.lineno}: identity {identity_name(identity)} has no OAuth2 "
            f"settings, so there is nothing to log in to: {hint}"
        )
    return login(resolve(identity), device=options.device)


def _is_oauth2(identity: Identity) -> bool:
    return any(key.startswith("oauth2_") for key in identity.options)


@hookimpl(tryfirst=True)
def esmtp_password_source(identity: Identity) -> PasswordSource | None:
    """``--pretend``/``--check``: an OAuth2 identity authenticates with an access token, not a password."""
    if not _is_oauth2(identity):
        return None
    provider = identity.options.get("oauth2_provider", "custom")
    return PasswordSource("oauth2", f"an OAuth2 access token ({provider}), refreshed with the refresh token that "
                                    "esmtp --oauth2-login stored",
                          check=lambda secrets: _refresh_token_problem(identity) if secrets else "")


def _refresh_token_problem(identity: Identity) -> str:
    """``--check --secrets``: what a send would fail on with 77 before contacting anything, "" when a refresh token is
    there (configured, its ``_command`` run, or stored by ``--oauth2-login``). The token endpoint is not asked:
    ``--check`` contacts nothing."""
    from .oauth2_settings import configured_secret, resolve
    from .oauth2_store import open_store

    settings = resolve(identity)  # an incomplete OAuth2 block is its ConfigError (file:line)
    if configured_secret(settings, "oauth2_refresh_token"):
        return ""
    store = open_store(settings)
    if store.get("refresh_token"):
        return ""
    return (f"identity {settings.name} has no OAuth2 refresh token yet: log in once with: {settings.login_hint} "
            f"(a send would fail with 77; looked in {store.where})")
