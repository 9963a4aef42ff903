"""The desktop keyring (the optional ``keyring`` library, ``pip install 'esmtp[keyring]'``) as a password source.

An identity with a ``username`` and no ``password``, ``password_command`` or OAuth2 settings is looked up under
service ``esmtp:HOST``, user ``username``: the key is host + user, so every configuration and identity with that
server host and username shares the entry. ``keyring`` is imported only for that lookup; when it is not installed,
or has no backend esmtp may use (a plain-text one nobody chose: :mod:`.credentials`), the lookup is skipped quietly
(``~/.netrc`` comes next). ``esmtp --store-password`` stores the secret there: it prompts on a terminal and reads one
line from stdin otherwise, and says where the secret went and how safe that is.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.errors import ConfigError, EsmtpError, TemporaryFailure, UsageError
from esmtp.password_sources import PasswordSource
from esmtp.progname import warn

from .credentials import (
    COMMAND_KEYWORDS,
    describe_backend,
    find_identity,
    find_keyring,
    has_other_source,
    identity_name,
    load_keyring,
    where,
)

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.options import Options
    from esmtp.trace import Trace

SERVICE_PREFIX = "esmtp:"


def service(host: str) -> str:
    """The keyring service name for a server host (without the port)."""
    return SERVICE_PREFIX + host


@hookimpl
def esmtp_secret(identity: Identity, host: str, trace: Trace) -> str | None:
    """The keyring entry ``esmtp:HOST``/``username``, for an identity with no other secret source."""
    if identity.username is None or has_other_source(identity):
        return None
    keyring = load_keyring()
    if keyring is None:
        return None
    try:
        secret = keyring.get_password(service(host), identity.username)
    except Exception as error:  # noqa: BLE001  (a locked or unreachable keyring, whatever the backend raises: try again)
        raise TemporaryFailure(
            f"the keyring could not be read for {service(host)} ({type(error).__name__}: {error})"
        ) from None
    if secret is not None:
        trace.info(f"password for {identity.username} from the keyring ({service(host)})")
    return secret if isinstance(secret, str) else None


def _read_secret(prompt: str) -> str:
    """One line: from the terminal without echo, else from stdin."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


@hookimpl
def esmtp_command(options: Options, config: Config) -> int | None:
    """``esmtp --store-password [--identity NAME]``: store the identity's password in the keyring."""
    if options.mode != "store-password":
        return None
    identity = find_identity(config, options.identity)
    name = identity_name(identity)
    if identity.username is None:
        where = f"{identity.source or config.path}:{identity.lineno}"
        raise ConfigError(f"{where}: identity {name} has no username: set 'username' in it first")
    host = identity.server(587)[0]
    keyring, why_not = find_keyring()
    if keyring is None:
        raise ConfigError(
            f"no keyring to store the password in: {why_not}. Or use password_command, or ~/.netrc"
        )
    _warn_unused(identity, name)  # before the prompt: the user may stop here
    secret = _read_secret(f"Password for {identity.username} at {host}: ")
    if not secret:
        raise UsageError("no password given; nothing stored")
    try:
        previous = keyring.get_password(service(host), identity.username)
    except Exception:  # noqa: BLE001  (keyring backends raise their own types; the write below reports its own)
        previous = None
    try:
        keyring.set_password(service(host), identity.username, secret)
    except Exception as error:  # noqa: BLE001  (keyring backends raise their own types)
        raise TemporaryFailure(f"the keyring could not store the password ({type(error).__name__})") from None
    if previous is not None and previous != secret:
        warn(f"replaced the keyring entry {service(host)}, user {identity.username}: every configuration and "
             "identity with that server host and username (the key is host + user) now uses the new password")
    print(f"Stored the password for {identity.username} at {host} (identity {name}) in the keyring, service "
          f"{service(host)}, user {identity.username}: {describe_backend(keyring)}.")
    return 0


def _warn_unused(identity: Identity, name: str) -> None:
    """Say so when a send would not use the keyring for this identity: another source wins over it."""
    if identity.password is not None:
        warn(f"identity {name} has a password in {where(identity, 'password')}, which wins over the keyring: the "
             "stored one is used only once that line is removed")
        return
    for keyword in (*COMMAND_KEYWORDS, *sorted(k for k in identity.options if k.startswith("oauth2_"))):
        if keyword in identity.options:
            warn(f"identity {name} has {keyword} ({where(identity, keyword)}), which is used instead of the keyring")
            return


@hookimpl
def esmtp_password_source(identity: Identity) -> PasswordSource | None:
    """``--pretend``/``--check``: the keyring entry that would be asked (a keyring may prompt to unlock, so only
    ``--check --secrets`` looks the entry up, and then also ``~/.netrc``, which comes next)."""
    if identity.username is None or has_other_source(identity) or load_keyring() is None:
        return None
    from esmtp.diagnostics.describe import server
    from esmtp.trace import Trace

    host = server(identity)[0]
    username = identity.username

    def check(secrets: bool) -> str:
        if not secrets:
            return ""
        from .password_netrc import esmtp_secret as from_netrc

        try:
            if esmtp_secret(identity, host, Trace()) is not None or from_netrc(identity, host, Trace()) is not None:
                return ""
        except EsmtpError as error:
            return str(error)
        return (f"neither the keyring ({service(host)}, user {username}) nor ~/.netrc has a password: store one with "
                f"esmtp --store-password --identity {identity_name(identity)}")

    return PasswordSource("keyring", f"the keyring ({service(host)}, user {username}), else ~/.netrc", check)
