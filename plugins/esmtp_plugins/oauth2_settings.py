"""An identity's OAuth2 settings: ``oauth2_provider`` presets filled in, explicit ``oauth2_*`` keywords on top."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from esmtp.errors import ConfigError

from .credentials import identity_name, where

if TYPE_CHECKING:
    from esmtp.config.model import Identity

#: What ``oauth2_provider`` fills in. Microsoft's "common" tenant serves every organisation and personal accounts.
PROVIDERS: dict[str, dict[str, str]] = {
    "google": {
        "oauth2_authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "oauth2_token_url": "https://oauth2.googleapis.com/token",
        "oauth2_scope": "https://mail.google.com/",
        # Google returns a refresh token only when asked for offline access (and again only with consent).
        "authorize_extra": "access_type=offline&prompt=consent",
    },
    "microsoft": {
        "oauth2_authorize_url": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "oauth2_token_url": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "oauth2_device_url": "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
        "oauth2_scope": "https://outlook.office.com/SMTP.Send offline_access",
    },
}

#: Every keyword this plugin declares; all of them mark the identity as an OAuth2 one.
KEYWORDS: dict[str, str] = {
    "oauth2_provider": "google or microsoft: fills in the endpoints and the scope",
    "oauth2_token_url": "the token endpoint (refresh and code exchange)",
    "oauth2_authorize_url": "the authorisation endpoint (esmtp --oauth2-login)",
    "oauth2_device_url": "the device authorisation endpoint (esmtp --oauth2-login --device)",
    "oauth2_client_id": "the client (application) id of your app registration",
    "oauth2_client_secret": "the client secret, for registrations that have one",
    "oauth2_client_secret_command": "a shell command printing the client secret",
    "oauth2_refresh_token": "the refresh token (else the one esmtp --oauth2-login stored)",
    "oauth2_refresh_token_command": "a shell command printing the refresh token",
    "oauth2_scope": "the scopes to ask for, space separated",
}
SECRET_KEYWORDS = ("oauth2_client_secret", "oauth2_refresh_token")


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """Resolved settings of one identity. Secrets are not here: they are read when needed (:func:`client_secret`)."""

    identity: Identity
    token_url: str
    client_id: str
    scope: str = ""
    authorize_url: str | None = None
    device_url: str | None = None
    authorize_extra: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return identity_name(self.identity)

    @property
    def login_hint(self) -> str:
        """The command that logs this identity in again."""
        suffix = f" --identity {self.identity.address}" if self.identity.address else ""
        return f"esmtp --oauth2-login{suffix}"

    @property
    def refresh_token_configured(self) -> bool:
        """The refresh token comes from the configuration (not from esmtp's store, so a rotated one is not saved)."""
        return any(key in self.options for key in ("oauth2_refresh_token", "oauth2_refresh_token_command"))


def resolve(identity: Identity) -> OAuth2Settings:
    """The identity's settings; ConfigError (file:line) when something needed is missing or unknown."""
    options = dict(identity.options)
    provider = options.get("oauth2_provider")
    preset: dict[str, str] = {}
    if provider is not None:
        if provider not in PROVIDERS:
            raise ConfigError(
                f"{where(identity, 'oauth2_provider')}: oauth2_provider takes {' or '.join(PROVIDERS)}, not "
                f"'{provider}' (for another provider set oauth2_token_url and the other oauth2_* keywords)"
            )
        preset = PROVIDERS[provider]
    merged = {**preset, **options}
    for keyword in ("oauth2_token_url", "oauth2_client_id"):
        if not merged.get(keyword):
            raise ConfigError(
                f"{identity.source or 'config'}:{identity.lineno}: identity {identity_name(identity)} has OAuth2 "
                f"settings but no {keyword} (see docs/authentication.md)"
            )
    if identity.username is None:
        raise ConfigError(
            f"{identity.source or 'config'}:{identity.lineno}: identity {identity_name(identity)} has OAuth2 settings "
            "but no username (the mailbox address, e.g. you@example.org)"
        )
    for keyword in ("oauth2_client_secret", "oauth2_refresh_token"):
        if keyword in options and f"{keyword}_command" in options:
            raise ConfigError(
                f"{where(identity, f'{keyword}_command')}: {keyword}_command cannot be used together with {keyword} "
                f"({where(identity, keyword)}): keep one of them"
            )
    return OAuth2Settings(
        identity=identity,
        token_url=merged["oauth2_token_url"],
        client_id=merged["oauth2_client_id"],
        scope=merged.get("oauth2_scope", ""),
        authorize_url=merged.get("oauth2_authorize_url"),
        device_url=merged.get("oauth2_device_url"),
        authorize_extra=merged.get("authorize_extra", ""),
        options=options,
    )


def configured_secret(settings: OAuth2Settings, keyword: str) -> str | None:
    """``keyword`` (client secret or refresh token) from the configuration or its ``_command``, else None."""
    if keyword in settings.options:
        return settings.options[keyword]
    command = settings.options.get(f"{keyword}_command")
    if command is None:
        return None
    from .password_command import DEFAULT_TIMEOUT, run_secret_command

    timeout = float(settings.identity.options.get("timeout") or DEFAULT_TIMEOUT)
    return run_secret_command(command, keyword=f"{keyword}_command",
                              location=where(settings.identity, f"{keyword}_command"), timeout=timeout)
