"""The esmtprc configuration: esmtp 1.2's grammar, file search order and permission checks, plus extension keywords.

Reading: ``-C file``, else ``~/.esmtprc`` (regular file, owned by the user, no group/other bits but g+x), else
``/etc/esmtprc``. Only one file is read. See docs/configuration.md for the grammar and every keyword.

Start-up path: this module imports only ``dataclasses``, ``typing``, ``os`` and ``stat`` (``socket`` only when a
``hostname`` names its port by service name).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from .errors import ConfigError, ConfigNotFound

if TYPE_CHECKING:
    from collections.abc import Iterable

StartTLS = Literal["disabled", "enabled", "required"]
Scope = Literal["identity", "global"]

#: Port used when an identity has no ``hostname`` at all (esmtp connects to localhost:25).
LOCALHOST = ("localhost", 25)


@dataclass(frozen=True, slots=True)
class KeywordSpec:
    """An extension keyword (core or plugin-registered): ``name [=] value``.

    ``choices`` restricts the value (compared case-sensitively, like esmtp's own keywords); ``scope`` says whether the
    value belongs to the identity block it appears in or to the whole file (like ``mda``).
    """

    name: str
    scope: Scope = "identity"
    choices: tuple[str, ...] | None = None
    help: str = ""
    secret: bool = False


@dataclass(slots=True)
class Identity:
    """One identity block (``address`` is None for the anonymous global section)."""

    address: str | None
    hostname: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: StartTLS = "disabled"
    certificate_passphrase: str | None = field(default=None, repr=False)
    preconnect: str | None = None
    postconnect: str | None = None
    qualifydomain: str | None = None
    helo: str | None = None
    force_reverse_path: str | None = None
    force_sender: str | None = None
    message_id: bool = True
    #: Extension keywords set in this block (core extensions such as ``smtps`` and plugin-registered ones).
    options: dict[str, str] = field(default_factory=dict)
    #: Where the block starts, for error messages.
    source: str = ""
    lineno: int = 0
    #: The line of each extension keyword set in this block (``where`` in messages).
    lines: dict[str, int] = field(default_factory=dict)

    def server(self, default_port: int) -> tuple[str, int]:
        """The ``(host, port)`` to connect to.

        No ``hostname`` means ``localhost`` port 25, as in esmtp; a hostname without a port gets ``default_port``.
        IPv6 addresses come without their brackets. Raises ConfigError for a malformed hostname (parse_config has
        already rejected those for identities read from a file).
        """
        if self.hostname is None:
            return LOCALHOST
        try:
            host, port = parse_hostname(self.hostname)
        except ValueError as error:
            where = f"{self.source}:{self.lineno}: " if self.source else ""
            raise ConfigError(f"{where}{error}") from None
        return host, default_port if port is None else port


@dataclass(slots=True)
class Statement:
    """An extension-keyword statement as read, before plugins have said which keywords exist."""

    keyword: str
    value: str
    lineno: int
    identity: Identity


@dataclass(slots=True)
class Config:
    """A parsed configuration file.

    ``identities`` lists every block in file order; the first is the anonymous global section (address None).
    """

    path: str | None
    identities: list[Identity]
    default: Identity
    mda: str | None = None
    force_mda: str | None = None
    #: Global-scope extension keywords.
    options: dict[str, str] = field(default_factory=dict)
    #: Extension statements not yet checked against the registered keywords (see :meth:`resolve_extensions`).
    pending: list[Statement] = field(default_factory=list)
    #: The line of each global extension keyword.
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, keyword: str, identity: Identity | None = None) -> str:
        """``file:line`` of the statement that set ``keyword`` (globally, or in ``identity``), for messages."""
        lines = self.lines if identity is None else identity.lines
        line = lines.get(keyword) or (identity.lineno if identity is not None else 0)
        return f"{self.path or 'config'}:{line}" if line else self.path or "config"

    def identity_for(self, sender: str | None) -> Identity:
        """The identity for mail from ``sender``; the rule is in :mod:`esmtp.identities`."""
        from .identities import choose_identity

        return choose_identity(self, sender).identity

    def resolve_extensions(self, specs: Iterable[KeywordSpec]) -> None:
        """Check pending extension statements against ``specs`` and store their values.

        Raises ConfigError naming the file and line for an unknown keyword or a value outside ``choices``.
        """
        known = {spec.name: spec for spec in specs}
        for statement in self.pending:
            spec = known.get(statement.keyword)
            where = f"{self.path or 'config'}:{statement.lineno}"
            if spec is None:
                hint = _UNKNOWN_HINTS.get(statement.keyword, "")
                raise ConfigError(f"{where}: unknown keyword '{statement.keyword}'{hint}")
            if spec.choices is not None and statement.value not in spec.choices:
                allowed = ", ".join(spec.choices)
                raise ConfigError(
                    f"{where}: '{statement.keyword}' takes one of {allowed}, not '{statement.value}'"
                )
            target = self.options if spec.scope == "global" else statement.identity.options
            target[statement.keyword] = statement.value
            (self.lines if spec.scope == "global" else statement.identity.lines)[statement.keyword] = statement.lineno
        self.pending.clear()


#: Extension keywords the core itself understands (plugins add more through ``esmtp_config_keywords``).
CORE_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("auth_mechanisms", help="allowed SASL mechanisms in order of preference"),
    KeywordSpec("auth_plaintext", choices=("enabled", "disabled"), help="allow PLAIN/LOGIN without TLS"),
    KeywordSpec("smtps", choices=("enabled", "disabled"), help="implicit TLS from the first byte (port 465)"),
    KeywordSpec("tls_min_version", choices=("1.0", "1.1", "1.2", "1.3"), help="lowest TLS version accepted"),
    KeywordSpec("tls_fingerprint", help="pin the server certificate: SHA256:AB:CD:..."),
    KeywordSpec("timeout", help="seconds to wait for the server at each step (default 60)"),
    KeywordSpec("disable_plugins", scope="global", help="comma or space separated plugin names not to load"),
    KeywordSpec("logfile", help="append one line per delivery attempt to this file (global or per identity)"),
    KeywordSpec("logfile_format", choices=("text", "json"), help="key=value words (text) or JSON lines"),
    KeywordSpec("syslog", choices=(
        "enabled", "disabled", "mail", "user", "daemon", *(f"local{n}" for n in range(8)),
        "LOG_MAIL", "LOG_USER", "LOG_DAEMON", *(f"LOG_LOCAL{n}" for n in range(8)),
    ), help="log delivery attempts to syslog: enabled (facility mail) or a facility"),
)

_CORE = {spec.name: spec for spec in CORE_KEYWORDS}

# ---- the grammar's vocabulary ----------------------------------------------------------------------------------------

#: esmtp 1.2's string-valued per-identity keywords (with their aliases) → the Identity field they set.
_STRING_FIELDS = {
    "hostname": "hostname", "host": "hostname",
    "username": "username", "user": "username",
    "password": "password", "pass": "password",
    "certificate_passphrase": "certificate_passphrase", "passphrase": "certificate_passphrase",
    "preconnect": "preconnect",
    "postconnect": "postconnect",
    "qualifydomain": "qualifydomain",
    "helo": "helo",
}
_STARTTLS = ("disabled", "enabled", "required")
_MESSAGE_ID = ("enabled", "disabled")
#: Every word esmtp 1.2's lexer treats as a keyword; none of them can be an extension keyword.
_ESMTP_WORDS = frozenset(
    [*_STRING_FIELDS, "identity", "tls", "starttls", "force", "reverse_path", "sender", "message_id", "mda",
     "force_mda", "disabled", "enabled", "required", "default"]
)
_QUOTE_HINT = "if it belongs to the value before it, put that value in quotes"
_UNKNOWN_HINTS = {
    "port": " (write the port in hostname: hostname mail.example.org:587)",
    "server": " (the keyword is hostname: hostname mail.example.org:587)",
    "from": " (use an identity block, or force reverse_path)",
}

#: Characters that end an unquoted word (``;`` and ``,`` are plain separators, as in esmtp minus the echo).
_WORD_END = " \t\r\n;,"
#: What may directly follow a closing quote.
_AFTER_QUOTE = _WORD_END + "#="
_SIMPLE_ESCAPES = {ord("\\"): 0x5C, ord("n"): 0x0A, ord("t"): 0x09, ord("b"): 0x08, ord("r"): 0x0D}
_HEX = "0123456789abcdefABCDEF"
_OCTAL = "01234567"


# ---- hostname --------------------------------------------------------------------------------------------------------


def parse_hostname(value: str) -> tuple[str, int | None]:
    """Split a ``hostname`` value: ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``.

    The port is a number (1-65535) or an /etc/services name; None when absent. Raises ValueError explaining the
    problem.
    """
    if not value:
        raise ValueError("hostname is empty")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"hostname '{value}' has no ']' after the IPv6 address")
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"hostname '{value}': only ':port' may follow ']'")
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = value.partition(":")
        port = port_text if colon else None
        if port is not None and ":" in port:
            raise ValueError(
                f"hostname '{value}' has more than one ':'; write an IPv6 address in brackets: [2001:db8::1]:587"
            )
    if not host:
        raise ValueError(f"hostname '{value}' has no host name")
    if any(c.isspace() or c in "[]" for c in host):
        raise ValueError(f"hostname '{value}' is not a host name")
    if port is None:
        return host, None
    return host, _port_number(value, port)


def _port_number(value: str, port: str) -> int:
    if not port:
        raise ValueError(f"hostname '{value}' has nothing after ':'; give a port number or leave out the ':'")
    if port.isascii() and port.isdigit():
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError(f"hostname '{value}': port {port} is not between 1 and 65535")
        return number
    import socket  # only for service names: most files give a number or no port

    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise ValueError(f"hostname '{value}': '{port}' is neither a port number nor a service name") from None


# ---- lexer -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["word", "quoted", "eq", "eof"]
    raw: str  # as written (between the quotes for "quoted"); keywords are matched on this, before escapes
    text: str  # the value after escape processing
    lineno: int
    first_on_line: bool  # no newline (other than a backslash-newline) since the previous token


class _Lexer:
    """Tokens of esmtprc text. Newlines are only separators (plus line counting), as in esmtp's flex lexer."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text.removeprefix("\ufeff").replace("\r\n", "\n")
        self.where = where
        self.pos = 0
        self.lineno = 1
        self.new_line = True

    def error(self, lineno: int, message: str) -> ConfigError:
        return ConfigError(f"{self.where}:{lineno}: {message}")

    def _skip(self) -> None:
        """Skip whitespace, ``;``, ``,``, comments and backslash-newlines."""
        text, end = self.text, len(self.text)
        while self.pos < end:
            c = text[self.pos]
            if c == "\n":
                self.lineno += 1
                self.new_line = True
                self.pos += 1
            elif c in " \t\r;,":
                self.pos += 1
            elif c == "#":  # only at the start of a token: inside a word it is part of the word
                newline = text.find("\n", self.pos)
                self.pos = end if newline < 0 else newline
            elif c == "\\" and text.startswith("\n", self.pos + 1):
                self.lineno += 1
                self.pos += 2
            else:
                break

    def skip_eq(self) -> None:
        """Consume the optional ``=`` between a keyword and its value."""
        self._skip()
        if self.text.startswith("=", self.pos):
            self.pos += 1

    def token(self, *, value: bool, comma: bool = False) -> _Token:
        """The next token.

        In ``value`` position an unquoted word may contain ``=`` (after its first character); with ``comma`` (the value
        of an extension keyword, which may be a list) it may contain ``,``.
        """
        self._skip()
        first, self.new_line = self.new_line, False
        lineno, text, start = self.lineno, self.text, self.pos
        if start >= len(text):
            return _Token("eof", "", "", lineno, first)
        c = text[start]
        if c == "=":
            self.pos += 1
            return _Token("eq", "=", "=", lineno, first)
        if c in "\"'":
            close = text.find(c, start + 1)
            if close < 0:
                raise self.error(lineno, f"unterminated quoted string: the {c} opened here is never closed")
            raw = text[start + 1 : close]
            self.lineno += raw.count("\n")
            self.pos = close + 1
            if self.pos < len(text) and text[self.pos] not in _AFTER_QUOTE and not text.startswith("\\\n", self.pos):
                raise self.error(
                    self.lineno, "text directly after a closing quote; put a space after the quote or quote it all"
                )
            return _Token("quoted", raw, self._unescape(raw, lineno), lineno, first)
        pos, end = start, len(text)
        while pos < end:
            c = text[pos]
            if c == "\\":  # escapes the next character, even a separator; backslash-newline continues the word
                if text.startswith("\n", pos + 1):
                    self.lineno += 1
                pos += 2
                continue
            if (c in _WORD_END and not (c == "," and comma)) or (c == "=" and not value):
                break
            pos += 1
        self.pos = min(pos, end)
        raw = text[start : self.pos].replace("\\\n", "")  # keywords are matched on this: joined, not unescaped
        return _Token("word", raw, self._unescape(raw, lineno), lineno, first)

    def _unescape(self, raw: str, lineno: int) -> str:
        """esmtp's escapes, on bytes so that ``\\xC3\\xA9`` makes one UTF-8 character; octal is really octal."""
        if "\\" not in raw:
            return raw
        data = raw.encode("utf-8", "surrogateescape")
        out = bytearray()
        i, end = 0, len(data)
        while i < end:
            byte = data[i]
            i += 1
            if byte != 0x5C:
                out.append(byte)
                continue
            if i == end:  # a trailing lone backslash stays what it is
                out.append(byte)
                break
            escaped = data[i]
            i += 1
            if escaped == 0x0A:  # backslash-newline: the line continues
                continue
            if escaped in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[escaped])
            elif escaped == ord("x") and i < end and chr(data[i]) in _HEX:
                digits = 2 if i + 1 < end and chr(data[i + 1]) in _HEX else 1
                out.append(int(data[i : i + digits], 16))
                i += digits
            elif chr(escaped) in _OCTAL:
                # \0ooo (esmtp's octal form) and \ooo: up to three octal digits after the leading 0, else three
                start = i if escaped == ord("0") else i - 1
                stop = start
                while stop < end and stop - start < 3 and chr(data[stop]) in _OCTAL:
                    stop += 1
                number = int(data[start:stop] or b"0", 8)
                if number > 0o377:
                    written = data[i - 2 : stop].decode("ascii")
                    line = lineno + data[:i].count(b"\n")
                    raise self.error(line, f"octal escape '{written}' is larger than \\377 (one byte)")
                out.append(number)
                i = stop
            else:  # any other \c is c
                out.append(escaped)
        return out.decode("utf-8", "surrogateescape")


# ---- parser ----------------------------------------------------------------------------------------------------------


def _is_name(word: str) -> bool:
    """An extension keyword looks like esmtp's own: ASCII letters, digits, ``_`` and ``-``, starting with a letter."""
    return word[:1].isalpha() and word.isascii() and word.replace("_", "").replace("-", "").isalnum()


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


class _Parser:
    def __init__(self, text: str, path: str | None) -> None:
        self.where = path or "config"
        self.lexer = _Lexer(text, self.where)
        self.current = Identity(address=None, source=self.where, lineno=1)
        self.config = Config(path=path, identities=[self.current], default=self.current)
        self.default: Identity | None = None

    def error(self, lineno: int, message: str) -> ConfigError:
        return self.lexer.error(lineno, message)

    def value(self, keyword: _Token, what: str = "a value") -> _Token:
        """The value after ``keyword [=]``: any token, even one that spells a keyword."""
        self.lexer.skip_eq()
        token = self.lexer.token(value=True)
        if token.kind == "eof":
            raise self.error(keyword.lineno, f"'{keyword.raw}' needs {what}")
        if token.kind == "eq":
            raise self.error(token.lineno, f"unexpected second '=' after '{keyword.raw}'")
        return token

    def choice(self, keyword: _Token, choices: tuple[str, ...]) -> str:
        token = self.value(keyword, f"one of {_either(choices)}")
        if token.text not in choices:
            raise self.error(token.lineno, f"{keyword.raw} takes {_either(choices)}, not '{token.text}'")
        return token.text

    def per_identity(self) -> None:
        """esmtp's SET_DEFAULT_IDENTITY: the first block with a statement becomes the default."""
        if self.default is None:
            self.default = self.current

    def parse(self) -> Config:
        while True:
            token = self.lexer.token(value=False)
            if token.kind == "eof":
                break
            if token.kind == "eq":
                raise self.error(token.lineno, "unexpected '=' where a keyword should be")
            if token.kind == "quoted":
                raise self.error(token.lineno, "a quoted string where a keyword should be")
            self.statement(token)
        self.config.default = self.default or self.current
        return self.config

    def statement(self, keyword: _Token) -> None:
        word = keyword.raw
        identity = self.current
        if word in _STRING_FIELDS:
            name = _STRING_FIELDS[word]
            token = self.value(keyword)
            if name == "hostname":
                try:
                    parse_hostname(token.text)
                except ValueError as error:
                    raise self.error(token.lineno, str(error)) from None
            setattr(identity, name, token.text)
            self.per_identity()
        elif word in ("starttls", "tls"):
            identity.starttls = cast(StartTLS, self.choice(keyword, _STARTTLS))
            self.per_identity()
        elif word == "message_id":
            identity.message_id = self.choice(keyword, _MESSAGE_ID) == "enabled"
            self.per_identity()
        elif word == "force":
            self.force(keyword)
            self.per_identity()
        elif word == "identity":
            address = self.value(keyword, "an address").text
            self.current = Identity(address=address, source=self.where, lineno=keyword.lineno)
            self.config.identities.append(self.current)
        elif word == "default":
            self.default = identity
        elif word == "mda":
            self.config.mda = self.value(keyword, "a command").text
        elif word == "force_mda":
            self.config.force_mda = self.value(keyword).text
        else:
            self.extension(keyword)

    def force(self, keyword: _Token) -> None:
        what = self.lexer.token(value=False)
        if what.kind == "eof":
            raise self.error(keyword.lineno, "'force' needs 'reverse_path' or 'sender' after it")
        if what.raw == "reverse_path":
            self.current.force_reverse_path = self.value(what).text
        elif what.raw == "sender":
            self.current.force_sender = self.value(what).text
        else:
            raise self.error(what.lineno, f"'force' must be followed by 'reverse_path' or 'sender', not '{what.raw}'")

    def extension(self, keyword: _Token) -> None:
        word = keyword.raw
        if word in ("reverse_path", "sender"):
            raise self.error(keyword.lineno, f"'{word}' only comes after 'force' (force {word} ADDRESS)")
        if word in ("force_reverse_path", "force_sender"):
            raise self.error(keyword.lineno, f"'{word}' is two words: force {word[6:]} ADDRESS")
        if word in _ESMTP_WORDS:  # enabled, disabled, required
            raise self.error(keyword.lineno, f"'{word}' is a value, but a keyword should be here")
        lower = word.lower()
        if lower != word and (lower in _ESMTP_WORDS or lower in _CORE):
            raise self.error(keyword.lineno, f"keywords are lower case: write '{lower}', not '{word}'")
        if not _is_name(word):
            raise self.error(keyword.lineno, f"'{word}' is not a keyword ({_QUOTE_HINT})")
        # Extension statements, which esmtp 1.2 did not have, keep their value on the keyword's line: a misspelt
        # keyword then cannot swallow the next statement.
        self.lexer.skip_eq()
        token = self.lexer.token(value=True, comma=True)
        spec = _CORE.get(word)
        if token.kind == "eof" or token.first_on_line:
            if spec is not None:
                raise self.error(keyword.lineno, f"'{word}' needs a value on the same line")
            if not keyword.first_on_line:
                raise self.error(keyword.lineno, f"'{word}' is not a keyword ({_QUOTE_HINT})")
            raise self.error(
                keyword.lineno, f"unknown keyword '{word}' (a plugin's keyword needs a value on the same line)"
            )
        if token.kind == "eq":
            raise self.error(token.lineno, f"unexpected second '=' after '{word}'")
        value = token.text
        if spec is None:
            self.config.pending.append(Statement(word, value, keyword.lineno, self.current))
            return
        if spec.choices is not None and value not in spec.choices:
            raise self.error(token.lineno, f"'{word}' takes one of {', '.join(spec.choices)}, not '{value}'")
        if word == "timeout" and not _positive_number(value):
            raise self.error(token.lineno, f"'timeout' takes a number of seconds greater than 0, not '{value}'")
        target = self.config.options if spec.scope == "global" else self.current.options
        target[word] = value


def _positive_number(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return 0 < number < float("inf")


def parse_config(text: str, path: str | None) -> Config:
    """Parse esmtprc ``text``; ``path`` is used in error messages. Extension keywords end up in ``pending``.

    Core extension keywords (:data:`CORE_KEYWORDS`) are checked and stored at once; other ``name [=] value``
    statements wait in ``Config.pending`` for :meth:`Config.resolve_extensions`. Raises ConfigError
    ``"<path>:<line>: <explanation>"``.
    """
    return _Parser(text, path).parse()


# ---- finding the file ------------------------------------------------------------------------------------------------


def _read(path: str, flags: int = 0) -> str:
    """The file's text (UTF-8; undecodable bytes survive as surrogates). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | flags)
    with open(fd, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape")


def _open_error(path: str, error: OSError) -> ConfigError:
    return ConfigError(f"open: {path}: {error.strerror or error}")


def _check_user_file(path: str) -> bool:
    """esmtp's rcfile_check: False when the file does not exist; ConfigError when it may not be used."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise ConfigError(f"lstat: {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"File {path} must be a regular file.")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o067:
        raise ConfigError(
            f"File {path} must not be readable or writable by others (it may hold a password), but its mode is "
            f"{mode:04o}. Fix it with: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():
        raise ConfigError(f"File {path} must be owned by you.")
    return True


def load_config(cli_path: str | None, *, home: str | None = None, system_path: str = "/etc/esmtprc") -> Config:
    """Find and read the configuration as esmtp 1.2 does (``-C``, ``~/.esmtprc`` with checks, ``/etc/esmtprc``).

    ``home`` defaults to ``$HOME``. Raises ConfigNotFound (exit 78) when there is no file at all, ConfigError for a
    file that cannot be opened, fails the permission checks or does not parse.
    """
    if cli_path is not None:
        try:
            text = _read(cli_path)
        except OSError as error:
            raise _open_error(cli_path, error) from None
        return parse_config(text, cli_path)
    if home is None:
        home = os.environ.get("HOME")
    user_path = None
    if home:
        user_path = home + ("" if home.endswith("/") else "/") + ".esmtprc"
        if _check_user_file(user_path):
            try:
                # O_NOFOLLOW: the file checked above cannot have been swapped for a symlink since.
                return parse_config(_read(user_path, os.O_NOFOLLOW), user_path)
            except FileNotFoundError:
                pass
            except OSError as error:
                raise _open_error(user_path, error) from None
    try:
        return parse_config(_read(system_path), system_path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _open_error(system_path, error) from None
    if user_path is None:
        raise ConfigNotFound(f"No configuration file found at {system_path} (HOME is not set, so no ~/.esmtprc)")
    raise ConfigNotFound(f"No configuration file found at {user_path} or {system_path}")
