"""Helpers shared by the built-in secret sources (not a plugin): where a keyword was set, which identity a command
means, whether a usable keyring is installed (``keyring`` is imported only when that is asked)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from esmtp.errors import UsageError

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity

#: Keywords that supply the secret: an identity with one of them is not looked up in the keyring or ~/.netrc.
COMMAND_KEYWORDS = ("password_command", "passwordeval")


def where(identity: Identity, keyword: str) -> str:
    """``file:line`` of ``keyword`` in the identity's block (the block's first line when unknown)."""
    line = identity.lines.get(keyword, identity.lineno)
    return f"{identity.source or 'config'}:{line}"


def identity_name(identity: Identity) -> str:
    """How messages and ``--identity`` name the identity: its address, or "default" for the global section."""
    return identity.address or "default"


def has_other_source(identity: Identity) -> bool:
    """True when the identity names its secret some other way (password, a command, OAuth2 settings)."""
    return (
        identity.password is not None
        or any(keyword in identity.options for keyword in COMMAND_KEYWORDS)
        or any(key.startswith("oauth2_") for key in identity.options)
    )


def find_identity(config: Config, name: str | None) -> Identity:
    """The identity ``--identity NAME`` means (its address), the default identity when no name is given."""
    if name is None:
        return config.default
    from esmtp.config.identities import identity_addresses, named_identity

    found = named_identity(config, name)  # the rule of --identity for a send
    if found is None:
        raise UsageError(f"no identity {name!r} in {config.path} (identities: {identity_addresses(config)})")
    return found


def load_keyring() -> Any | None:
    """The ``keyring`` module when it is installed and has a real backend, else None (then sources skip it)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001  (a backend that cannot start, whatever it raises, is no keyring)
        return None
    if isinstance(backend, fail.Keyring) or type(backend).__module__.startswith("keyring.backends.null"):
        return None
    return keyring
