"""Which identity block a message uses, and why (``--pretend`` prints the reason). docs/configuration.md lists the rule.

1. ``--identity NAME`` (``-a NAME``): the block named NAME, whatever the sender; no such block is an error.
2. The block whose address is the envelope sender (``-f``, or ``From:`` with ``-t``): the local part compared
   exactly, the domain case-insensitively.
3. A wildcard block ``*@domain`` whose domain is the sender's (case-insensitively).
4. Otherwise the default identity (the ``default`` block, else the first block with a statement).

Within steps 1-3 the last matching block in the file wins, as in esmtp 1.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from esmtp.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from esmtp.config.model import Config, Identity


@dataclass(frozen=True, slots=True)
class Choice:
    """The identity chosen for a message and a sentence saying why."""

    identity: Identity
    reason: str


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    return (local, domain.lower()) if at else (address, "")


def same_address(one: str, other: str) -> bool:
    """Equal addresses: the local part exactly (RFC 5321 leaves its case to the receiver), the domain in any case."""
    return _split(one) == _split(other)


def where(identity: Identity) -> str:
    return f"{identity.source}:{identity.lineno}" if identity.source else "the configuration"


def _last(blocks: list[Identity], matches: Callable[[str], bool]) -> Identity | None:
    for identity in reversed(blocks):
        if identity.address is not None and matches(identity.address):
            return identity
    return None


def named_identity(config: Config, name: str) -> Identity | None:
    """The block ``--identity NAME`` selects: the last one whose address is ``name`` (the domain in any case)."""
    return _last(config.identities, lambda address: same_address(address, name))


def identity_addresses(config: Config) -> str:
    """The identity blocks' addresses, for an error that says which names exist."""
    return ", ".join(i.address for i in config.identities if i.address is not None) or "none"


def choose_identity(config: Config, sender: str | None, name: str | None = None) -> Choice:
    """The identity for a message from ``sender`` (None: unknown), or the block ``name`` when one is asked for.

    Raises ConfigError when ``name`` names no block.
    """
    blocks = config.identities
    if name is not None:
        found = named_identity(config, name)
        if found is None:
            raise ConfigError(f"{config.path or 'the configuration'} has no 'identity {name}' "
                              f"(identities: {identity_addresses(config)})")
        return Choice(found, f"--identity {name} selects 'identity {found.address}' at {where(found)}")
    if sender:
        found = _last(blocks, lambda address: same_address(address, sender))
        if found is not None:
            return Choice(found, f"the sender {sender} is 'identity {found.address}' at {where(found)}")
        domain = _split(sender)[1]
        if domain:
            found = _last(blocks, lambda address: address.startswith("*@") and address[2:].lower() == domain)
            if found is not None:
                return Choice(found, f"the sender {sender} is in the domain of 'identity {found.address}' at "
                                     f"{where(found)}")
    default = config.default
    if default.address is None:
        what = "the global section (the statements before any 'identity')"
    else:
        what = f"the default identity '{default.address}' at {where(default)}"
    if sender:
        return Choice(default, f"no identity matches the sender {sender}: {what}")
    return Choice(default, f"no sender given: {what}")
