"""The typed records that flow through the pipeline and that registration hooks return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.message import Message
    from esmtp.plugins import Hooks
    from esmtp.smtp.kept import KeptSessions
    from esmtp.trace import Trace

#: Where an extension keyword's value belongs: the identity block it appears in, or the whole file.
Scope = Literal["identity", "global"]


@dataclass(slots=True, kw_only=True)
class EnvelopeDetails:
    """The optional parts of an envelope: what the sender asked for besides the addresses. A queue entry stores them
    as they are (it derives its list of fields from this class), so a field added here is queued too."""

    full_name: str | None = None
    notify: str | None = None
    ret: str | None = None
    envid: str | None = None
    body_type: str | None = None
    #: True when the recipients came from the headers (``-t``).
    from_headers: bool = False
    #: The sender as given by ``-f`` or the ``-t`` From: header, before ``force reverse_path`` (the MDA's ``%F``).
    given_sender: str | None = None
    #: The uid of the local account that submitted the message to the system service (None: a run of its own).
    #: The queue lists and removes an entry for this account only (and root).
    submitter: int | None = None
    #: The address of the SMTP client that handed the message to the listener (``esmtp --listen``), for the log.
    client: str | None = None


@dataclass(slots=True)
class Envelope(EnvelopeDetails):
    """The SMTP envelope of one message and the identity chosen for it.

    ``sender`` is the reverse path ("" is the null sender ``<>``). ``recipients`` are bare addresses in order, without
    duplicates. The DSN fields hold normalised values (``notify`` "NEVER" or e.g. "SUCCESS,FAILURE"; ``ret`` "FULL" or
    "HDRS"); ``body_type`` is "7BIT", "8BITMIME" or None (then chosen from the data). The optional fields, keyword
    only, are those of :class:`EnvelopeDetails`.
    """

    sender: str
    recipients: list[str]
    identity: Identity


@dataclass(slots=True)
class Route:
    """Which delivery agent gets which recipients: agent name ("smtp", "mda", …) to recipient list, in order."""

    legs: dict[str, list[str]] = field(default_factory=dict)

    def add(self, agent: str, recipient: str) -> None:
        self.legs.setdefault(agent, []).append(recipient)


@dataclass(slots=True)
class DeliveryResult:
    """What one delivery agent did: the recipients it delivered to and a line for the user (``-v``)."""

    agent: str
    recipients: list[str]
    detail: str = ""
    #: The server that took the message (``host:port``), when the agent talks to one: with several servers
    #: (failover) it says which.
    server: str | None = None


@dataclass(slots=True)
class RunContext:
    """What a delivery agent may need besides the message: the configuration, the plugins, the trace."""

    config: Config
    hooks: Hooks
    trace: Trace
    #: The kept SMTP sessions of a long-lived process (None in a run of its own: one session per message).
    sessions: KeptSessions | None = None


class DeliveryAgentImpl(Protocol):
    """Delivers one message to some recipients. Runs synchronously; async agents drive their own event loop.

    An agent may also have ``describe(envelope, recipients) -> str``: the command it would run, or what it would do,
    in words, without doing it (``--pretend`` shows it as "<agent> command:"; the MDA gives its command line).
    """

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult: ...


@dataclass(frozen=True, slots=True)
class DeliveryAgent:
    """A delivery agent offered by a plugin through ``esmtp_delivery_agents``. ``name`` is what routes refer to."""

    name: str
    factory: Callable[[RunContext], DeliveryAgentImpl]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a SASL mechanism may use. ``password`` never appears in reprs.

    ``options`` are the identity's extension keywords, so a mechanism can read the keywords it declared.
    """

    username: str
    password: str = field(repr=False)
    host: str = ""
    options: Mapping[str, str] = field(default_factory=dict)


class SaslClient(Protocol):
    """One authentication exchange, step by step.

    ``step(None)`` is called first and returns the initial response (``None`` for none; ``b""`` is sent as ``=``).
    Each ``334`` challenge (base64-decoded) is then passed to ``step``, which returns the decoded answer. Raising
    aborts the exchange (the driver sends ``*``). A client may set a ``failure`` attribute (str) explaining an error
    the server sent in a challenge; the driver adds it to the refusal it reports.
    """

    def step(self, challenge: bytes | None) -> bytes | None: ...


class SecretSource(Protocol):
    """Where the SMTP session gets a secret the configuration does not hold (``Hooks.secret``, ``esmtp_secret``)."""

    def __call__(
        self, identity: Identity, host: str, mechanism: SaslMechanism, rejected: str | None, trace: Trace
    ) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SaslMechanism:
    """A SASL mechanism offered by a plugin through ``esmtp_sasl_mechanisms``.

    ``priority``: higher is stronger and is preferred. ``plaintext``: the password crosses the wire recoverably, so
    the core refuses the mechanism without TLS unless ``auth_plaintext enabled``. ``bearer``: the secret is an OAuth2
    access token, not a password; the core chooses such a mechanism only when ``auth_mechanisms`` names it or the
    identity has ``oauth2_*`` settings (and then no password mechanism), and after a rejection it asks the secret
    sources once for a fresh token and tries again.
    """

    name: str
    priority: int
    factory: Callable[[Credentials], SaslClient]
    plaintext: bool = False
    bearer: bool = False

    def __post_init__(self) -> None:
        # SASL names are case-insensitive (RFC 4422 3.1); upper case is how servers list them and how users choose.
        object.__setattr__(self, "name", self.name.upper())


@dataclass(frozen=True, slots=True)
class KeywordSpec:
    """An esmtprc extension keyword (core or plugin-registered, through ``esmtp_config_keywords``): ``name [=] value``.

    ``choices`` restricts the value (compared case-sensitively, like esmtp's own keywords); ``scope`` says whether the
    value belongs to the identity block it appears in or to the whole file (like ``mda``).
    """

    name: str
    scope: Scope = "identity"
    choices: tuple[str, ...] | None = None
    help: str = ""
    secret: bool = False
    #: Keywords (core or extension) that may not be set in the same identity block; the error names both lines.
    conflicts: tuple[str, ...] = ()
