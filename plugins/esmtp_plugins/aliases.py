"""Built-in plugin 'aliases': expands local names through an /etc/aliases-style file (``aliases_file``).

Off until ``aliases_file`` is set. Only local names (no ``@``) are looked up, case-insensitively; targets may be
addresses, other local names (expanded in turn), or ``:include:/path`` files of targets. A name that appears in its
own expansion is kept as a local name (``alice: alice, alice@example.org`` delivers both ways). esmtp relays only,
so a target that is a program (``|cmd``) or a file (``/path``) is an error, reported with the file and line.
With ``aliases_rewrite_headers enabled`` the To: and Cc: header fields are rewritten the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from esmtp import hookimpl
from esmtp.config.model import Config
from esmtp.errors import ConfigError
from esmtp.message import Message
from esmtp.types import Envelope, KeywordSpec

#: Give up on alias files whose expansion explodes (a diamond of lists that multiply), rather than run for ever.
MAX_EXPANSION = 10_000
_HEADER_FIELDS = ("To", "Cc")


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    return [
        KeywordSpec("aliases_file", scope="global", help="an /etc/aliases-style file; enables the aliases plugin"),
        KeywordSpec("aliases_rewrite_headers", scope="global", choices=("enabled", "disabled"),
                    help="also rewrite local names in the To: and Cc: headers (default disabled)"),
    ]


@dataclass(frozen=True, slots=True)
class Entry:
    """One alias: its targets as written, and where it was defined."""

    targets: tuple[str, ...]
    source: str
    lineno: int


def split_targets(text: str) -> list[str]:
    """Comma-separated targets; commas inside double quotes or angle brackets do not split."""
    targets: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        if char == "," and not quoted and not angle:
            targets.append("".join(current))
            current = []
        else:
            current.append(char)
    targets.append("".join(current))
    return [target.strip() for target in targets if target.strip()]


def _logical_lines(path: str) -> Iterable[tuple[int, str]]:
    """Lines with their continuation lines (leading blank) joined; comments and blank lines dropped."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read the aliases file {path}: {error.strerror or error}") from error
    start, parts = 0, list[str]()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1] in (" ", "\t") and parts:
            parts.append(line.strip())
            continue
        if parts:
            yield start, " ".join(parts)
        start, parts = number, [line.strip()]
    if parts:
        yield start, " ".join(parts)


def read_aliases(path: str) -> dict[str, Entry]:
    """Parse an aliases file. Later definitions of a name replace earlier ones (as newaliases warns and does)."""
    aliases: dict[str, Entry] = {}
    for lineno, line in _logical_lines(path):
        name, colon, rest = line.partition(":")
        name = name.strip().strip('"')
        if not colon or not name or any(c.isspace() for c in name):
            raise ConfigError(f"{path}:{lineno}: expected 'name: target, ...', not {line!r}")
        aliases[name.lower()] = Entry(tuple(split_targets(rest)), path, lineno)
    return aliases


def _bare(target: str) -> str:
    """``Name <addr>`` → ``addr``; ``"quoted"`` → ``quoted``."""
    if "<" in target and target.endswith(">"):
        return target[target.rindex("<") + 1 : -1].strip()
    if len(target) >= 2 and target[0] == target[-1] == '"':
        return target[1:-1]
    return target


class Aliases:
    """An alias table and its expansion rules."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.table = read_aliases(path)

    def is_alias(self, address: str) -> bool:
        return "@" not in address and address.lower() in self.table

    def expand(self, addresses: Iterable[str]) -> list[str]:
        """Every address with aliases replaced by their expansion, in order, without duplicates."""
        out: list[str] = []
        budget = [MAX_EXPANSION]
        for address in addresses:
            self._visit(address, frozenset(), None, out, budget)
        return list(dict.fromkeys(out))

    def _visit(self, target: str, chain: frozenset[str], entry: Entry | None, out: list[str],
               budget: list[int]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"{self.path}: the aliases expand to more than {MAX_EXPANSION} addresses")
        where = f"{entry.source}:{entry.lineno}" if entry else self.path
        if target.lower().startswith(":include:"):
            included = os.path.join(os.path.dirname(self.path), os.path.expanduser(target[9:].strip()))
            if included in chain:
                return  # an include loop: each file is read once per chain
            for lineno, line in _logical_lines(included):
                for item in split_targets(line):
                    self._visit(item, chain | {included}, Entry((), included, lineno), out, budget)
            return
        target = _bare(target)
        if target.startswith(("|", "/")):
            raise ConfigError(
                f"{where}: the alias delivers to a program or a file ({target!r}); esmtp only relays mail "
                "(send to an address, or to a local name for the MDA)"
            )
        key = target.lower()
        if "@" in target or key not in self.table or key in chain:
            out.append(target)  # an address, a plain local name, or a name inside its own expansion
            return
        found = self.table[key]
        for item in found.targets:
            self._visit(item, chain | {key}, found, out, budget)


def _aliases(config: Config) -> Aliases | None:
    path = config.options.get("aliases_file")
    if not path:
        return None
    path = os.path.expanduser(path)
    if config.path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(config.path), path)
    return Aliases(path)


def rewrite_field(value: str, aliases: Aliases) -> list[str] | None:
    """The field's items (addresses; a group's name and ``;`` go with its first and last member) with aliased local
    names expanded, or None when it names no alias (then the field is left byte for byte)."""
    from email.headerregistry import AddressHeader, HeaderRegistry
    from email.utils import formataddr

    header = HeaderRegistry()("to", value)
    assert isinstance(header, AddressHeader)
    changed = False
    parts: list[str] = []
    for group in header.groups:
        rendered: list[str] = []
        for address in group.addresses:
            if not aliases.is_alias(address.addr_spec):
                rendered.append(formataddr((address.display_name, address.addr_spec), charset="utf-8"))
                continue
            changed = True
            targets = aliases.expand([address.addr_spec])
            name = address.display_name if len(targets) == 1 else ""
            rendered += [formataddr((name, target), charset="utf-8") for target in targets]
        if group.display_name is None:
            parts += rendered
        elif not rendered:
            parts.append(f"{_phrase(group.display_name)}:;")
        else:
            # Group members stay separate items, so that a long group can be folded between them.
            rendered[0] = f"{_phrase(group.display_name)}: {rendered[0]}"
            rendered[-1] += ";"
            parts += rendered
    return parts if changed else None


def fold(name: str, items: list[str], newline: bytes) -> bytes:
    """``Name: a, b,`` folded before an item that would take the line past 78 characters (RFC 5322 2.1.1)."""
    lines: list[str] = []
    current = f"{name}:"
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if len(current) + 1 + len(piece) > 78 and current.strip() not in (f"{name}:", ""):
            lines.append(current)
            current = "\t" + piece
        else:
            current += " " + piece
    lines.append(current)
    return newline.join(line.encode("utf-8", "surrogateescape") for line in lines) + newline


def replace_field(message: Message, name: str, raw: bytes) -> None:
    """Put ``raw`` where the first ``name`` field was and drop the others (RFC 5322 allows one To: and one Cc:)."""
    names = message.names()
    index = names.index(name.lower())
    message.remove(name)
    message.headers.insert(index, raw)


def _phrase(name: str) -> str:
    from email.utils import formataddr

    # formataddr quotes or encodes a display name as needed; borrow that for a group name.
    return formataddr((name, "x")).rsplit(" <", 1)[0]


@hookimpl
def esmtp_rewrite_envelope(envelope: Envelope, message: Message, config: Config) -> None:
    """Expand the envelope recipients; with ``aliases_rewrite_headers enabled`` also To: and Cc:."""
    aliases = _aliases(config)
    if aliases is None:
        return
    envelope.recipients = aliases.expand(envelope.recipients)
    if config.options.get("aliases_rewrite_headers") != "enabled":
        return
    for name in _HEADER_FIELDS:
        values = message.get_all(name)
        rewritten = [rewrite_field(value, aliases) for value in values]
        if any(items is not None for items in rewritten):
            items = [item for value, new in zip(values, rewritten, strict=True)
                     for item in (new if new is not None else [value])]
            replace_field(message, name, fold(name, items, message.newline))
