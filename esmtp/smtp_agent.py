"""The "smtp" delivery agent (core, not blockable): one session to the identity's server per message."""

from __future__ import annotations

from collections.abc import Iterable

from . import hookimpl
from .message import Message
from .types import DeliveryAgent, DeliveryResult, Envelope, RunContext


class SmtpAgent:
    """Relays through the smarthost of the envelope's identity."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        import asyncio

        from .smtp import SmtpSession

        async def run() -> str:
            session = SmtpSession(envelope.identity, self.context.hooks.sasl_mechanisms(), self.context.trace)
            await session.open()
            try:
                return await session.send(envelope, message, recipients)
            finally:
                await session.close()

        reply = asyncio.run(run())
        return DeliveryResult("smtp", recipients, reply)


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The SMTP relay agent."""
    return [DeliveryAgent("smtp", SmtpAgent)]
