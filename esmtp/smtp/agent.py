"""The "smtp" delivery agent (core, not blockable): relays through the smarthost of the envelope's identity.

In a run of its own, one session per message, bracketed by the identity's ``preconnect`` and ``postconnect``
commands (:mod:`esmtp.smtp.bracket`). In a long-lived process (the warm relay, ``-bs``, the listener, the system
service) the run's :class:`esmtp.smtp.kept.KeptSessions` carry the message over a kept connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.errors import EsmtpError

if TYPE_CHECKING:  # imported when a message is sent, not when the plugin is registered (mailq, --flush)
    from esmtp.message import Message
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, RunContext


class SmtpAgent:
    """Relays through the smarthost of the envelope's identity."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        #: Whether any of the last message's data went out (after an error: whether it may have been delivered).
        self.data_started = False

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        """Send, within the identity's ``rate_limit`` (:mod:`esmtp.smtp.ratelimit`)."""
        identity = envelope.identity
        if "rate_limit" not in identity.options:
            return self._deliver(envelope, message, recipients)
        from esmtp.smtp import ratelimit

        stamp = ratelimit.take(identity)  # RateLimited (75) when the window is full
        self.data_started = False
        try:
            return self._deliver(envelope, message, recipients)
        except EsmtpError:
            if not self.data_started:  # nothing of the message reached the server: the slot is free again
                ratelimit.give_back(identity, stamp)
            raise

    def _deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        from esmtp.types import DeliveryResult

        identity, hooks, trace = envelope.identity, self.context.hooks, self.context.trace
        sessions = self.context.sessions
        if sessions is not None and sessions.keeps(identity):
            self.data_started = True  # a kept session does not say: the message counts as sent
            reply = sessions.send(identity, hooks, trace, envelope, message, recipients)
            return DeliveryResult("smtp", recipients, reply)

        import asyncio

        from esmtp.progname import warn
        from esmtp.smtp.bracket import postconnect, preconnect
        from esmtp.smtp.kept import new_session

        async def run() -> str:
            session = new_session(identity, hooks, trace, sender=envelope.sender)
            await session.open()
            try:
                return await session.send(envelope, message, recipients)
            finally:
                self.data_started = session.data_started
                await session.close()

        if identity.preconnect:
            preconnect(identity.preconnect, trace)
        reply = asyncio.run(run())
        if identity.postconnect and (warning := postconnect(identity.postconnect, trace)):
            warn(f"warning: {warning} (the mail was sent)")
        return DeliveryResult("smtp", recipients, reply)


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The SMTP relay agent."""
    from esmtp.types import DeliveryAgent

    return [DeliveryAgent("smtp", SmtpAgent)]
