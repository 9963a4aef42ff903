"""Where an identity's password comes from, described without revealing it (``--pretend``, ``--check``).

Secret sources are plugins (``password_command``, the keyring, ``~/.netrc``, OAuth2 tokens); each describes the
identities it serves through the ``esmtp_password_source`` hook, returning a :class:`PasswordSource`. The inline
``password`` keyword is the core's own answer when no plugin claims the identity. A source whose check costs
something or may prompt (running ``password_command``, unlocking a keyring) does it only for ``--check --secrets``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esmtp.config.model import Identity
    from esmtp.plugins import Hooks

#: A masked password: never its length, never a character of it.
MASK = "****"


def _fine(secrets: bool) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """``kind``: "inline", "password_command", "keyring", "netrc", "oauth2"... or "none"; ``description``: for
    people, masked (``password_command `pass show mail```, ``inline in ~/.esmtprc (****)``).

    ``check(secrets)`` returns a problem ("" when fine). Without ``secrets`` it must not run commands, prompt or use
    the network; with it, it may fetch the secret to prove that it works (and must not show it).
    """

    kind: str
    description: str
    check: Callable[[bool], str] = field(default=_fine, repr=False)


def password_source(identity: Identity, hooks: Hooks | None = None) -> PasswordSource:
    """The source the identity's password would come from: a plugin's answer, else ``password``, else none."""
    if hooks is not None:
        source = hooks.password_source(identity)
        if source is not None:
            return source
    if identity.password is not None:
        where = f" in {identity.source}" if identity.source else ""
        return PasswordSource("inline", f"inline{where} ({MASK})")
    return PasswordSource("none", "none")
