"""The esmtprc configuration: esmtp 1.2's grammar, file search order and permission checks, plus extension keywords.

Reading: ``-C file``, else ``~/.esmtprc`` (regular file, owned by the user, no group/other bits but g+x), else
``/etc/esmtprc``. Only one file is read. See docs/configuration.md for the grammar and every keyword.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

StartTLS = Literal["disabled", "enabled", "required"]
Scope = Literal["identity", "global"]


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


@dataclass(slots=True)
class Statement:
    """An extension-keyword statement as read, before plugins have said which keywords exist."""

    keyword: str
    value: str
    lineno: int
    identity: Identity


@dataclass(slots=True)
class Config:
    """A parsed configuration file."""

    path: str | None
    identities: list[Identity]
    default: Identity
    mda: str | None = None
    force_mda: str | None = None
    #: Global-scope extension keywords.
    options: dict[str, str] = field(default_factory=dict)
    #: Extension statements not yet checked against the registered keywords (see :meth:`resolve_extensions`).
    pending: list[Statement] = field(default_factory=list)

    def identity_for(self, sender: str | None) -> Identity:
        """The identity whose address equals ``sender`` exactly (last block wins), else the default identity."""
        if sender is not None:
            for identity in reversed(self.identities):
                if identity.address is not None and identity.address == sender:
                    return identity
        return self.default

    def resolve_extensions(self, specs: Iterable[KeywordSpec]) -> None:
        """Check pending extension statements against ``specs`` and store their values.

        Raises ConfigError naming the file and line for an unknown keyword or a value outside ``choices``.
        """
        known = {spec.name: spec for spec in specs}
        for statement in self.pending:
            spec = known.get(statement.keyword)
            where = f"{self.path or 'config'}:{statement.lineno}"
            if spec is None:
                raise ConfigError(f"{where}: unknown keyword '{statement.keyword}'")
            if spec.choices is not None and statement.value not in spec.choices:
                allowed = ", ".join(spec.choices)
                raise ConfigError(
                    f"{where}: '{statement.keyword}' takes one of {allowed}, not '{statement.value}'"
                )
            target = self.options if spec.scope == "global" else statement.identity.options
            target[statement.keyword] = statement.value
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
)


def parse_config(text: str, path: str | None) -> Config:
    """Parse esmtprc ``text``; ``path`` is used in error messages. Extension keywords end up in ``pending``."""
    raise NotImplementedError


def load_config(cli_path: str | None) -> Config:
    """Find and read the configuration as esmtp 1.2 does (``-C``, ``~/.esmtprc`` with checks, ``/etc/esmtprc``)."""
    raise NotImplementedError
