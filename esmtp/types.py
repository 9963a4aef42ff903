"""The typed records that flow through the pipeline and that registration hooks return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Config, Identity
    from .message import Message
    from .plugins import Hooks
    from .relay_sessions import SessionPool
    from .trace import Trace


@dataclass(slots=True)
class Envelope:
    """The SMTP envelope of one message and the identity chosen for it.

    ``sender`` is the reverse path ("" is the null sender ``<>``). ``recipients`` are bare addresses in order, without
    duplicates. The DSN fields hold normalised values (``notify`` "NEVER" or e.g. "SUCCESS,FAILURE"; ``ret`` "FULL" or
    "HDRS"); ``body_type`` is "7BIT", "8BITMIME" or None (then chosen from the data).
    """

    sender: str
    recipients: list[str]
    identity: Identity
    full_name: str | None = None
    notify: str | None = None
    ret: str | None = None
    envid: str | None = None
    body_type: str | None = None
    #: True when the recipients came from the headers (``-t``).
    from_headers: bool = False
    #: The sender as given by ``-f`` or the ``-t`` From: header, before ``force reverse_path`` (the MDA's ``%F``).
    given_sender: str | None = None


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


@dataclass(slots=True)
class RunContext:
    """What a delivery agent may need besides the message: the configuration, the plugins, the trace."""

    config: Config
    hooks: Hooks
    trace: Trace
    #: The warm relay's kept SMTP sessions (None in a run of its own: one session per message).
    sessions: SessionPool | None = None


class DeliveryAgentImpl(Protocol):
    """Delivers one message to some recipients. Runs synchronously; async agents drive their own event loop."""

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
    aborts the exchange (the driver sends ``*``).
    """

    def step(self, challenge: bytes | None) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class SaslMechanism:
    """A SASL mechanism offered by a plugin through ``esmtp_sasl_mechanisms``.

    ``priority``: higher is stronger and is preferred. ``plaintext``: the password crosses the wire recoverably, so
    the core refuses the mechanism without TLS unless ``auth_plaintext enabled``.
    """

    name: str
    priority: int
    factory: Callable[[Credentials], SaslClient]
    plaintext: bool = False
