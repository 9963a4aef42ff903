"""The esmtprc grammar: esmtp 1.2's lexer and parser, turning file text into a :class:`~esmtp.config.model.Config`.

See docs/configuration.md for the grammar and every keyword. Imports nothing beyond what :mod:`esmtp.config.model` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from esmtp.config.durations import hint, spelled_out
from esmtp.config.model import CORE_KEYWORDS, Config, Identity, StartTLS, Statement, parse_hostname, secret_error
from esmtp.errors import ConfigError

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
#: Every word esmtp 1.2's lexer treats as a keyword, and ``defaults``; none of them can be an extension keyword.
_ESMTP_WORDS = frozenset(
    [*_STRING_FIELDS, "identity", "tls", "starttls", "force", "reverse_path", "sender", "message_id", "mda",
     "force_mda", "disabled", "enabled", "required", "default", "defaults"]
)
_QUOTE_HINT = "if it belongs to the value before it, put that value in quotes"
#: Keywords whose value is a secret: an error on their statement, or after it on its line, never shows a word of it.
SECRET_KEYWORDS = frozenset(["password", "pass", "certificate_passphrase", "passphrase"])
#: Parts of a plugin keyword's name that mark it secret for error messages, before plugins are loaded (a plugin
#: declares its secret keywords with ``KeywordSpec(secret=True)`` and names them so: docs/plugins.md).
_SECRET_NAME_PARTS = ("password", "passphrase", "secret", "token")


def looks_secret(keyword: str) -> bool:
    """Whether errors about ``keyword``'s statement must hide its words."""
    return keyword in SECRET_KEYWORDS or any(part in keyword for part in _SECRET_NAME_PARTS)


#: Characters that end an unquoted word (``;`` and ``,`` are plain separators, as in esmtp minus the echo).
_WORD_END = " \t\r\n;,"
#: What may directly follow a closing quote.
_AFTER_QUOTE = _WORD_END + "#="
_SIMPLE_ESCAPES = {ord("\\"): 0x5C, ord("n"): 0x0A, ord("t"): 0x09, ord("b"): 0x08, ord("r"): 0x0D}
_HEX = "0123456789abcdefABCDEF"
_OCTAL = "01234567"


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
        #: The last secret statement's keyword, and the lines from its keyword to the end of its value (0: not yet
        #: read). Errors there are masked (:meth:`error`), whichever part of the text they are about.
        self.secret = ""
        self.secret_from = self.secret_until = 0

    def error(self, lineno: int, message: str) -> ConfigError:
        if self.masks(lineno):
            return ConfigError(f"{self.where}:{lineno}: {secret_error(self.secret)}")
        return ConfigError(f"{self.where}:{lineno}: {message}")

    def masks(self, lineno: int) -> bool:
        """Whether ``lineno`` holds (part of) the last secret value: the line or lines of its statement."""
        return bool(self.secret) and self.secret_from <= lineno and (self.secret_until or lineno) >= lineno

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

    def list_follows(self) -> bool:
        """Whether a ``,`` follows the value just read on its line (spaces and tabs between): the value is a list
        (``identity a@example.org, *@example.org``). Consumes the comma."""
        pos, text = self.pos, self.text
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text.startswith(",", pos):
            self.pos = pos + 1
            return True
        return False

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


#: The TLS modes a server of a ``hostname`` list may name after a ``/``.
_SERVER_TLS = ("smtps", "starttls")


def _is_keyword(word: str) -> bool:
    """A word after a ``hostname``'s comma that starts the next statement: a keyword esmtp knows, or a name with
    ``_`` (which a host name cannot have), such as a plugin's keyword."""
    return word in _STRING_FIELDS or word in _ESMTP_WORDS or word in _CORE or "_" in word


def _wild(word: str) -> bool:
    """A shell-style pattern (as :func:`esmtp.config.identities.is_pattern`, without importing it)."""
    return any(char in word for char in "*?[")


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


class _Parser:
    def __init__(self, text: str, path: str | None) -> None:
        self.where = path or "config"
        self.lexer = _Lexer(text, self.where)
        self.current = Identity(address=None, source=self.where, lineno=1)
        self.config = Config(path=path, identities=[self.current], default=self.current)
        self.default: Identity | None = None
        #: The block before the ``defaults`` section began, while its statements are read (None: not in it).
        self.in_defaults = False
        #: The last extension statement (keyword, value), to explain a duration written in two words.
        self.previous: tuple[str, str] = ("", "")

    def error(self, lineno: int, message: str) -> ConfigError:
        return self.lexer.error(lineno, message)

    def value(self, keyword: _Token, what: str = "a value") -> _Token:
        """The value after ``keyword [=]``: any token, even one that spells a keyword."""
        secret = keyword.raw in SECRET_KEYWORDS
        if secret:
            self.lexer.secret, self.lexer.secret_from, self.lexer.secret_until = keyword.raw, keyword.lineno, 0
        self.lexer.skip_eq()
        token = self.lexer.token(value=True)
        if secret:
            self.lexer.secret_until = self.lexer.lineno
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
        if self.default is None and not self.in_defaults:
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
        if self.config.defaults is not None:
            self.inherit(self.config.defaults)
        if any(_wild(address) for identity in self.config.identities for address in identity.addresses):
            from esmtp.config.identities import check_ties

            check_ties(self.config)
        return self.config

    def inherit(self, defaults: Identity) -> None:
        """Give every identity the ``defaults`` section's statements that it does not make itself.

        The global section inherits too when it is used (it is the default identity, or sets something itself).
        """
        pending = {(id(statement.identity), statement.keyword) for statement in self.config.pending}
        inherited = [statement for statement in self.config.pending if statement.identity is defaults]
        for identity in self.config.identities:
            if identity.address is None and identity is not self.config.default and not identity.lines:
                continue
            for name, line in defaults.lines.items():
                if name in identity.lines:
                    continue
                identity.lines[name] = line
                if name in defaults.options:
                    identity.options[name] = defaults.options[name]
                else:
                    setattr(identity, name, getattr(defaults, name))
                if name == "hostname":
                    identity.servers = list(defaults.servers)
            for statement in inherited:
                if (id(identity), statement.keyword) not in pending:
                    self.config.pending.append(Statement(statement.keyword, statement.value, statement.lineno,
                                                         identity, statement.after_secret))

    def statement(self, keyword: _Token) -> None:
        word = keyword.raw
        identity = self.current
        if word in _STRING_FIELDS:
            name = _STRING_FIELDS[word]
            token = self.value(keyword)
            following: _Token | None = None
            if name == "hostname":
                servers = [self.server(token)]
                while self.lexer.list_follows():
                    item = self.lexer.token(value=False)
                    if item.kind == "word" and _is_keyword(item.raw):
                        following = item  # esmtp 1.2 read ',' as a space: "hostname h, username u" stays valid
                        break
                    if item.kind not in ("word", "quoted"):
                        raise self.error(item.lineno, "'hostname' needs a server after ','")
                    servers.append(self.server(item))
                identity.servers = servers if len(servers) > 1 or servers[0][1] is not None else []
                setattr(identity, name, servers[0][0])
            else:
                setattr(identity, name, token.text)
            identity.lines[name] = keyword.lineno
            self.per_identity()
            if following is not None:
                self.statement(following)
        elif word in ("starttls", "tls"):
            identity.starttls = cast(StartTLS, self.choice(keyword, _STARTTLS))
            identity.lines["starttls"] = keyword.lineno
            self.per_identity()
        elif word == "message_id":
            identity.message_id = self.choice(keyword, _MESSAGE_ID) == "enabled"
            identity.lines["message_id"] = keyword.lineno
            self.per_identity()
        elif word == "force":
            self.force(keyword)
            self.per_identity()
        elif word == "identity":
            addresses = [self.value(keyword, "an address").text]
            after: _Token | None = None
            while self.lexer.list_follows():
                token = self.lexer.token(value=False)
                if token.kind == "word" and "@" not in token.text and not _wild(token.text):
                    after = token  # esmtp 1.2 read ',' as a space: "identity a@x, hostname h" stays valid
                    break
                if token.kind not in ("word", "quoted"):
                    raise self.error(token.lineno, "'identity' needs an address after ','")
                addresses.append(token.text)
            self.current = Identity(address=addresses[0], source=self.where, lineno=keyword.lineno,
                                    addresses=addresses)
            self.config.identities.append(self.current)
            self.in_defaults = False
            if after is not None:
                self.statement(after)
        elif word == "defaults":
            if not keyword.first_on_line:
                raise self.error(keyword.lineno, "'defaults' starts the defaults section: put it on a line of its own")
            if self.config.defaults is None:
                self.config.defaults = Identity(address=None, source=self.where, lineno=keyword.lineno)
            self.current = self.config.defaults
            self.in_defaults = True
        elif word == "default":
            if self.in_defaults:
                raise self.error(keyword.lineno, "'default' marks an identity as the default one; it cannot be in "
                                                 "the 'defaults' section (whose statements every identity inherits)")
            self.default = identity
        elif word == "mda":
            self.config.mda = self.value(keyword, "a command").text
        elif word == "force_mda":
            self.config.force_mda = self.value(keyword).text
        else:
            self.extension(keyword)

    def server(self, token: _Token) -> tuple[str, str | None]:
        """One entry of a ``hostname`` list: ``host[:port]``, with ``/smtps`` or ``/starttls`` after it for a TLS mode
        of its own."""
        host, slash, mode = token.text.rpartition("/") if "/" in token.text else (token.text, "", "")
        if slash and mode not in _SERVER_TLS:
            raise self.error(token.lineno, f"hostname '{token.text}': after '/' comes smtps (implicit TLS) or "
                                           f"starttls (STARTTLS required), not '{mode}'")
        try:
            parse_hostname(host)
        except ValueError as error:
            raise self.error(token.lineno, str(error)) from None
        return host, mode or None

    def force(self, keyword: _Token) -> None:
        what = self.lexer.token(value=False)
        if what.kind == "eof":
            raise self.error(keyword.lineno, "'force' needs 'reverse_path' or 'sender' after it")
        if what.raw == "reverse_path":
            self.current.force_reverse_path = self.value(what).text
            self.current.lines["force_reverse_path"] = keyword.lineno
        elif what.raw == "sender":
            self.current.force_sender = self.value(what).text
            self.current.lines["force_sender"] = keyword.lineno
        else:
            raise self.error(what.lineno, f"'force' must be followed by 'reverse_path' or 'sender', not '{what.raw}'")

    def extension(self, keyword: _Token) -> None:
        word = keyword.raw
        if not keyword.first_on_line:
            self.two_word_duration(keyword)
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
        secret = looks_secret(word)
        if secret:  # (plugins' specs are not known yet: the name tells)
            self.lexer.secret, self.lexer.secret_from, self.lexer.secret_until = word, keyword.lineno, 0
        self.lexer.skip_eq()
        token = self.lexer.token(value=True, comma=True)
        if secret:
            same_line = token.kind != "eof" and not token.first_on_line
            self.lexer.secret_until = self.lexer.lineno if same_line else keyword.lineno
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
            after_secret = self.lexer.secret if self.lexer.masks(keyword.lineno) else ""
            self.config.pending.append(Statement(word, value, keyword.lineno, self.current, after_secret))
            self.previous = (word, value)
            return
        if spec.choices is not None and value not in spec.choices:
            raise self.error(token.lineno, f"'{word}' takes one of {', '.join(spec.choices)}, not '{value}'")
        if word in ("timeout", "relay_daemon_idle") and not _positive_number(value):
            raise self.error(token.lineno, f"'{word}' takes a number of seconds greater than 0, not '{value}'"
                                           f"{hint(value, seconds_only=True)}")
        problem = _network_value(word, value)
        if problem:
            raise self.error(token.lineno, problem)
        if word == "tls_fingerprint":
            from esmtp.config.fingerprints import parse_fingerprint

            try:
                parse_fingerprint(value)
            except ConfigError as error:
                raise self.error(token.lineno, str(error)) from None
        self.previous = (word, value)
        target = self.config.options if spec.scope == "global" else self.current.options
        target[word] = value
        (self.config.lines if spec.scope == "global" else self.current.lines)[word] = keyword.lineno

    def two_word_duration(self, keyword: _Token) -> None:
        """``timeout 5 minutes``: the unit is read as the next keyword; say how to write the duration."""
        previous, value = self.previous
        found = spelled_out(value, keyword.raw) if previous else None
        if found is not None:
            short, seconds = found
            written = f"{seconds:g}" if previous in ("timeout", "relay_daemon_idle") else short
            raise self.error(keyword.lineno, f"'{previous} {value} {keyword.raw}': a duration is one word here: "
                                             f"write '{previous} {written}'")


def _network_value(word: str, value: str) -> str:
    """What is wrong with a ``source_ip`` or ``proxy_port`` value (empty: nothing, or another keyword)."""
    if word == "proxy_port" and not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
        return f"'proxy_port' takes a port number (1-65535), not '{value}'"
    if word == "rate_limit":
        from esmtp.smtp.ratelimit import parse_rate_limit

        try:
            parse_rate_limit(value)
        except ValueError as error:
            return str(error)
        return ""
    if word == "source_ip":
        import socket  # only for files that set it

        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, value)
            except OSError:
                continue
            return ""
        return f"'source_ip' takes an IPv4 or IPv6 address (such as 192.0.2.10 or 2001:db8::10), not '{value}'"
    return ""


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
