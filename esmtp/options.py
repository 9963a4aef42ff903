"""The sendmail-compatible command line: argv in, one typed :class:`Options` out. Nothing here does I/O.

Parsing follows glibc ``getopt`` with GNU permutation, over the union of esmtp 1.2's option letters and Postfix
``sendmail(1)``'s. docs/cli.md is the user-facing reference, including every deliberate difference from esmtp 1.2.
"""

from __future__ import annotations

import os.path
from dataclasses import dataclass, field

from esmtp.addresses import parse_recipients, parse_sender, reject_unsafe
from esmtp.errors import UsageError

# `typing` costs milliseconds on the --version/-bp path: the alias exists for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Mode = Literal[
        "deliver", "smtp", "mailq", "newaliases", "flush", "remove", "version", "help", "serverinfo", "check",
        "store-password", "oauth2-login", "import-msmtprc", "dkim-keygen", "listen", "hash-password",
        "system-daemon", "system-setup",
    ]


@dataclass(slots=True)
class Options:
    """What the command line asked for."""

    mode: Mode = "deliver"
    #: Recipient addresses from the command line, in order, each already split from address lists.
    recipients: list[str] = field(default_factory=list)
    #: ``-f``/``-r``; "" means the null sender ``<>``.
    sender: str | None = None
    #: ``-F``: the full name used in a generated From:.
    full_name: str | None = None
    #: ``-t``: read recipients from the headers.
    read_recipients: bool = False
    #: ``-N``: "NEVER" or a comma-separated subset of SUCCESS,FAILURE,DELAY, upper case, fixed order.
    notify: str | None = None
    #: ``-R``: "FULL" or "HDRS".
    ret: str | None = None
    #: ``-V``: the DSN envelope id.
    envid: str | None = None
    #: ``-B``: "7BIT" or "8BITMIME".
    body_type: str | None = None
    #: ``-C``: configuration file.
    config_file: str | None = None
    #: ``-v`` count.
    verbose: int = 0
    #: ``-X``: protocol transcript file (appended to).
    transcript: str | None = None
    #: ``-q`` selection (``-qI<id>``, ``--flush ID``) or ``--remove ID`` arguments: queue entry ids.
    queue_ids: list[str] = field(default_factory=list)
    #: ``--identity NAME`` / ``-a NAME``: the identity block to use, whatever the sender (a send, ``--pretend``,
    #: ``--serverinfo``, ``--store-password``, ``--oauth2-login``).
    identity: str | None = None
    #: ``--pretend``: print what a send would do and send nothing.
    pretend: bool = False
    #: ``--serverinfo --login``: also authenticate.
    login: bool = False
    #: ``--check --secrets``: also run password commands (and other sources that cost or prompt).
    secrets: bool = False
    #: ``--json``: machine-readable output (``mailq``).
    json: bool = False
    #: ``--device``: ``--oauth2-login`` with the device-code flow.
    device: bool = False
    #: ``--import-msmtprc FILE``: the msmtp configuration to convert (None: msmtp's default locations).
    msmtprc: str | None = None
    #: ``--dkim-keygen``'s ``--selector``, ``--domain``, ``--algorithm`` and ``--output`` (checked by the plugin).
    selector: str | None = None
    domain: str | None = None
    algorithm: str | None = None
    output: str | None = None
    #: ``--listen [ADDRESS:]PORT`` (repeatable), or ``systemd`` for the sockets systemd passes.
    listen: list[str] = field(default_factory=list)
    #: Flags accepted for compatibility and ignored, as given (for ``-v`` output); also operands a mode ignores.
    ignored: list[str] = field(default_factory=list)


# Program names (argv[0] basename) that select a mode; every other name behaves as sendmail.
# "deliver" is the esmtp-wrapper name for "deliver the queue now".
_PROGRAM_MODES: dict[str, Mode] = {"mailq": "mailq", "newaliases": "newaliases", "deliver": "flush"}

# esmtp 1.2's getopt string "A:B:b:C:cd:e:F:f:Gh:IiL:M:mN:nO:o:p:q:R:r:sTtV:vX:" plus Postfix's -U and -x.
# -q is not listed: it takes an optional, glued-only argument and is handled on its own.
_WITH_ARGUMENT = frozenset("aABbCdeFfhLMNOopRrVX")
_WITHOUT_ARGUMENT = frozenset("cGIimnsTtUvx")
_IGNORED_WITH_ARGUMENT = frozenset("AdehLMOop")  # -o i is handled as -i before this set is consulted
_IGNORED_WITHOUT_ARGUMENT = frozenset("cGmnsTUx")

# -b modes esmtp 1.2 names "unsupported" (plus Postfix's -bl); anything else unknown is "invalid".
_UNSUPPORTED_B_MODES = frozenset("adDhHlPtv")
_NOTIFY_WORDS = ("success", "failure", "delay")  # also the output order

_LONG_OPTIONS: dict[str, Mode] = {
    "--version": "version", "--help": "help", "--flush": "flush", "--remove": "remove", "--serverinfo": "serverinfo",
    "--check": "check", "--store-password": "store-password", "--oauth2-login": "oauth2-login",
    "--import-msmtprc": "import-msmtprc", "--dkim-keygen": "dkim-keygen", "--hash-password": "hash-password",
    "--system-daemon": "system-daemon", "--system-setup": "system-setup",
}
#: Long flags that modify a mode rather than select one (the Options attribute they set).
_LONG_FLAGS = {
    "--pretend": "pretend", "--login": "login", "--secrets": "secrets", "--json": "json", "--device": "device",
}


def parse_args(argv: list[str]) -> Options:
    """Parse a full argv (``argv[0]``'s basename selects sendmail, mailq, newaliases or deliver behaviour).

    Raises :class:`UsageError` (exit 64) for anything the command line cannot mean.
    """
    program = os.path.basename(argv[0]) if argv else ""
    opts = Options(mode=_PROGRAM_MODES.get(program, "deliver"))
    operands: list[str] = []
    index = 1
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            operands.extend(argv[index:])
            break
        if word.startswith("--"):
            index = _long_option(opts, word, argv, index)
        elif word.startswith("-") and word != "-":
            index = _short_options(opts, word, argv, index)
        else:
            operands.append(word)  # GNU permutation: options may follow operands
    _check_modifiers(opts)
    _place_operands(opts, operands)
    return opts


#: Long options that take a value (``--selector S`` or ``--selector=S``), all ``--dkim-keygen``'s: the attribute.
_VALUE_OPTIONS = {"--selector": "selector", "--domain": "domain", "--algorithm": "algorithm", "--output": "output"}


#: Flags that only mean something in one mode, and the mode's option.
_MODIFIERS = (("login", "serverinfo", "--login", "--serverinfo"), ("secrets", "check", "--secrets", "--check"),
              ("json", "mailq", "--json", "mailq or -bp"), ("pretend", "deliver", "--pretend", "a send"),
              ("device", "oauth2-login", "--device", "--oauth2-login"))
#: The modes in which ``--identity`` means something.
_IDENTITY_MODES = ("deliver", "serverinfo", "store-password", "oauth2-login", "help", "version")


def _check_modifiers(opts: Options) -> None:
    for attribute, mode, flag, wanted in _MODIFIERS:
        if getattr(opts, attribute) and opts.mode != mode and opts.mode not in ("help", "version"):
            raise UsageError(f"{flag} goes with {wanted}")
    if opts.identity is not None and opts.mode not in _IDENTITY_MODES:
        raise UsageError("--identity goes with a send, --pretend, --serverinfo, --store-password or --oauth2-login")
    for name, attribute in _VALUE_OPTIONS.items():
        if getattr(opts, attribute) is not None and opts.mode not in ("dkim-keygen", "help", "version"):
            raise UsageError(f"{name} goes with --dkim-keygen")
    if opts.mode == "dkim-keygen" and (opts.selector is None or opts.domain is None):
        raise UsageError("--dkim-keygen needs --selector SELECTOR and --domain DOMAIN")


def _long_option(opts: Options, word: str, argv: list[str], index: int) -> int:
    """Handle one ``--name`` word; returns the index of the next unread word (``--identity`` takes one)."""
    name, has_value, value = word.partition("=")
    if name == "--identity":
        if not has_value:
            if index >= len(argv):
                raise UsageError("option --identity requires an argument (an identity's address)")
            value, index = argv[index], index + 1
        opts.identity = _identity_name(value, name)
        return index
    if name in _VALUE_OPTIONS:
        if not has_value:
            if index >= len(argv):
                raise UsageError(f"option {name} requires an argument")
            value, index = argv[index], index + 1
        if not value or "\0" in value:
            raise UsageError(f"option {name} requires a non-empty argument")
        setattr(opts, _VALUE_OPTIONS[name], value)
        return index
    if name == "--listen":
        if not has_value:
            if index >= len(argv):
                raise UsageError("option --listen requires an argument ([ADDRESS:]PORT, or systemd)")
            value, index = argv[index], index + 1
        if value != "systemd":
            listen_address(value)
        opts.listen.append(value)
        opts.mode = "listen"
        return index
    if name not in _LONG_OPTIONS and name not in _LONG_FLAGS:
        raise UsageError(f"unknown option {name}")
    if has_value:
        raise UsageError(f"option {name} does not take an argument")
    if name in _LONG_FLAGS:
        setattr(opts, _LONG_FLAGS[name], True)
    else:
        opts.mode = _LONG_OPTIONS[name]
    return index


def listen_address(value: str) -> tuple[str | None, int]:
    """``--listen [ADDRESS:]PORT`` (``[IPv6]:PORT`` for IPv6) → the address (None: every address) and the port."""
    address: str | None
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif ":" in value:
        address, _, port = value.rpartition(":")
    else:
        address, port = None, value
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 or (address and not address.isprintable()):
        raise UsageError(f"--listen {value}: expected [ADDRESS:]PORT, such as 127.0.0.1:2525 or 25, or systemd")
    return address or None, int(port)


def _identity_name(value: str, shown: str) -> str:
    if not value:
        raise UsageError(f"option {shown} requires an argument (an identity's address)")
    reject_unsafe(value, f"identity name ({shown})")
    return value


def _short_options(opts: Options, word: str, argv: list[str], index: int) -> int:
    """Handle one word of grouped short flags; returns the index of the next unread word."""
    pos = 1
    while pos < len(word):
        letter = word[pos]
        pos += 1
        if letter == "q":
            # Optional argument, glued only (GNU "q::"): bare -q is a flush and never eats the next word.
            _queue_option(opts, word[pos:])
            return index
        if letter in _WITH_ARGUMENT:
            if pos < len(word):
                argument, shown = word[pos:], f"-{letter}{word[pos:]}"
            elif index < len(argv):
                # Like getopt, the next word is the argument whatever it looks like (even "--" or "-t").
                argument, shown = argv[index], f"-{letter} {argv[index]}"
                index += 1
            else:
                raise UsageError(f"option -{letter} requires an argument")
            _option_with_argument(opts, letter, argument, shown)
            return index
        if letter not in _WITHOUT_ARGUMENT:
            raise UsageError(f"unknown option -{letter}")
        _flag(opts, letter)
    return index


def _flag(opts: Options, letter: str) -> None:
    if letter == "t":
        opts.read_recipients = True
    elif letter == "v":
        opts.verbose += 1
    elif letter == "I":
        opts.mode = "newaliases"
    elif letter in _IGNORED_WITHOUT_ARGUMENT:
        opts.ignored.append(f"-{letter}")
    # -i: input is always read to end of file, so there is nothing to record.


def _option_with_argument(opts: Options, letter: str, argument: str, shown: str) -> None:
    if letter in "fr":
        opts.sender = parse_sender(argument, letter)
    elif letter == "F":
        reject_unsafe(argument, "full name (-F)")
        opts.full_name = argument
    elif letter == "N":
        opts.notify = _parse_notify(argument)
    elif letter == "R":
        ret = argument.strip().upper()
        if ret not in ("FULL", "HDRS"):
            raise UsageError(f"invalid -R value {argument!r}: use full or hdrs")
        opts.ret = ret
    elif letter == "V":
        opts.envid = _parse_envid(argument)
    elif letter == "B":
        body = argument.strip().upper()
        if body not in ("7BIT", "8BITMIME"):
            raise UsageError(f"Unsupported body type {argument}")
        opts.body_type = body
    elif letter == "a":
        opts.identity = _identity_name(argument, "-a")
    elif letter == "C":
        opts.config_file = _file_name(argument, letter)
    elif letter == "X":
        opts.transcript = _file_name(argument, letter)
    elif letter == "b":
        opts.mode = _operation_mode(argument)
    elif letter == "o" and argument == "i":
        pass  # -oi / -o i are the old spelling of -i
    elif letter in _IGNORED_WITH_ARGUMENT:
        opts.ignored.append(shown)


def _queue_option(opts: Options, argument: str) -> None:
    """``-q``, ``-q<interval>``, ``-qf``, ``-qI<id>``, ``-qR<site>``...: always a flush of the queue now."""
    opts.mode = "flush"
    if argument.startswith("I"):
        if not argument[1:]:
            raise UsageError("option -qI requires a queue id")
        opts.queue_ids.append(_queue_id(argument[1:]))
    elif argument not in ("", "f"):
        # An interval (we are no daemon), or -qR/-qS/-qG/-q!... selections: everything is flushed.
        opts.ignored.append(f"-q{argument}")


def _operation_mode(argument: str) -> Mode:
    """``-b``: like esmtp 1.2, the first character decides; messages quote the whole word."""
    first = argument[:1]
    if first == "m":
        return "deliver"
    if first == "p":
        return "mailq"
    if first == "i":
        return "newaliases"
    if first == "s":
        return "smtp"  # -bs: an SMTP dialogue on stdin/stdout (esmtp.server.dialogue)
    if first and first in _UNSUPPORTED_B_MODES:
        raise UsageError(f"Unsupported operation mode -b{argument}")
    raise UsageError(f"Invalid operation mode -b{argument}")


def _parse_notify(argument: str) -> str:
    """``-N``: "never" or a list of success, failure, delay (commas or spaces, any case)."""
    words = argument.replace(",", " ").split()
    if not words:
        raise UsageError("option -N requires never or a comma-separated list of success, failure, delay")
    chosen: set[str] = set()
    for word in words:
        lowered = word.lower()
        if lowered != "never" and lowered not in _NOTIFY_WORDS:
            raise UsageError(f"invalid -N value {word!r}: use never, or a list of success, failure, delay")
        chosen.add(lowered)
    if "never" in chosen:
        if len(chosen) > 1:
            raise UsageError("-N never cannot be combined with success, failure or delay")
        return "NEVER"
    return ",".join(word.upper() for word in _NOTIFY_WORDS if word in chosen)


def _parse_envid(argument: str) -> str:
    """``-V``: any printable ASCII (space included); the SMTP layer xtext-encodes it."""
    if not argument:
        raise UsageError("option -V requires a non-empty envelope id")
    if any(not " " <= char <= "~" for char in argument):
        raise UsageError(f"invalid -V envelope id {argument!r}: only printable ASCII characters are allowed")
    return argument


def _file_name(argument: str, letter: str) -> str:
    if not argument:
        raise UsageError(f"option -{letter} requires a file name")
    if "\0" in argument:
        raise UsageError(f"file name for -{letter} contains a NUL byte")
    return argument


def _queue_id(word: str) -> str:
    """A queue id names one queue entry: a single word that cannot reach outside the queue directory."""
    if not word or word in (".", "..") or "/" in word or any(char.isspace() or not char.isprintable() for char in word):
        raise UsageError(f"invalid queue id {word!r}")
    return word


def _place_operands(opts: Options, operands: list[str]) -> None:
    """Give the non-option words their meaning in the final mode (the last mode option wins)."""
    if opts.mode in ("flush", "remove"):
        opts.queue_ids.extend(_queue_id(word) for word in operands)
        if opts.mode == "remove" and not opts.queue_ids:
            raise UsageError("--remove requires at least one queue id")
    elif opts.mode == "import-msmtprc":
        if len(operands) > 1:
            raise UsageError("--import-msmtprc takes at most one file name")
        opts.msmtprc = _file_name(operands[0], "-import-msmtprc") if operands else None
    elif opts.mode == "deliver":
        for word in operands:
            opts.recipients.extend(parse_recipients(word))
        if not opts.recipients and not opts.read_recipients and not opts.pretend:
            raise UsageError("Recipient names must be specified")
    elif opts.mode == "check":
        for word in operands:  # the addresses whose identity --check explains
            opts.recipients.extend(parse_recipients(word))
    else:
        opts.ignored.extend(operands)  # esmtp 1.2 accepted and ignored them (mailq bob@x lists the queue)
