"""The warm relay's SMTP sessions: one authenticated connection per identity, kept open across messages.

Each identity's session has an event loop of its own, run by the request thread that holds the identity's lock (one
transaction at a time per identity, no thread hand-over on the way). A kept connection whose last transaction
ended with the server's reply to the final dot carries the next MAIL as it is (RFC 5321 4.1.4: no RSET round
trip); after anything else it is RSET first. If the server has meanwhile said 421, dropped us or closed an idle
session, that shows before any of the message's data went out (no 354), and the message goes again on a new
connection, once; so a message never goes out on a connection in an unknown state. A connection idle for
:data:`SESSION_IDLE` seconds is closed with QUIT: servers close idle sessions after a few minutes (RFC 5321
4.5.3.2.7 asks for at least five), and we never wait for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from esmtp.errors import TemporaryFailure

if TYPE_CHECKING:
    from esmtp.config.model import Identity
    from esmtp.message import Message
    from esmtp.smtp.session import SmtpSession
    from esmtp.trace import Trace
    from esmtp.types import Envelope, SaslMechanism

#: Seconds a kept connection may stay idle before we QUIT it (well under any server's idle timeout).
SESSION_IDLE = 60.0
T = TypeVar("T")


class _Slot:
    """The kept session of one identity and its event loop; ``lock`` is held while the loop runs."""

    __slots__ = ("identity", "last_used", "lock", "loop", "session")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity  # kept alive: slots are keyed by its id()
        self.session: SmtpSession | None = None
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.last_used = 0.0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the slot's loop in this thread (the caller holds ``lock``)."""
        return self.loop.run_until_complete(coroutine)

    async def close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()


class SessionPool:
    """Kept SMTP sessions, keyed by identity (one configuration generation: :meth:`reset` on reload)."""

    def __init__(self) -> None:
        self._slots: dict[int, _Slot] = {}
        self._lock = threading.Lock()

    def send(self, identity: Identity, mechanisms: dict[str, SaslMechanism], trace: Trace, envelope: Envelope,
             message: Message, recipients: list[str]) -> str:
        """Send one message on the identity's kept session (opened if needed); return the server's final reply.

        Errors are those of :meth:`SmtpSession.open` and :meth:`SmtpSession.send`, as in a run of their own.
        """
        with self._lock:
            slot = self._slots.get(id(identity))
            if slot is None:
                slot = self._slots[id(identity)] = _Slot(identity)
        with slot.lock:
            try:
                return slot.run(self._send(slot, mechanisms, trace, envelope, message, recipients))
            finally:
                slot.last_used = time.monotonic()

    async def _send(self, slot: _Slot, mechanisms: dict[str, SaslMechanism], trace: Trace, envelope: Envelope,
                    message: Message, recipients: list[str]) -> str:
        from esmtp.smtp.session import SmtpSession

        session = slot.session
        if session is not None:
            session.trace = trace
            trace.info(f"reusing the open connection to {session.server}")
            if time.monotonic() - slot.last_used > SESSION_IDLE or not await session.reset():
                await session.close()
                session = slot.session = None
        if os.environ.get("ESMTP_RELAY_TEST_CRASH") == "data":
            message = _dying(message)
        if session is not None:
            try:
                return await session.send(envelope, message, recipients)
            except TemporaryFailure as error:
                if session.is_open or session.data_started:
                    raise  # the server's answer on a live connection, or the message's outcome is unknown
                trace.info(f"the kept connection is gone ({error}); opening a new one")
                slot.session = None
        session = SmtpSession(slot.identity, mechanisms, trace, sender=envelope.sender)
        await session.open()
        slot.session = session
        return await session.send(envelope, message, recipients)

    def sweep(self) -> None:
        """QUIT the sessions idle for longer than :data:`SESSION_IDLE` (called now and then by the server loop)."""
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            if slot.session is not None and now - slot.last_used > SESSION_IDLE and slot.lock.acquire(False):
                try:
                    slot.run(slot.close_session())
                finally:
                    slot.lock.release()

    def reset(self) -> None:
        """QUIT every kept session (the configuration changed: identities are new objects)."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            with slot.lock:
                slot.run(slot.close_session())
                slot.loop.close()

    close = reset


def _dying(message: Message) -> Message:
    """Test instrumentation (``ESMTP_RELAY_TEST_CRASH=data``): the message whose data kills this process after its
    first chunk went out, in the middle of DATA."""

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(message, name)

        def chunks(self, chunk_size: int = 1 << 16) -> Iterator[bytes]:
            for index, chunk in enumerate(message.chunks(chunk_size)):
                if index == 2:
                    os.kill(os.getpid(), 9)
                yield chunk

    return cast("Message", Dying())
