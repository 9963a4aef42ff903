"""Helpers shared by the built-in secret sources (not a plugin): where a keyword was set, which identity a command
means, whether a usable keyring is installed (``keyring`` is imported only when that is asked) and how safe it is.

A keyring backend that keeps secrets in plain text (keyrings.alt's ``PlaintextKeyring``, which keyring picks by
itself when nothing better is installed: ``pip install -e '.[test]'`` brings it) or nowhere (``null``, ``fail``) is
used only when it was chosen explicitly: ``ESMTP_KEYRING_BACKEND``, keyring's own ``PYTHON_KEYRING_BACKEND``, or
``default-keyring`` in keyring's configuration file. Otherwise esmtp behaves as if no keyring were installed
(OAuth2 tokens go to esmtp's own 0600 state file, a password lookup goes on to ``~/.netrc``), and
``--store-password`` says why it refuses.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from esmtp.errors import ConfigError, UsageError

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


#: The environment variable that chooses a keyring backend for esmtp alone (a ``module.Class`` path, as keyring's
#: own ``PYTHON_KEYRING_BACKEND``).
BACKEND_VARIABLE = "ESMTP_KEYRING_BACKEND"


def load_keyring() -> Any | None:
    """The ``keyring`` module when it is installed and has a backend esmtp may use, else None (sources skip it)."""
    return find_keyring()[0]


def find_keyring() -> tuple[Any | None, str]:
    """``(keyring module, "")``, or ``(None, why not)``: not installed, no backend, or a plain-text or null backend
    that nobody chose (see the module docstring). Raises ConfigError when ``ESMTP_KEYRING_BACKEND`` names a backend
    that cannot be loaded."""
    try:
        import keyring
    except ImportError:
        return None, "the keyring library is not installed: pip install 'esmtp[keyring]'"
    chosen = os.environ.get(BACKEND_VARIABLE)
    try:
        if chosen:
            keyring.set_keyring(keyring.core.load_keyring(chosen))
        backend = keyring.get_keyring()
    except Exception as error:  # noqa: BLE001  (a backend that cannot start, whatever it raises, is no keyring)
        if chosen:
            raise ConfigError(f"{BACKEND_VARIABLE}={chosen}: cannot load that keyring backend "
                              f"({type(error).__name__}: {error})") from None
        return None, f"the keyring has no usable backend ({type(error).__name__})"
    first = (getattr(backend, "backends", None) or [backend])[0]  # a ChainerBackend stores in its first backend
    name = backend_name(first)
    if _stores_nothing(first):
        return None, f"the keyring backend is {name}, which stores nothing"
    if _plain_text(first) and not (chosen or _chosen_by_keyring(keyring)):
        return None, (f"the only keyring backend found is {name}, which keeps secrets in plain text "
                      f"({getattr(first, 'file_path', 'a file')}); esmtp uses it only when you choose it: "
                      f"{BACKEND_VARIABLE}={name}")
    return keyring, ""


def backend_name(backend: Any) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _stores_nothing(backend: Any) -> bool:
    return backend_name(backend).startswith(("keyring.backends.null.", "keyring.backends.fail."))


def _plain_text(backend: Any) -> bool:
    return "plaintext" in type(backend).__name__.lower()


def _chosen_by_keyring(keyring: Any) -> bool:
    """Whether keyring's own settings name the backend: ``PYTHON_KEYRING_BACKEND`` or its configuration file."""
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    try:
        return keyring.core.load_config() is not None
    except Exception:  # noqa: BLE001  (an unreadable keyring configuration chooses nothing)
        return False


def describe_backend(keyring: Any) -> str:
    """Where the keyring keeps secrets and how safe that is, for messages that say where a secret went."""
    backend = keyring.get_keyring()
    backend = (getattr(backend, "backends", None) or [backend])[0]
    name, path = backend_name(backend), getattr(backend, "file_path", None)
    if _plain_text(backend):
        return f"{name}: in plain text (base64) in {path}, which anyone who can read that file can read"
    if "encrypted" in type(backend).__name__.lower():
        return f"{name}: encrypted with the keyring password you chose, in {path}"
    if name.startswith(("keyring.backends.SecretService.", "keyring.backends.libsecret.", "keyring.backends.kwallet.",
                        "keyring.backends.macOS.", "keyring.backends.Windows.")):
        return f"{name}: encrypted by the system keyring, unlocked with your login"
    return f"{name}: esmtp cannot tell how this backend protects secrets"
