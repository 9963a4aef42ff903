"""Where an identity's password comes from, described without revealing it (``--pretend``, ``--check``).

Each kind of source registers a describer with :func:`register`: a function that returns a :class:`PasswordSource`
for the identities it serves, or None. The first answer wins; the inline ``password`` keyword is the last resort.
A source whose check costs something or may prompt (running ``password_command``, unlocking a keyring) does it only
when ``--check --secrets`` asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Identity

#: A masked password: never its length, never a character of it.
MASK = "****"


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """``kind``: "inline", "password_command", "keyring", "netrc"... or "none"; ``description``: for people, masked.

    ``check(secrets)`` returns a problem ("" when fine); with ``secrets`` it may fetch the password to prove it works.
    """

    kind: str
    description: str
    check: Callable[[bool], str] = lambda secrets: ""


Describer = Callable[["Identity"], "PasswordSource | None"]
_DESCRIBERS: list[Describer] = []
#: Modules that register a source when imported (``password_command``, keyring, netrc...): the one place to extend.
#: They are imported on the first :func:`password_source` call, so that a plain send never pays for them.
SOURCE_MODULES: tuple[str, ...] = ()
_loaded = False


def register(describer: Describer) -> Describer:
    """Add a source (usable as a decorator). Sources registered later are asked first."""
    _DESCRIBERS.insert(0, describer)
    return describer


def password_source(identity: Identity) -> PasswordSource:
    """The source the identity's password would come from."""
    global _loaded
    if not _loaded:
        import importlib

        _loaded = True
        for module in SOURCE_MODULES:
            importlib.import_module(module)
    for describer in _DESCRIBERS:
        source = describer(identity)
        if source is not None:
            return source
    if identity.password is not None:
        where = f" in {identity.source}" if identity.source else ""
        return PasswordSource("inline", f"inline{where} ({MASK})")
    return PasswordSource("none", "none")
