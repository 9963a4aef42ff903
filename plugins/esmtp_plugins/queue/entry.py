"""A queue entry: the envelope of one queued message (as data, never a command line) and its delivery state, as
stored in ``<id>.json``. How entries are written, locked and removed is :mod:`.store`'s job."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from esmtp.errors import DeliveryError, EsmtpError, LocalDeliveryError, RecipientsRejected
from esmtp.types import Envelope, EnvelopeDetails

if TYPE_CHECKING:
    from esmtp.config.model import Identity

FORMAT_VERSION = 1
ErrorKind = Literal["connect", "reply", "local"]

#: The envelope's optional fields, which an entry stores as they are (as its own fields, under the same names). The
#: other three are stored in the entry's own terms: the sender, the recipients still to deliver to, and the identity
#: by its address.
ENVELOPE_FIELDS = tuple(item.name for item in fields(EnvelopeDetails))


def error_kind(error: EsmtpError) -> ErrorKind:
    """How a try failed, for the retry schedule: the server answered (a reply code, refused recipients), the local
    agent failed, or the server was never reached."""
    if isinstance(error, RecipientsRejected) or (isinstance(error, DeliveryError) and error.code is not None):
        return "reply"
    return "local" if isinstance(error, LocalDeliveryError) else "connect"


@dataclass(slots=True)
class Entry(EnvelopeDetails):
    """One queued message: its envelope (as data, never a command line) and its delivery state.

    The envelope's optional fields come from :class:`~esmtp.types.EnvelopeDetails`, keyword only.
    """

    id: str
    sender: str
    #: Recipients still to deliver to (as they were queued: after aliases, before routing).
    recipients: list[str]
    #: The address of the identity block chosen at submission (None: the default identity).
    identity: str | None
    created: float
    #: Size of ``<id>.eml``; ``header_size`` bytes of it are the header block and the blank line.
    size: int
    header_size: int
    newline: str = "\n"
    eight_bit: bool = False
    attempts: int = 0
    next_retry: float = 0.0
    last_attempt: float | None = None
    last_error: str | None = None
    #: "connect": the server was never reached (offline, refused, TLS or login failure); "reply": it answered 4xx.
    last_error_kind: ErrorKind | None = None
    delivered: list[str] = field(default_factory=list)
    #: Recipient → why it failed permanently (kept for the bounce and for mailq's failed list).
    failed: dict[str, str] = field(default_factory=dict)
    #: Set on bounces (the id of the message they report on): a bounce is never bounced to its (null) sender.
    bounce_of: str | None = None
    #: A double bounce: the report, sent to ``admin_address``, that a bounce could not be delivered. Never reported.
    double: bool = False
    #: Why the entry is in the failed area ("" while queued).
    failure: str = ""
    #: A random token renewed by every write: the first field of the file, so that a flusher can tell from its
    #: first bytes whether the envelope changed since it read it.
    rev: str = field(default="", compare=False)

    @classmethod
    def from_envelope(cls, envelope: Envelope, recipients: list[str], **state: Any) -> Entry:
        """A new entry for ``envelope``'s ``recipients``; ``state`` sets the other fields (id, sizes, times)."""
        details = {name: getattr(envelope, name) for name in ENVELOPE_FIELDS}
        return cls(sender=envelope.sender, recipients=list(recipients), identity=envelope.identity.address,
                   **details, **state)

    def to_envelope(self, identity: Identity) -> Envelope:
        """The envelope to deliver the entry's remaining recipients with ``identity`` (the one it was queued for)."""
        details = {name: getattr(self, name) for name in ENVELOPE_FIELDS}
        return Envelope(sender=self.sender, recipients=list(self.recipients), identity=identity, **details)

    def to_json(self) -> bytes:
        data = {"rev": self.rev, "version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(data, separators=(",", ":")).encode("ascii")

    def prefix(self) -> bytes:
        """How the stored file starts while it holds this revision."""
        return f'{{"rev":"{self.rev}"'.encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes) -> Entry:
        """Parse a stored envelope. Raises :class:`Delivered` for the mark of a delivered entry."""
        if raw[:1] == DELIVERED_MARK:
            raise Delivered(raw)
        data: dict[str, Any] = json.loads(raw)
        if data.pop("version", None) != FORMAT_VERSION:
            raise ValueError("unknown queue entry format")
        names = cls.__dataclass_fields__.keys()
        return cls(**{key: value for key, value in data.items() if key in names})


#: A delivered entry's .json has its first byte (``{``) overwritten with this until its files are removed.
DELIVERED_MARK = b"D"


class Delivered(Exception):
    """The entry was delivered; only its files remain, waiting to be removed."""


def is_due(entry: Entry, now: float) -> bool:
    """Whether a flush without ids sends ``entry``: its retry time has come, or its last try never reached the
    server (so the first flush after you are back online sends everything at once)."""
    return entry.next_retry <= now or entry.last_error_kind == "connect"



def new_id() -> str:
    """A unique, time-sortable queue id: microseconds since the epoch and 24 random bits, in hex (19 characters)."""
    return f"{time.time_ns() // 1000:013x}{os.urandom(3).hex()}"
