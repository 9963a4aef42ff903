"""The esmtprc model: identities, extension keywords, server addresses and their default ports.

The grammar (lexer and parser) is in :mod:`esmtp.config.parser`; finding and reading the file in
:mod:`esmtp.config.files`. See docs/configuration.md for the grammar and every keyword.

Start-up path: this module imports only ``dataclasses``, ``typing``, ``os``, ``stat`` and the records of
:mod:`esmtp.types` (``socket`` only when a ``hostname`` names its port by service name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from esmtp.errors import ConfigError
from esmtp.types import KeywordSpec as KeywordSpec  # re-exported: plugins written before it moved import it from here

if TYPE_CHECKING:
    from collections.abc import Iterable

StartTLS = Literal["disabled", "enabled", "required"]

#: Port used when an identity has no ``hostname`` at all (esmtp connects to localhost:25).
LOCALHOST = ("localhost", 25)
#: Port when ``hostname`` has none: submission (587), or 465 with ``smtps enabled``.
SUBMISSION_PORT = 587
SMTPS_PORT = 465
#: syslog facilities by the names ``syslog`` accepts (also as LOG_MAIL, LOG_LOCAL0...).
FACILITIES = ("mail", "user", "daemon", *(f"local{n}" for n in range(8)))
SYSLOG_CHOICES = ("enabled", "disabled", *FACILITIES, *(f"LOG_{name.upper()}" for name in FACILITIES))


@dataclass(slots=True)
class Identity:
    """One identity block (``address`` is None for the anonymous global section, and for the ``defaults`` section).

    ``address`` is the block's name, the first address of its ``identity`` line; ``addresses`` holds them all,
    shell-style patterns included (:mod:`esmtp.config.identities` says which block a sender gets).
    """

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
    #: The line of each keyword set in this block (esmtp field names such as ``password``, extension keywords).
    lines: dict[str, int] = field(default_factory=dict)
    #: Every address and pattern of the ``identity`` line, the first (``address``) included.
    addresses: list[str] = field(default_factory=list)
    #: The servers of a ``hostname`` list, in order, each with its own TLS mode (``smtps``, ``starttls`` or None: the
    #: block's); empty for a single server without a mode of its own (``hostname`` is then the server).
    #: :func:`esmtp.smtp.failover.candidates` makes an identity per server.
    servers: list[tuple[str, str | None]] = field(default_factory=list)
    #: The identity of each server, made once (:func:`esmtp.smtp.failover.candidates`): the same objects for every
    #: message, so that what is cached per identity (a password command's output, kept sessions) is kept.
    per_server: list[Identity] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.address is not None and not self.addresses:
            self.addresses = [self.address]

    @property
    def implicit_tls(self) -> bool:
        """``smtps enabled``: TLS from the first byte."""
        return self.options.get("smtps") == "enabled"

    def endpoint(self) -> tuple[str, int]:
        """The ``(host, port)`` a send connects to: :meth:`server` with the port for the TLS mode."""
        return self.server(SMTPS_PORT if self.implicit_tls else SUBMISSION_PORT)

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
    #: The secret keyword (``password``…) this statement follows on its line: its words may be the secret's.
    after_secret: str = ""


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
    #: The ``defaults`` section (None without one): its statements are inherited by every identity that does not
    #: set them itself.
    defaults: Identity | None = None
    #: A configuration made from the environment (:mod:`esmtp.config.environment`): keyword → the variable that
    #: set it, in line order.
    origins: dict[str, str] = field(default_factory=dict)

    def where(self, keyword: str, identity: Identity | None = None) -> str:
        """``file:line`` of the statement that set ``keyword`` (globally, or in ``identity``), for messages."""
        lines = self.lines if identity is None else identity.lines
        line = lines.get(keyword) or (identity.lineno if identity is not None else 0)
        return f"{self.path or 'config'}:{line}" if line else self.path or "config"

    def identity_for(self, sender: str | None) -> Identity:
        """The identity for mail from ``sender``; the rule is in :mod:`esmtp.config.identities`."""
        from esmtp.config.identities import choose_identity

        return choose_identity(self, sender).identity

    def resolve_extensions(self, specs: Iterable[KeywordSpec]) -> None:
        """Check pending extension statements against ``specs`` and store their values.

        Raises ConfigError naming the file and line for an unknown keyword or a value outside ``choices``.
        """
        known = {spec.name: spec for spec in specs}
        for statement in self.pending:
            spec = known.get(statement.keyword)
            where = f"{self.path or 'config'}:{statement.lineno}"
            if statement.after_secret and (spec is None or statement.value not in (spec.choices or [statement.value])):
                raise ConfigError(f"{where}: {secret_error(statement.after_secret)}")
            if spec is None:
                hint = _UNKNOWN_HINTS.get(statement.keyword, "")
                raise ConfigError(f"{where}: unknown keyword '{statement.keyword}'{hint}")
            if spec.choices is not None and statement.value not in spec.choices:
                allowed = ", ".join(spec.choices)
                shown = "the value given (not shown: it is secret)" if spec.secret else f"'{statement.value}'"
                raise ConfigError(f"{where}: '{statement.keyword}' takes one of {allowed}, not {shown}")
            target = self.options if spec.scope == "global" else statement.identity.options
            target[statement.keyword] = statement.value
            (self.lines if spec.scope == "global" else statement.identity.lines)[statement.keyword] = statement.lineno
        for statement in self.pending:
            spec = known[statement.keyword]
            for other in spec.conflicts:
                line = statement.identity.lines.get(other)
                if line is not None and other != statement.keyword:
                    first, second = sorted(((line, other), (statement.lineno, statement.keyword)))
                    raise ConfigError(
                        f"{self.path or 'config'}:{second[0]}: '{second[1]}' cannot be used together with "
                        f"'{first[1]}' (line {first[0]}) in one identity: keep one of them"
                    )
        self.pending.clear()


def secret_error(keyword: str) -> str:
    """The error for a statement that holds a secret, or follows one on its line: it quotes none of the words."""
    return (
        f"cannot read the '{keyword}' statement or what follows it on its line (its words are not shown: they hold "
        f"a secret); if the {keyword} contains a space, '#', ';', ',', '=' or a quote, put it in quotes"
    )


#: The SMTP listener's keywords (``esmtp --listen``: docs/listener.md); all global.
LISTEN_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("listen_allow", scope="global",
                help="client addresses and networks (CIDR) allowed to connect; default loopback only"),
    KeywordSpec("listen_auth_file", scope="global", help="file of user:hash[:senders] lines; AUTH is then required"),
    KeywordSpec("listen_auth_plaintext", scope="global", choices=("enabled", "disabled"),
                help="offer AUTH PLAIN/LOGIN without TLS (default disabled)"),
    KeywordSpec("listen_tls_cert", scope="global", help="certificate chain (PEM) for STARTTLS and implicit TLS"),
    KeywordSpec("listen_tls_key", scope="global", help="private key (PEM) of listen_tls_cert"),
    KeywordSpec("listen_smtps", scope="global", help="listening ports that speak implicit TLS (465)"),
    KeywordSpec("listen_max_size", scope="global", help="largest message in bytes (SIZE)"),
    KeywordSpec("listen_max_recipients", scope="global", help="recipients per message"),
    KeywordSpec("listen_max_connections", scope="global", help="clients connected at once, in all"),
    KeywordSpec("listen_max_per_address", scope="global", help="clients connected at once from one address"),
    KeywordSpec("listen_idle_timeout", scope="global", help="seconds to wait for a command line (300)"),
    KeywordSpec("listen_data_timeout", scope="global", help="seconds a message's DATA may take in all (600)"),
    KeywordSpec("listen_grace", scope="global",
                help="on SIGTERM, seconds a message still arriving may take before its client gets 421 (30)"),
)

#: Extension keywords the core itself understands (plugins add more through ``esmtp_config_keywords``).
CORE_KEYWORDS: tuple[KeywordSpec, ...] = (
    KeywordSpec("auth_mechanisms", help="allowed SASL mechanisms in order of preference"),
    KeywordSpec("auth_plaintext", choices=("enabled", "disabled"), help="allow PLAIN/LOGIN without TLS"),
    KeywordSpec("smtps", choices=("enabled", "disabled"), help="implicit TLS from the first byte (port 465)"),
    KeywordSpec("tls_min_version", choices=("1.0", "1.1", "1.2", "1.3"), help="lowest TLS version accepted"),
    KeywordSpec("tls_fingerprint", help="pin the server certificate: SHA256:AB:CD:..."),
    KeywordSpec("timeout", help="the longest wait for the server, every step (see docs/configuration.md)"),
    KeywordSpec("disable_plugins", scope="global", help="comma or space separated plugin names not to load"),
    KeywordSpec("logfile", help="append one line per delivery attempt to this file (global or per identity)"),
    KeywordSpec("logfile_format", choices=("text", "json"), help="key=value words (text) or JSON lines"),
    KeywordSpec("syslog", choices=SYSLOG_CHOICES,
                help="log delivery attempts to syslog: enabled (facility mail) or a facility"),
    KeywordSpec("relay_daemon", scope="global", choices=("auto", "disabled"),
                help="auto: hand each message to a resident per-user process (the warm relay); default disabled"),
    KeywordSpec("relay_daemon_idle", scope="global", help="seconds the warm relay's process waits idle (300)"),
    KeywordSpec("fallback_identity",
                help="another identity (its address) to send through when every server of this one fails for now"),
    KeywordSpec("rate_limit", help="at most N messages per minute, hour or day: N/minute, N/hour, N/day"),
    KeywordSpec("source_ip", help="the local address the connection to the server comes from"),
    KeywordSpec("ip_version", choices=("4", "6"), help="connect over IPv4 only (4) or IPv6 only (6)"),
    KeywordSpec("proxy_host", help="connect through this SOCKS5 proxy, which resolves the server's name"),
    KeywordSpec("proxy_port", help="the SOCKS5 proxy's port (1080)"),
    *LISTEN_KEYWORDS,
    KeywordSpec("allow_from_override", scope="global", choices=("on", "off"),
                help="system service: whether local users may choose the envelope sender (-f, -t's From:); default on"),
    KeywordSpec("admin_address", scope="global",
                help="where mail to local names goes when there is no MDA and no qualifydomain (and double bounces)"),
)

#: Hints for keywords people expect from other mailers.
_UNKNOWN_HINTS = {
    "port": " (write the port in hostname: hostname mail.example.org:587)",
    "server": " (the keyword is hostname: hostname mail.example.org:587)",
    "from": " (use an identity block, or force reverse_path)",
}

# ---- helo ----------------------------------------------------------------------------------------------------------


def helo_name(helo: str | None, sender: str | None = None) -> str:
    """The name to greet the server with: ``helo`` with ``%H`` (the host name), ``%D`` (the domain of ``sender``,
    else the host name) and ``%%`` expanded; the host name when ``helo`` is not set. Other ``%`` stay as written."""
    import socket

    if helo is None:
        return socket.gethostname()
    if "%" not in helo:
        return helo
    host = socket.gethostname()
    domain = sender.rpartition("@")[2] if sender and "@" in sender else ""
    out: list[str] = []
    index = 0
    while index < len(helo):
        pair = helo[index : index + 2]
        if pair in ("%H", "%D", "%%"):
            out.append({"%H": host, "%D": domain or host, "%%": "%"}[pair])
            index += 2
        else:
            out.append(helo[index])
            index += 1
    return "".join(out)


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
