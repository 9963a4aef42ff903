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
    from esmtp.config.model import Identity
    from esmtp.message import Message
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, RunContext


class SmtpAgent:
    """Relays through the smarthost of the envelope's identity: its servers in order, then its
    ``fallback_identity`` (:mod:`esmtp.smtp.failover`), each identity within its ``rate_limit``
    (:mod:`esmtp.smtp.ratelimit`)."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        identity = envelope.identity
        if not identity.servers and "fallback_identity" not in identity.options \
                and "rate_limit" not in identity.options:
            return self._send(identity, envelope, message, recipients)  # one server: nothing to choose
        from esmtp.smtp import failover
        from esmtp.smtp.ratelimit import RateLimited

        fallback = failover.fallback_of(identity, self.context.config)
        try:
            return self._within_limit(identity, envelope, message, recipients)
        except EsmtpError as error:
            # Over the identity's rate_limit the message waits (75, or the queue): the cap is the user's choice.
            if fallback is None or isinstance(error, RateLimited) or not failover.may_fail_over(error):
                raise
            self.context.trace.info(f"{error}; trying fallback_identity {fallback.address}")
            try:
                result = self._within_limit(fallback, envelope, message, recipients)
            except EsmtpError as second:
                if not failover.may_fail_over(second):
                    raise
                raise failover.all_failed([(identity.address or "the identity", error),
                                           (f"fallback_identity {fallback.address}", second)]) from None
            result.server = f"{result.server} (fallback_identity {fallback.address})"
            self.context.trace.info(f"{result.server} took the message")
            return result

    def _within_limit(self, identity: Identity, envelope: Envelope, message: Message,
                      recipients: list[str]) -> DeliveryResult:
        """Every server of ``identity`` in turn, with a slot of its ``rate_limit`` (given back when nothing of the
        message reached a server)."""
        from esmtp.smtp import failover, ratelimit

        stamp = ratelimit.take_slot(identity)  # RateLimited (75) when the window is full
        try:
            servers = failover.ordered(identity)
            tried: list[tuple[str, EsmtpError]] = []
            for index, server in enumerate(servers):
                try:
                    result = self._send(server, envelope, message, recipients)
                except EsmtpError as error:
                    if len(servers) == 1 or not failover.may_fail_over(error):
                        raise
                    failover.remember(server)
                    tried.append((_hostport(server), error))
                    if index + 1 < len(servers):
                        self.context.trace.info(f"{error}; trying the next server, {_hostport(servers[index + 1])}")
                    continue
                if len(servers) > 1:
                    failover.forget(server)
                    self.context.trace.info(f"{result.server} took the message")
                return result
            raise failover.all_failed(tried)
        except EsmtpError as error:
            if not error.data_started:  # nothing of the message reached a server: the slot is free again
                ratelimit.give_back(identity, stamp)
            raise

    def _send(self, identity: Identity, envelope: Envelope, message: Message,
              recipients: list[str]) -> DeliveryResult:
        """One server: over the run's kept session (a long-lived process), else a session of its own."""
        from esmtp.types import DeliveryResult

        hooks, trace = self.context.hooks, self.context.trace
        sessions = self.context.sessions
        if sessions is not None and sessions.keeps(identity):
            reply = sessions.send(identity, hooks, trace, envelope, message, recipients)
            return DeliveryResult("smtp", recipients, reply, server=_hostport(identity))

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
                await session.close()

        if identity.preconnect:
            preconnect(identity.preconnect, trace)
        reply = asyncio.run(run())
        if identity.postconnect and (warning := postconnect(identity.postconnect, trace)):
            warn(f"warning: {warning} (the message was sent)")
        return DeliveryResult("smtp", recipients, reply, server=_hostport(identity))


def _hostport(identity: Identity) -> str:
    host, port = identity.endpoint()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The SMTP relay agent."""
    from esmtp.types import DeliveryAgent

    return [DeliveryAgent("smtp", SmtpAgent)]
