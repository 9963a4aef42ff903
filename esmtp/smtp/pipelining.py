"""The one place that reaches into aiosmtplib's internals: a protocol that keeps pipelined replies.

Why it exists: aiosmtplib reads exactly one reply per command it writes, and drops whatever else arrives (its
``data_received`` ignores data once a reply is waiting, or while no command is pending). PIPELINING (RFC 2920)
writes MAIL, RCPT... and DATA in one go and reads their replies afterwards, which often arrive in one packet; the
queue even sends the next message's commands with the previous final dot. So this subclass keeps every byte and
hands out the replies one by one, and reads a reply already in the buffer without a trip through the event loop.

Because it replaces ``data_received``, it also has to carry the defences aiosmtplib put there, whatever version is
installed (the dependency range in pyproject.toml is the range the CI tests, lowest and newest):

- the bound on a reply's size (``MAX_REPLY_BYTES``): a server that streams data without a line end must not grow
  our memory without bound; the reply fails with "Response too long" instead;
- after STARTTLS's 220, anything the server sent in the clear before the handshake is discarded (RFC 3207 4.2,
  the "STARTTLS command injection" class): a man in the middle must not be able to pre-load a reply that would be
  read as if it came over TLS.

What would make it unnecessary: an aiosmtplib API to write several commands and read their replies in turn (for
example ``SMTPProtocol.read_response`` keeping replies that arrive early, or a public ``execute_pipelined(commands)``
returning one reply per command). With that, this module and the class swap in :mod:`esmtp.smtp.session` go away.

tests/test_pipelining.py checks every private name used here against the installed aiosmtplib, so an upgrade that
changes them fails loudly there instead of quietly in a user's session.
"""

from __future__ import annotations

import asyncio
import ssl

from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

#: Longest reply accepted (all lines of a multi-line reply together); far above any real EHLO reply (a few KB).
MAX_REPLY_BYTES = 32 * 1024
#: The reply code aiosmtplib gives a reply it cannot parse.
INVALID_REPLY = -1

#: The private attributes and methods of aiosmtplib's SMTPProtocol this module relies on (checked by the tests).
PRIVATE_API = ("_buffer", "_response_waiter", "_loop", "_read_response_from_buffer", "_drain_helper")


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, keeping every reply that arrives, so that pipelined replies can be read in turn."""

    def data_received(self, data: bytes) -> None:
        if self._response_waiter is None:
            return
        self._buffer.extend(data)
        self._deliver_buffered()

    def _deliver_buffered(self) -> None:
        waiter = self._response_waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._read_response_from_buffer()
        except Exception as error:  # noqa: BLE001  (whatever the parse raises is the waiting command's error)
            _fail(waiter, error)
            return
        if response is not None:
            waiter.set_result(response)
        elif len(self._buffer) > MAX_REPLY_BYTES:
            # No complete reply within the bound: the server is not speaking SMTP (or wants our memory).
            del self._buffer[:]
            _fail(waiter, SMTPResponseException(INVALID_REPLY, f"Response too long (over {MAX_REPLY_BYTES} bytes)"))

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        waiter = self._response_waiter
        if waiter is not None and waiter.done() and not waiter.cancelled():
            # Already here (a pipelined reply that came with the one before): no trip through the event loop.
            self._response_waiter = self._loop.create_future() if self.transport is not None else None
            response = waiter.result()  # or its exception
        else:
            response = await super().read_response(timeout)
        self._deliver_buffered()  # the next reply may already be in the buffer
        return response

    async def start_tls(self, tls_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> SMTPResponse:
        response = await super().start_tls(tls_context, server_hostname=server_hostname, timeout=timeout)
        self.forget_cleartext()
        return response

    def forget_cleartext(self) -> None:
        """Drop what arrived in the clear after STARTTLS's 220 (already parsed into a reply, or still raw)."""
        del self._buffer[:]
        waiter = self._response_waiter
        if waiter is not None and waiter.done():
            if not waiter.cancelled():
                waiter.exception()  # retrieved: no "exception was never retrieved" warning
            self._response_waiter = self._loop.create_future() if self.transport is not None else None

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark (flow control)."""
        await self._drain_helper()


def adopt(protocol: SMTPProtocol) -> PipeliningProtocol:
    """Give aiosmtplib's protocol (built inside its connect) the pipelining behaviour: same state, more methods."""
    if not isinstance(protocol, PipeliningProtocol):
        protocol.__class__ = PipeliningProtocol
    return protocol  # type: ignore[return-value]


def _fail(waiter: asyncio.Future[SMTPResponse], error: BaseException) -> None:
    """Set ``error`` on ``waiter`` and mark it retrieved (nobody may await it if the server hangs up meanwhile)."""
    waiter.set_exception(error)
    waiter.exception()
