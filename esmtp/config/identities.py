"""Which identity block a message uses, and why (``--pretend`` and ``--check`` print the reason).
docs/configuration.md lists the rule.

1. ``--identity NAME`` (``-a NAME``): the block that lists NAME on its ``identity`` line, whatever the sender; no
   such block is an error.
2. Otherwise the most specific match of the envelope sender (``-f``, or ``From:`` with ``-t``) among the addresses
   and shell-style patterns (``*``, ``?``, ``[...]``) of every ``identity`` line: an exact address first, then the
   pattern with the most characters that are not ``*``. Addresses compare the local part exactly and the domain in
   any case; so do patterns.
3. Otherwise the default identity (the ``default`` block, else the first block with a statement).

The same address or pattern in two blocks: the last block wins, as in esmtp 1.2. Two *different* patterns that are
equally specific and can match the same sender are a configuration error naming both lines (:func:`check_ties`,
run when the file is read), so the choice never depends on the order of the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from esmtp.errors import ConfigError

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity

#: The weight of an exact address: more than any pattern's.
EXACT = 1 << 30
_WILDCARDS = "*?["


@dataclass(frozen=True, slots=True)
class Choice:
    """The identity chosen for a message and a sentence saying why."""

    identity: Identity
    reason: str


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    return (local, domain.lower()) if at else (address, "")


def _normal(address: str) -> str:
    """The form addresses and patterns are compared in: the domain lower-cased, the local part as written."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def same_address(one: str, other: str) -> bool:
    """Equal addresses: the local part exactly (RFC 5321 leaves its case to the receiver), the domain in any case."""
    return _split(one) == _split(other)


def is_pattern(address: str) -> bool:
    """Whether an ``identity`` address is a shell-style pattern (it has ``*``, ``?`` or ``[``)."""
    return any(char in address for char in _WILDCARDS)


def where(identity: Identity) -> str:
    return f"{identity.source}:{identity.lineno}" if identity.source else "the configuration"


# ---- patterns ------------------------------------------------------------------------------------------------------

#: A pattern's parts: None for ``*``, else (negated, characters) for one character: a literal, ``?`` (negated,
#: nothing) or a ``[...]`` class.
_Part = tuple[bool, frozenset[str]] | None


@lru_cache(maxsize=256)
def _parts(pattern: str) -> tuple[_Part, ...]:
    """``pattern`` (already in :func:`_normal` form) as :data:`_Part` items, read as :mod:`fnmatch` reads it."""
    parts: list[_Part] = []
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        index += 1
        if char == "*":
            if not parts or parts[-1] is not None:  # "**" is "*"
                parts.append(None)
        elif char == "?":
            parts.append((True, frozenset()))
        elif char == "[":
            close = index + 1 if pattern[index : index + 1] in ("!", "]") else index
            close = pattern.find("]", close + (1 if pattern[close : close + 1] == "]" else 0))
            if close < 0:  # no closing bracket: fnmatch takes "[" literally
                parts.append((False, frozenset("[")))
                continue
            body = pattern[index:close]
            index = close + 1
            negated = body.startswith("!")
            body = body[1:] if negated else body
            chars: set[str] = set()
            position = 0
            while position < len(body):
                if position + 2 < len(body) and body[position + 1] == "-":
                    low, high = body[position], body[position + 2]
                    chars.update(chr(code) for code in range(ord(low), ord(high) + 1))
                    position += 3
                else:
                    chars.add(body[position])
                    position += 1
            parts.append((negated, frozenset(chars)))
        else:
            parts.append((False, frozenset(char)))
    return tuple(parts)


def weight(pattern: str) -> int:
    """How specific an address or pattern is: :data:`EXACT` for an address, else the number of characters it
    matches one for one (``*`` counts nothing; ``?`` and a ``[...]`` class count one each)."""
    if not is_pattern(pattern):
        return EXACT
    return sum(1 for part in _parts(_normal(pattern)) if part is not None)


def _matches_part(part: tuple[bool, frozenset[str]], char: str) -> bool:
    negated, chars = part
    return (char in chars) != negated


def matches(pattern: str, address: str) -> bool:
    """Whether ``address`` is ``pattern`` (an exact address) or matches it (a pattern); domains in any case."""
    if not is_pattern(pattern):
        return same_address(pattern, address)
    parts, text = _parts(_normal(pattern)), _normal(address)
    # Iterative glob match with backtracking to the last star: linear for the patterns people write.
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        ended = p >= len(parts)
        part = None if ended else parts[p]
        if not ended and part is None:
            star, resume = p, t
            p += 1
        elif part is not None and _matches_part(part, text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(part is None for part in parts[p:])


def common_match(one: str, other: str) -> str | None:
    """An address both patterns (or addresses) match, or None when there is none."""
    return _overlap(one, other)


def _overlap(one: str, other: str) -> str | None:
    """An address both patterns match (a witness for the error message), or None when there is none."""
    a, b = _parts(_normal(one)), _parts(_normal(other))

    @cache
    def meet(i: int, j: int) -> str | None:
        if i == len(a) and j == len(b):
            return ""
        if i < len(a) and a[i] is None:
            found = meet(i + 1, j)
            if found is not None:
                return found
            if j < len(b):
                rest = meet(i, j + 1)
                second = b[j]
                if rest is not None:
                    return (_any(second) if second is not None else "") + rest
            return None
        if j < len(b) and b[j] is None:
            found = meet(i, j + 1)
            if found is not None:
                return found
            first = a[i] if i < len(a) else None
            if first is not None:
                rest = meet(i + 1, j)
                if rest is not None:
                    return _any(first) + rest
            return None
        if i == len(a) or j == len(b):
            return None
        left, right = a[i], b[j]
        assert left is not None and right is not None
        char = _common(left, right)
        if char is None:
            return None
        rest = meet(i + 1, j + 1)
        return None if rest is None else char + rest

    return meet(0, 0)


def _any(part: tuple[bool, frozenset[str]]) -> str:
    found = _common(part, (True, frozenset()))
    return found if found is not None else "x"


def _common(one: tuple[bool, frozenset[str]], other: tuple[bool, frozenset[str]]) -> str | None:
    """A character both parts match, or None."""
    (neg1, set1), (neg2, set2) = one, other
    if not neg1 and not neg2:
        both = set1 & set2
    elif not neg1:
        both = set1 - set2
    elif not neg2:
        both = set2 - set1
    else:
        taken = set1 | set2
        return next(c for c in "xyzabcdefghijklmnopqrstuvw0123456789" + "".join(map(chr, range(256, 1024)))
                    if c not in taken)
    return min(both) if both else None


def patterns_tie(one: str, other: str) -> str | None:
    """A sender that two different patterns match equally well (so neither can be chosen), or None."""
    if not (is_pattern(one) and is_pattern(other)) or _normal(one) == _normal(other) or weight(one) != weight(other):
        return None
    if one.startswith("*@") and other.startswith("*@") and not is_pattern(one[2:] + other[2:]):
        return None  # two different domains
    return _overlap(one, other)


def check_ties(config: Config) -> None:
    """Raise ConfigError naming both lines when two blocks have different, equally specific patterns that can match
    the same sender. Only patterns are compared: two different exact addresses never tie, and the same address or
    pattern in two blocks is esmtp 1.2's "the last one wins"."""
    patterns = [(identity, pattern) for identity in config.identities for pattern in identity.addresses
                if is_pattern(pattern)]
    if len(patterns) < 2:
        return
    for index, (first, one) in enumerate(patterns):
        for second, other in patterns[index + 1:]:
            witness = None if first is second else patterns_tie(one, other)
            if witness is not None:
                raise ConfigError(
                    f"{where(second)}: 'identity {other}' and 'identity {one}' at {where(first)} match the same "
                    f"senders (such as {witness}) equally well ({weight(one)} fixed characters each), so neither "
                    "can be chosen: make one of the patterns more specific, or list the address itself"
                )


# ---- choosing --------------------------------------------------------------------------------------------------------


def named_identity(config: Config, name: str) -> Identity | None:
    """The block ``--identity NAME`` selects: the last one that lists ``name`` (the domain in any case)."""
    for identity in reversed(config.identities):
        if any(same_address(address, name) for address in identity.addresses):
            return identity
    return None


def identity_addresses(config: Config) -> str:
    """The identity blocks' addresses, for an error that says which names exist."""
    return ", ".join(i.address for i in config.identities if i.address is not None) or "none"


def best_match(config: Config, sender: str) -> tuple[Identity, str] | None:
    """The block whose address or pattern matches ``sender`` best, and that address or pattern; None if none does."""
    best: tuple[int, Identity, str] | None = None
    for identity in config.identities:
        for pattern in identity.addresses:
            score = weight(pattern)
            if (best is None or score >= best[0]) and matches(pattern, sender):
                if best is not None and score == best[0] and best[1] is not identity \
                        and _normal(best[2]) != _normal(pattern):
                    raise ConfigError(
                        f"{where(identity)}: 'identity {pattern}' and 'identity {best[2]}' at {where(best[1])} "
                        f"both match {sender} equally well: make one of them more specific"
                    )
                best = (score, identity, pattern)
    return None if best is None else (best[1], best[2])


def choose_identity(config: Config, sender: str | None, name: str | None = None) -> Choice:
    """The identity for a message from ``sender`` (None: unknown), or the block ``name`` when one is asked for.

    Raises ConfigError when ``name`` names no block.
    """
    if name is not None:
        found = named_identity(config, name)
        if found is None:
            raise ConfigError(f"{config.path or 'the configuration'} has no 'identity {name}' "
                              f"(identities: {identity_addresses(config)})")
        return Choice(found, f"--identity {name} selects 'identity {found.address}' at {where(found)}")
    if sender:
        match = best_match(config, sender)
        if match is not None:
            found, pattern = match
            if not is_pattern(pattern):
                return Choice(found, f"the sender {sender} is 'identity {pattern}' at {where(found)}")
            kind = "is in the domain of" if pattern.startswith("*@") and not is_pattern(pattern[2:]) else "matches"
            return Choice(found, f"the sender {sender} {kind} 'identity {pattern}' at {where(found)}"
                                 f"{_beaten(config, sender, found, pattern)}")
    default = config.default
    if default.address is None:
        what = "the global section (the statements before any 'identity')"
    else:
        what = f"the default identity '{default.address}' at {where(default)}"
    if sender:
        return Choice(default, f"no identity matches the sender {sender}: {what}")
    return Choice(default, f"no sender given: {what}")


def _beaten(config: Config, sender: str, chosen: Identity, pattern: str) -> str:
    """Why a pattern won over the other patterns that match too (empty when no other matches)."""
    others = [(other, address) for other in config.identities if other is not chosen
              for address in other.addresses if is_pattern(address) and matches(address, sender)]
    if not others:
        return ""
    shown = ", ".join(f"'{address}' at {where(other)}" for other, address in others[:3])
    return f" (the most specific of the patterns that match: {weight(pattern)} fixed characters; also {shown})"
