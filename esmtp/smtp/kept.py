"""One way to open and keep SMTP sessions.

:func:`new_session` is the one factory: a session for an identity, with the run's SASL mechanisms and secret sources
(``password_command``, the keyring, ``~/.netrc``, OAuth2) and its trace. :class:`KeptSession` keeps one such session
open across messages: opened on first use (after the identity's ``preconnect``), checked before it is used again,
opened anew when the server has dropped it, and closed with ``postconnect`` when mail went over it.
:class:`KeptSessions` holds one kept session per connection for a long-lived process (the warm relay, ``-bs``, the
listener, the system service), safe to call from several threads; the queue flush keeps its :class:`KeptSession`
objects itself, on its own event loop. Each caller chooses its :class:`KeepPolicy`.

A kept connection whose last transaction ended with the server's reply to the final dot carries the next MAIL as it
is (RFC 5321 4.1.4: no RSET round trip); after anything else it is RSET first. If the server has meanwhile said 421,
dropped us or closed an idle session, that shows before any of the message's data went out (no 354), and with
``resend_after_drop`` the message goes again on a new connection, once; so a message never goes out on a connection
in an unknown state.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from esmtp import crashpoints
from esmtp.errors import EsmtpError, TemporaryFailure
from esmtp.progname import warn as program_warn
from esmtp.smtp.bracket import postconnect, preconnect

# asyncio and the SMTP client are imported when a session is made, not with this module: a ``-bs`` dialogue that
# sends no mail, or a ``mailq`` through the warm relay, never needs them.
if TYPE_CHECKING:

    from esmtp.config.model import Identity
    from esmtp.message import Message
    from esmtp.plugins import Hooks
    from esmtp.smtp.session import SmtpSession
    from esmtp.trace import Trace
    from esmtp.types import Envelope

T = TypeVar("T")


def new_session(identity: Identity, hooks: Hooks, trace: Trace, *, login: bool = True,
                sender: str | None = None) -> SmtpSession:
    """A session (not yet open) to ``identity``'s server, with the run's mechanisms and secret sources.

    ``login=False`` connects and secures without authenticating (``--serverinfo`` without ``--login``); ``sender``
    (the first message's) gives ``helo``'s ``%D``.
    """
    from esmtp.smtp.session import SmtpSession

    return SmtpSession(identity, hooks.sasl_mechanisms(), trace, hooks.secret, login=login, sender=sender)


def connection_key(identity: Identity) -> tuple[object, ...]:
    """What a session depends on: identities that agree on all of it share one connection and login."""
    return (
        identity.hostname, identity.username, identity.password, identity.starttls, identity.helo,
        identity.certificate_passphrase, identity.preconnect, identity.postconnect,
        tuple(sorted(identity.options.items())), tuple(identity.servers),
    )


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    """How a caller keeps its sessions."""

    #: Seconds a connection may sit unused and still be used again (else it is closed with QUIT and a new one
    #: opened); servers close idle sessions after a few minutes (RFC 5321 4.5.3.2.7 asks for at least five).
    idle: float = 60.0
    #: When a kept connection turns out to be gone before any of the message's data went out (421, a hang-up),
    #: send the message again on a new connection, once.
    resend_after_drop: bool = True
    #: Keep the sessions of identities with ``preconnect``/``postconnect`` too (else :meth:`KeptSessions.keeps`
    #: says no, and the caller sends their messages on a session of their own, bracketed by the commands).
    bracketed: bool = True
    #: After this many broken connections, refuse further use with the last error (None: never).
    max_breaks: int | None = None


class KeptSession:
    """The kept connection of one identity (of every identity with its :func:`connection_key`)."""

    def __init__(self, identity: Identity, hooks: Hooks, trace: Trace, policy: KeepPolicy, *,
                 warn: Callable[[str], None] | None = None) -> None:
        import asyncio

        self.identity = identity
        self.hooks = hooks
        self.trace = trace
        self.policy = policy
        self.session: SmtpSession | None = None
        #: A connection error that ends this session's use (after ``max_breaks`` breaks, or a failed open).
        self.error: EsmtpError | None = None
        self.breaks = 0
        #: Messages the server accepted over the current connection (``postconnect`` runs only after one at least).
        self.accepted = 0
        self.last_used = 0.0
        #: A transaction announced while no session was open, for the next one.
        self.upcoming: tuple[Envelope, Message, list[str]] | None = None
        #: Held by the queue flush while a group of entries uses this session.
        self.lock = asyncio.Lock()
        self._warn = warn or (lambda text: program_warn(f"warning: {text} (the message was sent)"))

    def announce(self, envelope: Envelope, message: Message, recipients: list[str]) -> None:
        """The transaction that comes next (:meth:`SmtpSession.pipeline_next`), for the session that is open or,
        before the first message, for the one about to be opened."""
        if self.session is not None and self.session.is_open:
            self.session.pipeline_next(envelope, message, recipients)
            self.upcoming = None
        else:
            self.upcoming = (envelope, message, recipients)

    def broke(self, error: EsmtpError) -> None:
        """The connection failed during a transaction; after ``max_breaks`` times, give up on it for this run."""
        self.breaks += 1
        if self.policy.max_breaks is not None and self.breaks >= self.policy.max_breaks:
            self.error = error

    async def get(self, sender: str | None = None) -> SmtpSession:
        """The open session, ready for MAIL: the kept one if it is still usable, else a new one. Raises the
        connection error (for this and, when the policy says so, every later use)."""
        import asyncio

        session = self.session
        if session is not None:
            session.trace = self.trace
            for _ in range(3):  # let a hang-up that arrived while we waited for the caller be noticed
                await asyncio.sleep(0)
            idle = self.last_used and time.monotonic() - self.last_used > self.policy.idle
            if session.is_open and not idle and (session.pipelined or await session.reset()):
                # A header for this use too: transcripts of several runs (or messages) append to one file.
                self.trace.session(f"{session.server} (the open connection, reused)")
                self.trace.info(f"reusing the open connection to {session.server}")
                return session
            if session.is_open:
                await session.close()
            else:
                await session.abort()  # dropped by us or hung up by the server: free what is left of it
            self.session = None
            await self._ended()
        if self.error is not None:
            raise self.error
        try:
            if self.identity.preconnect:
                # In a thread: the command may take seconds (a tunnel, a link) while other sessions are sending.
                await asyncio.to_thread(preconnect, self.identity.preconnect, self.trace)
            session = await self._open(sender)
        except EsmtpError as error:
            if self.policy.max_breaks is not None:
                self.error = error
            raise
        self.session = session
        self.last_used = time.monotonic()
        if self.upcoming is not None:
            session.pipeline_next(*self.upcoming)
            self.upcoming = None
        return session

    async def _open(self, sender: str | None) -> SmtpSession:
        """A new session to the first of the identity's servers that answers (:mod:`esmtp.smtp.failover`)."""
        from esmtp.smtp import failover

        servers = failover.ordered(self.identity)
        tried: list[tuple[str, EsmtpError]] = []
        for index, server in enumerate(servers):
            session = new_session(server, self.hooks, self.trace, sender=sender)
            try:
                await session.open()
            except EsmtpError as error:
                if len(servers) == 1 or not failover.may_fail_over(error):
                    raise
                failover.remember(server)
                tried.append((session.server, error))
                if index + 1 < len(servers):
                    self.trace.info(f"{error}; trying the next server")
                continue
            return session
        raise failover.all_failed(tried)

    async def send(self, envelope: Envelope, message: Message, recipients: list[str]) -> str:
        """Send one message on the kept session; return the server's final reply. Errors are those of
        :meth:`SmtpSession.open` and :meth:`SmtpSession.send`, as in a run of its own."""
        kept = self.session
        session = await self.get(envelope.sender)
        reused = session is kept
        try:
            reply = await session.send(envelope, message, recipients)
        except TemporaryFailure as error:
            if not (reused and self.policy.resend_after_drop) or session.is_open or session.data_started:
                raise  # the server's answer on a live connection, or the message's outcome is unknown
            self.trace.info(f"the kept connection is gone ({error}); opening a new one")
            self.session = None
            await self._ended()
            session = await self.get(envelope.sender)
            reply = await session.send(envelope, message, recipients)
        finally:
            self.last_used = time.monotonic()
        self.accepted += 1
        return reply

    async def close(self) -> None:
        """QUIT the connection, if one is open, and run ``postconnect`` if mail went over it."""
        session, self.session = self.session, None
        if session is not None:
            await session.close()
            await self._ended()

    async def _ended(self) -> None:
        """A connection is over: run ``postconnect`` if the server accepted mail over it."""
        import asyncio

        accepted, self.accepted = self.accepted, 0
        command = self.identity.postconnect
        if accepted and command and (warning := await asyncio.to_thread(postconnect, command, self.trace)):
            self._warn(warning)


class _Slot:
    """A kept session and the event loop it runs on; ``lock`` is held while the loop runs (one transaction at a
    time per connection, in the caller's thread: no hand-over to another thread)."""

    __slots__ = ("kept", "lock", "loop")

    def __init__(self, kept: KeptSession) -> None:
        import asyncio

        self.kept = kept
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        with contextlib.suppress(EsmtpError, OSError):
            self.run(self.kept.close())
        self.loop.close()


class KeptSessions:
    """Kept sessions of a long-lived process, one per connection (:func:`connection_key`), for every thread.

    They belong to one configuration generation: :meth:`reset` when the configuration is loaded again (identities
    and secret sources are new objects then).
    """

    def __init__(self, policy: KeepPolicy | None = None) -> None:
        self.policy = policy or KeepPolicy()
        self._slots: dict[tuple[object, ...], _Slot] = {}
        self._lock = threading.Lock()

    def keeps(self, identity: Identity) -> bool:
        """Whether messages of ``identity`` go over a kept session (else over one of their own)."""
        return self.policy.bracketed or not (identity.preconnect or identity.postconnect)

    def send(self, identity: Identity, hooks: Hooks, trace: Trace, envelope: Envelope, message: Message,
             recipients: list[str]) -> str:
        """Send one message on the identity's kept session (opened if needed); return the server's final reply."""
        key = connection_key(identity)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(KeptSession(identity, hooks, trace, self.policy))
        if crashpoints.armed("data"):
            message = crashpoints.dying_message(message)
        with slot.lock:
            slot.kept.trace = trace
            return slot.run(slot.kept.send(envelope, message, recipients))

    def sweep(self) -> None:
        """QUIT the sessions idle for longer than the policy allows (called now and then by the server loop)."""
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            kept = slot.kept
            if kept.session is not None and now - kept.last_used > self.policy.idle and slot.lock.acquire(False):
                try:
                    with contextlib.suppress(EsmtpError, OSError):
                        slot.run(kept.close())
                finally:
                    slot.lock.release()

    def reset(self) -> None:
        """QUIT every kept session (and run the ``postconnect`` commands of those that sent mail)."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            with slot.lock:
                slot.close()

    close = reset
