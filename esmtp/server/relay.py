"""``sendmail -bs``: each message of the dialogue through the same pipeline as a command-line message.

The dialogue (:mod:`esmtp.server.dialogue`) is answered locally up to the final dot; then the message is rewritten,
fixed up, routed and delivered (or queued) exactly as ``sendmail rcpt < message`` would do it, with the envelope
from MAIL and RCPT, and the reply to the final dot says what really happened. Every transaction of the session goes
over one connection (and one login) to each smarthost: the run's :class:`esmtp.smtp.kept.KeptSessions` keep the
sessions open between messages (``preconnect`` before each connection, ``postconnect`` once it ends).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from esmtp.errors import (
    EX_OK,
    EX_SOFTWARE,
    DataError,
    DeliveryError,
    DeliveryFailed,
    EsmtpError,
    NoDeliveryAgent,
    RecipientsRejected,
)
from esmtp.server.dialogue import IDLE_TIMEOUT, StdioServer, Transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from esmtp.config.model import Config
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.smtp.kept import KeptSessions
    from esmtp.trace import Trace
    from esmtp.types import DeliveryResult, Envelope

#: Longest text we put on one reply line (RFC 5321 4.5.3.1.5 allows 512 octets with the code and CRLF).
REPLY_TEXT = 400


def _line(text: str) -> str:
    """One reply line: no control characters, not too long."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= REPLY_TEXT else clean[: REPLY_TEXT - 3] + "..."


def _server_reply(error: EsmtpError) -> str | None:
    """The smarthost's own reply inside ``error``, if it gave one ("550 5.1.1 no such user")."""
    for leg in error.errors if isinstance(error, DeliveryFailed) else [error]:
        if isinstance(leg, RecipientsRejected) and leg.rejected:
            return next(iter(leg.rejected.values()))
        if isinstance(leg, DeliveryError) and leg.reply:
            return leg.reply
    return None


def failure_reply(error: EsmtpError) -> str:
    """The reply to the final dot for a message that was neither delivered nor queued.

    4xx when the failure is temporary (the caller keeps the message), 5xx when it is permanent. The code and the
    enhanced status code are the smarthost's when it gave them; the text is esmtp's error (server and reply).
    """
    temporary = error.temporary
    server = (_server_reply(error) or "").split()
    code = "451" if temporary else "554"
    enhanced = "4.3.0" if temporary else ("5.3.0" if not isinstance(error, DataError) else "5.6.0")
    if server and server[0][:1] == code[0]:
        code = server[0] if server[0] in ("450", "451", "452", "550", "551", "552", "553", "554") else code
        if len(server) > 1 and server[1][:2] == f"{code[0]}." and server[1].count(".") == 2:
            enhanced = server[1]
    lines = [_line(text.strip()) for text in str(error).splitlines() if text.strip()] or ["delivery failed"]
    if temporary:
        lines[-1] += "; not sent, try again later" if len(lines[-1]) < REPLY_TEXT - 30 else ""
    return "\n".join(f"{code} {enhanced} {text}" for text in lines)


def success_reply(results: list[DeliveryResult]) -> str:
    details = "; ".join(" ".join(f"{r.agent}: {r.detail}".split()) for r in results)
    return f"250 2.0.0 Ok: {_line(details)}"


class PipelineRelay:
    """Envelopes from the dialogue into the pipeline (the :class:`esmtp.server.dialogue.Relay` of a ``-bs`` run)."""

    def __init__(self, options: Options, config: Config, hooks: Hooks, trace: Trace, sessions: KeptSessions) -> None:
        from esmtp.types import RunContext

        self.options = options
        self.config = config
        self.hooks = hooks
        #: ``sessions``: the kept upstream sessions (of the ``-bs`` dialogue, or shared by all the listener's clients).
        self.context = RunContext(config, hooks, trace, sessions)

    def envelope(self, transaction: Transaction, recipients: list[str]) -> Envelope:
        """The envelope as :func:`esmtp.envelope.build_envelope` makes it, with MAIL FROM as the ``-f`` sender."""
        from esmtp.envelope import expand_mask
        from esmtp.types import Envelope

        identity = self.config.identity_for(transaction.sender)
        sender = expand_mask(identity.force_reverse_path) if identity.force_reverse_path else transaction.sender
        return Envelope(
            sender=sender, recipients=list(recipients), identity=identity, full_name=self.options.full_name,
            notify=transaction.notify, ret=transaction.ret, envid=transaction.envid, body_type=transaction.body,
            given_sender=transaction.sender, client=transaction.client,
        )

    def check_recipient(self, transaction: Transaction, address: str) -> str | None:
        """Refuse a recipient that cannot be delivered whatever the smarthost says: a local name (after aliases)
        with no MDA to take it. Anything else, and any doubt, is for the pipeline to decide after the dot."""
        from esmtp.message import Message

        try:
            envelope = self.envelope(transaction, [address])
            self.hooks.rewrite_envelope(envelope, Message([], os.devnull, 0), self.config)
            route = self.hooks.route(envelope, self.config)
            agents = self.hooks.delivery_agents()
        except EsmtpError:  # a problem of this message's envelope or configuration: the pipeline reports it after DATA
            return None
        except Exception as error:  # noqa: BLE001  (a plugin's bug: refused for now, never accepted blindly)
            from esmtp.progname import warn

            warn(f"internal error checking <{address}>: {type(error).__name__}: {error}")
            return f"451 4.3.0 <{_line(address)}>: internal error ({_line(type(error).__name__)}); try again later"
        for name, recipients in route.legs.items():
            if recipients and (name not in agents or (name == "mda" and not self.config.mda)):
                return _line(f"550 5.1.1 <{address}>: {NoDeliveryAgent(name, recipients)}")
        return None

    def deliver(self, transaction: Transaction, message: Message) -> tuple[str, int]:
        from esmtp.pipeline import submit
        from esmtp.progname import warn

        if transaction.received is not None:  # the listener's trace field, on top of what the client sent
            field = f"Received: {transaction.received}".replace("\n", "\n\t").encode("utf-8", "surrogateescape")
            message.headers.insert(0, field.replace(b"\n", message.newline) + message.newline)
        try:
            results = submit(self.envelope(transaction, transaction.recipients), message, self.context)
        except EsmtpError as error:
            warn(str(error))
            return failure_reply(error), error.exit_code
        except Exception as error:  # noqa: BLE001  (a bug: the caller keeps the message; no traceback: secrets)
            warn(f"internal error: {type(error).__name__}: {error}")
            return f"451 4.3.0 internal error: {_line(type(error).__name__)}; try again later", EX_SOFTWARE
        for result in results:
            self.context.trace.info(f"{result.agent}: {', '.join(result.recipients)}: {result.detail}")
        return success_reply(results), EX_OK


def _protocol_descriptors() -> tuple[int, int]:
    """Take stdin and stdout for the dialogue, and give fds 0 and 1 to /dev/null and stderr, so that nothing else
    (an MDA, a ``preconnect`` command, a stray print) can read the caller's commands or write into the replies."""
    infd, outfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        os.dup2(2, 1)
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return infd, outfd


def _idle_timeout() -> float:
    """``ESMTP_BS_TIMEOUT`` (seconds), else the RFC's 5 minutes."""
    try:
        value = float(os.environ.get("ESMTP_BS_TIMEOUT", ""))
    except ValueError:
        return IDLE_TIMEOUT
    return value if value > 0 else IDLE_TIMEOUT


def serve(options: Options, load: Callable[[], tuple[Config | None, Hooks]]) -> int:
    """Run a ``-bs`` session on stdin/stdout; return the exit status (see docs/cli.md).

    A configuration that cannot be loaded is answered with a 554 greeting (RFC 5321 3.1) naming the problem.
    """
    from esmtp.smtp.kept import KeepPolicy, KeptSessions
    from esmtp.trace import Trace

    infd, outfd = _protocol_descriptors()
    hostname = os.uname().nodename
    try:
        config, hooks = load()
        assert config is not None
        trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    except EsmtpError as error:
        os.write(outfd, f"554 5.3.5 {hostname} {_line(' '.join(str(error).split()))}\r\n".encode())
        raise
    sessions = KeptSessions(KeepPolicy(idle=_idle_timeout()))
    relay = PipelineRelay(options, config, hooks, trace, sessions)
    try:
        return StdioServer(infd, outfd, relay, hostname=hostname, timeout=_idle_timeout()).run()
    finally:
        try:
            sessions.close()
        finally:
            trace.close()
