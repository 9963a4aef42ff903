"""The SMTP client session: connect, EHLO, STARTTLS or implicit TLS, AUTH, then pipelined transactions.

Built on aiosmtplib for the connection, TLS and command/reply handling. aiosmtplib reads one reply per command, so a
small protocol subclass keeps replies that arrive together (PIPELINING, RFC 2920) instead of dropping them. Message
data is streamed from the spool file, CRLF-normalised and dot-stuffed on the way (:mod:`esmtp.wire`).
"""

from __future__ import annotations

import asyncio
import socket

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from .config import Identity
from .errors import EX_NOUSER, EX_TEMPFAIL, DeliveryError, PermanentFailure, TemporaryFailure
from .message import Message
from .sasl import authenticate, choose_mechanisms
from .trace import Trace
from .types import Credentials, Envelope, SaslMechanism
from .wire import encode_data

DEFAULT_TIMEOUT = 60.0
#: RFC 5321 4.5.3.2.6: wait at least 10 minutes for the reply to the final dot.
FINAL_REPLY_TIMEOUT = 600.0
#: Port when ``hostname`` has none: submission (587), or 465 with ``smtps enabled``.
SUBMISSION_PORT = 587
SMTPS_PORT = 465


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
        except Exception as error:
            self._set_response_exception(waiter, error)
        else:
            if response is not None:
                waiter.set_result(response)

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        response = await super().read_response(timeout)
        self._deliver_buffered()  # the next reply may already be in the buffer
        return response

    async def drain(self) -> None:
        await self._drain_helper()


def _failure(server: str, what: str, response: SMTPResponse) -> DeliveryError:
    reply = f"{response.code} {response.message}".strip()
    text = f"{server} {what}: {reply}"
    if 400 <= response.code < 500:
        return TemporaryFailure(text, code=response.code, reply=reply)
    return PermanentFailure(text, code=response.code, reply=reply)


def xtext(value: str) -> str:
    """RFC 3461 xtext: ``+XX`` for ``+``, ``=`` and anything outside printable ASCII."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in value)


class RecipientsRejected(DeliveryError):
    """Some RCPT TO commands were refused; no data was sent to anybody (all or nothing, as esmtp 1.2)."""

    def __init__(self, message: str, *, rejected: dict[str, str], exit_code: int) -> None:
        super().__init__(message, exit_code=exit_code)
        self.rejected = rejected


class SmtpSession:
    """One connection to the identity's server, usable for several messages (the queue sends many per session)."""

    def __init__(self, identity: Identity, mechanisms: dict[str, SaslMechanism], trace: Trace) -> None:
        self.identity = identity
        self.mechanisms = mechanisms
        self.trace = trace
        smtps = identity.options.get("smtps") == "enabled"
        self.host, self.port = identity.server(SMTPS_PORT if smtps else SUBMISSION_PORT)
        self.server = f"{self.host}:{self.port}"
        self.smtps = smtps
        self.timeout = float(identity.options.get("timeout") or DEFAULT_TIMEOUT)
        self.encrypted = False
        self._smtp: aiosmtplib.SMTP | None = None

    # ---- commands --------------------------------------------------------------------------------------------------

    @property
    def _protocol(self) -> PipeliningProtocol:
        assert self._smtp is not None and self._smtp.protocol is not None
        protocol = self._smtp.protocol
        if not isinstance(protocol, PipeliningProtocol):
            # aiosmtplib builds its own protocol; give it the pipelining behaviour (same state, more methods).
            protocol.__class__ = PipeliningProtocol
        return protocol  # type: ignore[return-value]

    async def _command(self, line: bytes, secret: bool = False) -> tuple[int, str]:
        shown = line.decode("utf-8", "replace")
        if secret:
            shown = " ".join(shown.split()[:2]) + " ****" if shown.startswith("AUTH ") else "****"
        self.trace.client(shown)
        response = await self._protocol.execute_command(line, timeout=self.timeout)
        self.trace.server(response.code, response.message)
        return response.code, response.message

    async def _ehlo(self) -> None:
        assert self._smtp is not None
        helo = self.identity.helo or socket.gethostname()
        self.trace.client(f"EHLO {helo}")
        response = await self._smtp.ehlo(hostname=helo)
        self.trace.server(response.code, response.message)
        if response.code in (500, 501, 502, 504):
            self.trace.client(f"HELO {helo}")
            response = await self._smtp.helo(hostname=helo)
            self.trace.server(response.code, response.message)
        if response.code != 250:
            raise _failure(self.server, "refused EHLO/HELO", response)

    # ---- session ---------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, greet, secure and authenticate, as the identity says. Errors name the server and its reply."""
        try:
            await self._open()
        except aiosmtplib.SMTPResponseException as error:
            await self.abort()
            raise _failure(self.server, "refused the connection", SMTPResponse(error.code, error.message)) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            await self.abort()
            raise TemporaryFailure(f"{self.server}: {_describe(error)}") from None
        except BaseException:
            await self.abort()
            raise

    async def _open(self) -> None:
        from . import tls

        context = tls.make_context(self.identity, self.host) if self.smtps or self.identity.starttls != "disabled" \
            else None
        self._smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.smtps,
            start_tls=False,
            tls_context=context,
            timeout=self.timeout,
            local_hostname=self.identity.helo or socket.gethostname(),
        )
        self.trace.info(f"connecting to {self.server}{' (implicit TLS)' if self.smtps else ''}")
        greeting = await self._smtp.connect()
        self.trace.server(greeting.code, greeting.message)
        self.encrypted = self.smtps
        await self._ehlo()
        if not self.smtps and self.identity.starttls != "disabled":
            if self._smtp.supports_extension("starttls"):
                assert context is not None
                self.trace.client("STARTTLS")
                response = await self._smtp.starttls(tls_context=context, server_hostname=self.host)
                self.trace.server(response.code, response.message)
                self.encrypted = True
                await self._ehlo()
            elif self.identity.starttls == "required":
                raise PermanentFailure(
                    f"{self.server} does not offer STARTTLS and the configuration says 'starttls required'; "
                    "nothing was sent"
                )
        if self.identity.username is not None or self.identity.password is not None:
            await self._authenticate()

    async def _authenticate(self) -> None:
        """AUTH with the best usable mechanism, driven here over the raw command API (never aiosmtplib's login).

        A refusal ends the session after a QUIT: no other mechanism is tried and no mail goes out unauthenticated.
        """
        assert self._smtp is not None
        offered = [name.upper() for name in self._smtp.server_auth_methods]
        chosen = choose_mechanisms(self.identity, self.mechanisms, offered, encrypted=self.encrypted,
                                   server=self.server)
        mechanism = chosen[0]
        self.trace.info(f"server offers AUTH {' '.join(offered) or '(none)'}; using {mechanism.name}")
        credentials = Credentials(self.identity.username or "", self.identity.password or "", self.host)
        try:
            await authenticate(self._command, mechanism, credentials, server=self.server)
        except DeliveryError:
            import contextlib

            with contextlib.suppress(TimeoutError, aiosmtplib.SMTPException, OSError):
                await self._command(b"QUIT")  # say goodbye; the caller then drops the connection
            raise
        self.trace.info(f"authenticated as {credentials.username} with {mechanism.name}")

    async def close(self) -> None:
        """Say QUIT (errors ignored: the mail is already accepted or refused)."""
        if self._smtp is None:
            return
        try:
            if self._smtp.is_connected:
                self.trace.client("QUIT")
                response = await self._smtp.quit(timeout=5)
                self.trace.server(response.code, response.message)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            await self.abort()

    async def abort(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    # ---- transactions ----------------------------------------------------------------------------------------------

    def _mail_params(self, envelope: Envelope, message: Message) -> list[str]:
        assert self._smtp is not None
        smtp = self._smtp
        params = []
        if smtp.supports_extension("size"):
            params.append(f"SIZE={message.size}")
        body = envelope.body_type or ("8BITMIME" if message.eight_bit else None)
        if body and smtp.supports_extension("8bitmime"):
            params.append(f"BODY={body}")
        elif body == "8BITMIME":
            self.trace.info(f"{self.server} does not offer 8BITMIME; sending 8-bit data as is")
        if not (envelope.sender + "".join(envelope.recipients)).isascii():
            if not smtp.supports_extension("smtputf8"):
                raise PermanentFailure(f"{self.server} does not offer SMTPUTF8, needed for a non-ASCII address")
            params.append("SMTPUTF8")
        if smtp.supports_extension("dsn"):
            if envelope.ret:
                params.append(f"RET={envelope.ret}")
            if envelope.envid:
                params.append(f"ENVID={xtext(envelope.envid)}")
        elif envelope.ret or envelope.envid or envelope.notify:
            self.trace.info(f"{self.server} does not offer DSN; -N, -R and -V are not passed on")
        return params

    async def send(self, envelope: Envelope, message: Message, recipients: list[str]) -> str:
        """Send one message to ``recipients``; return the server's final reply.

        MAIL, every RCPT and DATA go in one write when the server offers PIPELINING. If any recipient is refused no
        data is sent to anybody, and RecipientsRejected lists each one with the server's reply.
        """
        try:
            return await self._send(envelope, message, recipients)
        except aiosmtplib.SMTPResponseException as error:
            await self.abort()
            raise _failure(self.server, "failed", SMTPResponse(error.code, error.message)) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            await self.abort()
            raise TemporaryFailure(f"{self.server}: {_describe(error)}") from None

    async def _send(self, envelope: Envelope, message: Message, recipients: list[str]) -> str:
        assert self._smtp is not None
        protocol = self._protocol
        mail = " ".join([f"MAIL FROM:<{envelope.sender}>", *self._mail_params(envelope, message)])
        notify = f" NOTIFY={envelope.notify}" if envelope.notify and self._smtp.supports_extension("dsn") else ""
        commands = [mail, *(f"RCPT TO:<{rcpt}>{notify}" for rcpt in recipients), "DATA"]
        encoded = [command.encode("utf-8") + b"\r\n" for command in commands]
        pipelining = self._smtp.supports_extension("pipelining")
        replies: list[SMTPResponse] = []
        if pipelining:
            for command in commands:
                self.trace.client(command)
            protocol.write(b"".join(encoded))
            for _ in commands:
                replies.append(await protocol.read_response(timeout=self.timeout))
        else:
            for command, line in zip(commands, encoded, strict=True):
                self.trace.client(command)
                protocol.write(line)
                replies.append(await protocol.read_response(timeout=self.timeout))
                if replies[-1].code >= 400:
                    break
        for reply in replies:
            self.trace.server(reply.code, reply.message)
        mail_reply, rcpt_replies, data_reply = replies[0], replies[1:1 + len(recipients)], replies[-1]

        if mail_reply.code != 250:
            await self._reset(data_reply if len(replies) == len(commands) else None)
            raise _failure(self.server, f"refused sender <{envelope.sender}>", mail_reply)
        rejected = {
            rcpt: f"{reply.code} {reply.message}"
            for rcpt, reply in zip(recipients, rcpt_replies, strict=False)
            if reply.code not in (250, 251)
        }
        if rejected or len(rcpt_replies) < len(recipients):
            await self._reset(data_reply if len(replies) == len(commands) else None)
            raise _rejected(self.server, rejected)
        if data_reply.code != 354:
            await self._reset(None)
            raise _failure(self.server, "refused DATA", data_reply)

        for chunk in encode_data(message.chunks()):
            protocol.write(chunk)
            await protocol.drain()
        self.trace.client(f"<{message.size} bytes of data>")
        self.trace.client(".")
        final = await protocol.read_response(timeout=max(self.timeout, FINAL_REPLY_TIMEOUT))
        self.trace.server(final.code, final.message)
        if final.code != 250:
            raise _failure(self.server, "refused the message", final)
        return f"{final.code} {final.message}"

    async def _reset(self, data_reply: SMTPResponse | None) -> None:
        """Leave the transaction. After a 354 the only safe way out is to drop the connection (no partial mail)."""
        if data_reply is not None and data_reply.code == 354:
            await self.abort()
            return
        try:
            await self._command(b"RSET")
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            await self.abort()


def _rejected(server: str, rejected: dict[str, str]) -> RecipientsRejected:
    lines = "\n".join(f"  {rcpt}: {reply}" for rcpt, reply in rejected.items())
    temporary = all(reply.startswith("4") for reply in rejected.values())
    return RecipientsRejected(
        f"{server} refused {len(rejected)} recipient(s); the message was not sent to anybody:\n{lines}",
        rejected=rejected,
        exit_code=EX_TEMPFAIL if temporary else EX_NOUSER,
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError | aiosmtplib.SMTPTimeoutError):
        return f"timed out ({error})" if str(error) else "timed out"
    text = str(error) or type(error).__name__
    import ssl

    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    return text
