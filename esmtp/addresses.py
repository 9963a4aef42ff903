"""Addresses: splitting and validating command-line address lists, reading address headers, and the one check
that keeps a value from breaking or injecting into an SMTP command, a header or an MDA's command line.

Start-up path: nothing but :mod:`esmtp.errors`; ``email`` is imported only for an address that is not a plain
``local@domain`` and for ``-t``.
"""

from __future__ import annotations

from esmtp.errors import DataError, UsageError

# `typing` costs milliseconds on the --version path (options imports this module): for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from esmtp.message import Message

# --- the injection check --------------------------------------------------------------------------------------

_LINE_BREAKS = frozenset("\r\n")
# Characters that str.splitlines() or a header writer could treat as a line break, and other controls (TAB aside).
_CONTROLS = frozenset([chr(c) for c in range(0x20) if c != 0x09] + ["\x7f", "\u2028", "\u2029"]) | frozenset(
    chr(c) for c in range(0x80, 0xA0)
)


def unsafe_character(value: str) -> str | None:
    """What in ``value`` could break or inject into an SMTP command, a header or a command line, or None.

    The answer reads in a sentence: "a line break", "a NUL byte" or "a control character" (TAB is allowed).
    """
    if any(char in _LINE_BREAKS for char in value):
        return "a line break"
    if "\0" in value:
        return "a NUL byte"
    if any(char in _CONTROLS for char in value):
        return "a control character"
    return None


def reject_unsafe(value: str, what: str) -> None:
    """A command-line value (an address, ``-F``): UsageError naming ``what`` when :func:`unsafe_character` objects."""
    problem = unsafe_character(value)
    if problem is not None:
        raise UsageError(f"{what} contains {problem}: {value!r}")


def check_address(address: str, what: str) -> str:
    """An envelope address, refused if it would break or inject into the SMTP dialogue (controls, TAB, ``<>``)."""
    if "\t" in address or "<" in address or ">" in address or unsafe_character(address) is not None:
        raise DataError(f"{what} {address!r} contains a control character or angle bracket")
    return address


def address_problem(address: str) -> str | None:
    """What keeps ``address``, a bare envelope address as it would go into ``MAIL FROM:<>``/``RCPT TO:<>``, from
    being one, or None: the one syntax check that the command line (:func:`parse_recipients`, :func:`parse_sender`)
    and ``-bs`` (:mod:`esmtp.server.dialogue`) share, so that an address one of them refuses the other refuses too.

    A mailbox is a local part (a dot-string of atext, or a quoted string) optionally followed by ``@`` and a domain
    (a dot-string of atext, or an ``[address literal]``); a bare local part (``root``, unquoted) is a sendmail
    tradition. UTF-8 counts as atext (SMTPUTF8). Control characters (TAB too) and angle brackets are never part of
    one. The answer reads in a sentence: "contains a control character", "has an empty local part"...
    """
    unsafe = unsafe_character(address)
    if unsafe is not None or "\t" in address:
        return f"contains {unsafe or 'a control character'}"
    if "<" in address or ">" in address:
        return "contains an angle bracket"
    if address.startswith('"'):
        end = _quoted_end(address)
        if end is None:
            return "has an unterminated quoted local part"
        rest = address[end:]
        if not rest:
            return "is a quoted local part without '@domain'"
    else:
        local = address.partition("@")[0]
        rest = address[len(local):]
        if not local:
            return "has an empty local part"
        if not _is_dot_string(local):
            return f"has a local part that is not a dot-atom: {local!r} (quote it)"
    if not rest:
        return None
    if not rest.startswith("@"):
        return "has something after its quoted local part other than '@domain'"
    domain = rest[1:]
    if domain.startswith("[") and domain.endswith("]") and len(domain) > 2:
        return None if not any(c in "[]\\ " for c in domain[1:-1]) else f"has an invalid address literal {domain!r}"
    if not domain:
        return "has an empty domain"
    if not _is_dot_string(domain):
        return f"has an invalid domain {domain!r}"
    return None


def _quoted_end(text: str) -> int | None:
    """The index after the quoted string that ``text`` starts with, or None when it is not closed."""
    escaped = False
    for pos in range(1, len(text)):
        char = text[pos]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return pos + 1
    return None


def _is_dot_string(text: str) -> bool:
    """Dot-separated non-empty atoms of atext; UTF-8 (SMTPUTF8) counts as atext."""
    return all(part and all(c in _ATEXT or c > "\x7f" for c in part) for part in text.split("."))


def check_argument(value: str, what: str) -> str:
    """An address passed to a local command (the MDA's ``%T``/``%F``): safe as an address, and not an option.

    Without a shell a value is one argument, but one that starts with "-" would still be read as an option.
    """
    check_address(value, what)
    if value.startswith("-"):
        raise DataError(f"{what} {value!r} starts with '-' and could be taken as an option by the MDA; refused")
    return value


# --- headers ----------------------------------------------------------------------------------------------------


def header_addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    """Every address in the named fields, parsed as RFC 5322 address lists (groups, comments, encoded words)."""
    from email.headerregistry import HeaderRegistry

    registry = HeaderRegistry()
    addresses = []
    for name in names:
        for value in message.get_all(name):
            try:
                header = registry(name, value)
            except Exception as error:  # the email package reports odd input in many ways
                raise DataError(f"cannot parse the {name.title()}: header: {error}") from error
            for address in getattr(header, "addresses", ()):
                if address.addr_spec and address.addr_spec != "<>":
                    addresses.append(address.addr_spec)
    return addresses


# --- the command line -------------------------------------------------------------------------------------------


def _reject_unsafe_address(value: str, what: str) -> None:
    """:func:`reject_unsafe`, and a TAB too: white space is squeezed out of an address list as it is read, and a
    TAB that vanished there (``-f $'..\\t`@x'``) would send an address other than the one written."""
    reject_unsafe(value, what)
    if "\t" in value:
        raise UsageError(f"{what} contains a control character: {value!r}")


def parse_recipients(word: str) -> list[str]:
    """One command-line word as an address list: ``Bob <b@x>`` gives b@x, ``a@x,b@y`` gives two."""
    what = "recipient address"
    _reject_unsafe_address(word, what)
    addresses = [address for piece in _split_list(word, what) if (address := _one_address(piece, what)) is not None]
    if not addresses:
        raise UsageError(f"empty {what} {word!r}")
    return addresses


def parse_sender(argument: str, letter: str) -> str:
    """``-f``/``-r``: one address; "" and "<>" mean the null sender; ``<a@b>`` and ``Name <a@b>`` give a@b."""
    what = f"sender address (-{letter})"
    _reject_unsafe_address(argument, what)
    if _squeeze(argument, what)[0] in ("", "<>"):
        return ""
    addresses = [a for piece in _split_list(argument, what) if (a := _one_address(piece, what)) is not None]
    if len(addresses) != 1:
        raise UsageError(f"option -{letter} takes exactly one address, not {argument!r}")
    return addresses[0]


def _split_list(text: str, what: str) -> list[str]:
    """Split an address list at top-level commas (not inside quotes, comments or angle brackets)."""
    pieces: list[str] = []
    start = 0
    quoted = escaped = False
    comment = angle = 0
    for pos, char in enumerate(text):
        if escaped:
            escaped = False
        elif (quoted or comment) and char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            comment += 1
        elif comment:
            if char == ")":
                comment -= 1
        elif char == '"':
            quoted = True
        elif char in "<>":
            angle = max(0, angle + (1 if char == "<" else -1))
        elif char == "," and not angle:
            pieces.append(text[start:pos])
            start = pos + 1
    if quoted or comment or escaped:
        raise UsageError(f"invalid {what} {text!r}: unterminated quote or comment")
    pieces.append(text[start:])
    return pieces


def _squeeze(text: str, what: str) -> tuple[str, str | None]:
    """``text`` without comments and unquoted white space, and the content of its ``<...>`` if it has one.

    Raises for unbalanced brackets and for anything after the closing ``>``.
    """
    out: list[str] = []
    inner_start: int | None = None
    inner: str | None = None
    quoted = escaped = False
    comment = 0
    for char in text:
        if escaped:
            escaped = False
            if not comment:
                out.append(char)
            continue
        if comment:
            if char == "\\":
                escaped = True
            elif char in "()":
                comment += 1 if char == "(" else -1
            continue
        if quoted:
            out.append(char)
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char.isspace():
            continue
        if char == "(":
            comment = 1
            continue
        if inner is not None:  # only white space and comments may follow the closing ">"
            raise UsageError(f"invalid {what} {text!r}")
        if char == '"':
            quoted = True
        elif char == "<":
            if inner_start is not None:
                raise UsageError(f"invalid {what} {text!r}")
            inner_start = len(out) + 1
        elif char == ">":
            if inner_start is None:
                raise UsageError(f"invalid {what} {text!r}")
            inner = "".join(out[inner_start:])
        out.append(char)
    if quoted or comment or escaped or (inner_start is not None and inner is None):
        raise UsageError(f"invalid {what} {text!r}")
    return "".join(out), inner


# RFC 5322 atext: what a dot-atom may hold.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def _is_dot_atom(text: str) -> bool:
    return all(part and _ATEXT.issuperset(part) for part in text.split("."))


def _plain_address(piece: str) -> str | None:
    """``piece`` if it is a bare ``local`` or ``local@domain`` of dot-atoms: nothing to parse.

    Callers nearly always pass such addresses; recognising them spares every run the email package's import.
    """
    address = piece.strip()
    local, at, domain = address.partition("@")
    if _is_dot_atom(local) and (not at or _is_dot_atom(domain)):
        return address
    return None


def _one_address(piece: str, what: str) -> str | None:
    """The address in one list element, or None for a blank element (``a@x,`` is tolerated).

    email.utils.getaddresses does the parsing; because it silently drops or rewrites what it cannot parse
    (``a b`` gives ``a``), its result must match the text it came from, or the element is rejected.
    """
    plain = _plain_address(piece)
    if plain is not None:
        return _checked(plain, piece, what)
    from email.utils import getaddresses

    squeezed, inner = _squeeze(piece, what)
    if not squeezed:
        return None
    expected = inner if inner is not None else squeezed
    if not expected:
        raise UsageError(f"empty {what} in {piece.strip()!r}")
    found = [address for _, address in getaddresses([piece])]
    if len(found) != 1 or not found[0]:
        raise UsageError(f"invalid {what} {piece.strip()!r}")
    address = found[0]
    # Compare without quotes: the parser may drop needless ones ("a"@x gives a@x).
    if _squeeze(address, what)[0].replace('"', "") != expected.replace('"', ""):
        raise UsageError(f"invalid {what} {piece.strip()!r}")
    if address.startswith("@") or address.endswith("@") or address != expected or address not in piece:
        # Not as written: quotes dropped (``a""``), white space or a comment inside the address squeezed out.
        raise UsageError(f"invalid {what} {piece.strip()!r}")
    return _checked(address, piece, what)


def _checked(address: str, piece: str, what: str) -> str:
    """``address`` if :func:`address_problem` finds nothing, as ``-bs`` would; else the usage error saying why."""
    problem = address_problem(address)
    if problem is not None:
        raise UsageError(f"invalid {what} {piece.strip()!r}: the address {problem}")
    return address
