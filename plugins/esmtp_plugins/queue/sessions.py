"""Connection grouping: entries whose identities share a server and login share one SMTP session per flush.

The group's session brackets each connection with the identity's ``preconnect`` and ``postconnect`` commands, which
:mod:`esmtp.smtp.agent` runs as in direct delivery.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from esmtp.config.model import Identity
from esmtp.errors import EsmtpError
from esmtp.message import Message
from esmtp.progname import name as program_name
from esmtp.smtp.agent import postconnect, preconnect
from esmtp.smtp.session import SmtpSession
from esmtp.types import Envelope

if TYPE_CHECKING:
    from .flush import Flusher

#: How many times a connection may break during a transaction before a run defers the rest of that group.
MAX_BREAKS_PER_GROUP = 3


def connection_key(identity: Identity) -> tuple[object, ...]:
    """What a session depends on: entries whose identities agree on all of it share one connection and login."""
    return (
        identity.hostname, identity.username, identity.password, identity.starttls, identity.helo,
        identity.certificate_passphrase, identity.preconnect, identity.postconnect,
        tuple(sorted(identity.options.items())),
    )


class GroupSession:
    """The connection of one group, opened on first use and opened again when the session drops it (after a refusal
    that followed a pipelined DATA, or a broken connection).

    Each connection is bracketed by the identity's commands, as in direct delivery (and esmtp 1.2): ``preconnect``
    runs before it is opened (an ssh tunnel, a VPN, a dial-up link; its failure defers the rest of the group, nothing
    sent), ``postconnect`` after it ends if the server accepted at least one message over it (its failure is only a
    warning: the mail is sent).
    """

    def __init__(self, identity: Identity, flusher: Flusher) -> None:
        self.identity = identity
        self.flusher = flusher
        self.session: SmtpSession | None = None
        self.error: EsmtpError | None = None
        self.breaks = 0
        #: Messages the server accepted over the current connection (postconnect runs only after one at least).
        self.accepted = 0
        #: A transaction announced while no session was open, for the next one.
        self.upcoming: tuple[Envelope, Message, list[str]] | None = None
        self.lock = asyncio.Lock()

    def announce(self, envelope: Envelope, message: Message, recipients: list[str]) -> None:
        """The transaction that comes next (:meth:`SmtpSession.pipeline_next`), for the session that is open or,
        before the first message, for the one about to be opened."""
        if self.session is not None and self.session.is_open:
            self.session.pipeline_next(envelope, message, recipients)
            self.upcoming = None
        else:
            self.upcoming = (envelope, message, recipients)

    def broke(self, error: EsmtpError) -> None:
        """The connection failed during a transaction; after a few times, give up on this server for the run."""
        self.breaks += 1
        if self.breaks >= MAX_BREAKS_PER_GROUP:
            self.error = error

    async def get(self) -> SmtpSession:
        """The open session. Raises the connection error (for this and every later entry of the run)."""
        if self.session is not None:
            if self.session.is_open:
                return self.session
            await self.session.abort()  # dropped by us or hung up by the server: free what is left of it
            self.session = None
            await self._ended()  # the session dropped the connection
        if self.error is not None:
            raise self.error
        try:
            if self.identity.preconnect:
                # In a thread: the command may take seconds (a tunnel, a link) while other groups are sending.
                await asyncio.to_thread(preconnect, self.identity.preconnect, self.flusher.trace)
            session = SmtpSession(self.identity, self.flusher.mechanisms, self.flusher.trace, self.flusher.hooks.secret)
            await session.open()
        except EsmtpError as error:
            self.error = error
            raise
        self.session = session
        if self.upcoming is not None:
            session.pipeline_next(*self.upcoming)
            self.upcoming = None
        return session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
            await self._ended()

    async def _ended(self) -> None:
        """A connection is over: run ``postconnect`` if the server accepted mail over it."""
        accepted, self.accepted = self.accepted, 0
        command = self.identity.postconnect
        if not accepted or not command:
            return
        warning = await asyncio.to_thread(postconnect, command, self.flusher.trace)
        if warning:
            self.flusher.errors.write(f"{program_name()}: queue: warning: {warning} (the mail was sent)\n")
