"""The "smtp" delivery agent (core, not blockable): one session to the identity's server per message.

The identity's ``preconnect`` command runs before the connection is opened (an ssh tunnel, a VPN, a dial-up link);
``postconnect`` runs after the message was accepted. Both are the user's own shell commands and run under
``/bin/sh -c`` as esmtp 1.2 ran them with ``system()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.errors import EX_OSERR, DeliveryError, EsmtpError, TemporaryFailure
from esmtp.progname import warn

if TYPE_CHECKING:  # imported when a message is sent, not when the plugin is registered (mailq, --flush)
    from esmtp.message import Message
    from esmtp.trace import Trace
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, RunContext


def run_command(command: str) -> int:
    """Run ``command`` with ``/bin/sh -c``; return its exit status (negative: the signal that killed it).

    Standard input is /dev/null (ours has been read to end of file); standard output and error are inherited, as
    with ``system()``.
    """
    import subprocess

    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, check=False).returncode


def _outcome(status: int) -> str:
    return f"received signal {-status}" if status < 0 else f"exited with non-zero status {status}"


def preconnect(command: str, trace: Trace) -> None:
    """Run the ``preconnect`` command. Its failure is temporary: nothing was sent, and a later try may succeed.

    esmtp 1.2 exited 70 here; this implementation raises TemporaryFailure (75), so the queue can keep the message.
    """
    trace.info(f"Executing pre-connect command: {command}")
    try:
        status = run_command(command)
    except OSError as error:
        raise DeliveryError(f"Error executing pre-connect command: {error.strerror or error}",
                            exit_code=EX_OSERR) from error
    if status != 0:
        raise TemporaryFailure(f'Pre-connect command "{command}" {_outcome(status)}; nothing was sent')


def postconnect(command: str, trace: Trace) -> str | None:
    """Run the ``postconnect`` command after a session in which the server accepted mail; return a warning if it
    failed. The mail is already sent, so a failure only warns (esmtp 1.2 exited 70, which made callers retry a
    message that had been delivered); the caller says where the warning goes."""
    trace.info(f"Executing post-connect command: {command}")
    try:
        status = run_command(command)
    except OSError as error:
        return f"Error executing post-connect command: {error.strerror or error}"
    if status != 0:
        return f'Post-connect command "{command}" {_outcome(status)}'
    return None


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
        import asyncio

        from esmtp.smtp.session import SmtpSession

        identity, trace = envelope.identity, self.context.trace

        async def run() -> str:
            session = SmtpSession(identity, self.context.hooks.sasl_mechanisms(), trace, self.context.hooks.secret,
                                  sender=envelope.sender)
            await session.open()
            try:
                return await session.send(envelope, message, recipients)
            finally:
                self.data_started = session.data_started
                await session.close()

        sessions = self.context.sessions
        if sessions is not None and not (identity.preconnect or identity.postconnect):
            self.data_started = True  # a kept session does not say: the message counts as sent
            # The warm relay: the identity's kept connection (pre/postconnect commands keep a session per message).
            reply = sessions.send(identity, self.context.hooks.sasl_mechanisms(), trace, envelope, message, recipients)
            from esmtp.types import DeliveryResult

            return DeliveryResult("smtp", recipients, reply)
        if identity.preconnect:
            preconnect(identity.preconnect, trace)
        reply = asyncio.run(run())
        if identity.postconnect and (warning := postconnect(identity.postconnect, trace)):
            warn(f"warning: {warning} (the message was sent)")
        from esmtp.types import DeliveryResult

        return DeliveryResult("smtp", recipients, reply)


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The SMTP relay agent."""
    from esmtp.types import DeliveryAgent

    return [DeliveryAgent("smtp", SmtpAgent)]
