"""The "smtp" delivery agent (core, not blockable): relays through the smarthost of the envelope's identity.

In a run of its own, one session per message, bracketed by the identity's ``preconnect`` and ``postconnect``
commands (:mod:`esmtp.smtp.bracket`). In a long-lived process (the warm relay, ``-bs``, the listener, the system
service) the run's :class:`esmtp.smtp.kept.KeptSessions` carry the message over a kept connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl

if TYPE_CHECKING:  # imported when a message is sent, not when the plugin is registered (mailq, --flush)
    from esmtp.message import Message
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, RunContext


class SmtpAgent:
    """Relays through the smarthost of the envelope's identity."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        from esmtp.types import DeliveryResult

        identity, hooks, trace = envelope.identity, self.context.hooks, self.context.trace
        sessions = self.context.sessions
        if sessions is not None and sessions.keeps(identity):
            reply = sessions.send(identity, hooks, trace, envelope, message, recipients)
            return DeliveryResult("smtp", recipients, reply)

        import asyncio

        from esmtp.progname import warn
        from esmtp.smtp.bracket import postconnect, preconnect
        from esmtp.smtp.kept import new_session

        async def run() -> str:
            session = new_session(identity, hooks, trace)
            await session.open()
            try:
                return await session.send(envelope, message, recipients)
            finally:
                await session.close()

        if identity.preconnect:
            preconnect(identity.preconnect, trace)
        reply = asyncio.run(run())
        if identity.postconnect and (warning := postconnect(identity.postconnect, trace)):
            warn(f"warning: {warning} (the message was sent)")
        return DeliveryResult("smtp", recipients, reply)


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The SMTP relay agent."""
    from esmtp.types import DeliveryAgent

    return [DeliveryAgent("smtp", SmtpAgent)]
