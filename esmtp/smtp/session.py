"""The SMTP client session: connect, EHLO, STARTTLS or implicit TLS, AUTH, then pipelined transactions.

Built on aiosmtplib for the connection, TLS and command/reply handling. aiosmtplib reads one reply per command, so a
small protocol subclass keeps replies that arrive together (PIPELINING, RFC 2920) instead of dropping them. Message
data is streamed from the spool file, CRLF-normalised and dot-stuffed on the way (:mod:`esmtp.smtp.wire`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from esmtp.config.model import Identity, helo_name
from esmtp.errors import (
    AuthenticationError,
    ConfigError,
    DeliveryError,
    EsmtpError,
    PermanentFailure,
    TemporaryFailure,
)
from esmtp.message import Message
from esmtp.smtp.diagnosis import Endpoint, connection_failure
from esmtp.smtp.network import NetworkPath, open_socket
from esmtp.smtp.pipelining import PipeliningProtocol, adopt
from esmtp.smtp.replies import describe, failure
from esmtp.smtp.replies import rejected as rejected_recipients
from esmtp.smtp.sasl import authenticate, choose_mechanisms, uses_oauth2
from esmtp.smtp.timeouts import IMPLICIT_TLS_PORT, IMPLICIT_TLS_SILENCE, Timeouts
from esmtp.smtp.transaction import Transaction, commands_for
from esmtp.smtp.wire import encode_data
from esmtp.trace import Trace
from esmtp.types import Credentials, Envelope, SaslMechanism, SecretSource

if TYPE_CHECKING:
    from esmtp.smtp.tls import TlsPolicy



class _Reconnect(Exception):
    """The server dropped the connection after refusing a bearer token; a fresh token is ready for a new one."""


class SmtpSession:
    """One connection to the identity's server, usable for several messages (the queue sends many per session)."""

    def __init__(
        self, identity: Identity, mechanisms: dict[str, SaslMechanism], trace: Trace, secrets: SecretSource, *,
        login: bool = True, sender: str | None = None,
    ) -> None:
        """Use :func:`esmtp.smtp.kept.new_session`, which passes the run's mechanisms and secret sources."""
        self.identity = identity
        #: The EHLO name: ``helo`` with %H and %D (the domain of ``sender``, the first message's) expanded.
        self.helo = helo_name(identity.helo, sender)
        self.mechanisms = mechanisms
        self.trace = trace
        #: Asked for the password or token when the configuration has no ``password`` (the plugins' sources).
        self.secrets = secrets
        #: Authenticate after EHLO when the identity has credentials (``--serverinfo`` without ``--login``: never).
        self.login = login
        self.authenticated = False
        #: The EHLO reply before STARTTLS (the capabilities offered in clear), when STARTTLS was used.
        self.plain_ehlo: str | None = None
        self._secret: str | None = None
        self._refreshed = False
        smtps = identity.implicit_tls
        self.host, self.port = identity.endpoint()
        self.server = f"{self.host}:{self.port}"
        self.smtps = smtps
        self.timeouts = Timeouts.of(identity)
        self.timeout = self.timeouts.command
        self.encrypted = False
        #: The server's greeting ("220 ..."), once connected.
        self.greeting = ""
        #: The TLS policy (context, pin, certificate files) once one is needed.
        self.tls: TlsPolicy | None = None
        self._tls_phase = False  # inside the TLS handshake or the first exchange after it
        self._smtp: aiosmtplib.SMTP | None = None
        #: The next transaction, announced by :meth:`pipeline_next` and not written yet.
        self._next: Transaction | None = None
        #: A transaction written after a final dot, whose replies the next :meth:`send` reads.
        self._written: Transaction | None = None
        #: Between transactions (after the greeting and AUTH, the reply to a final dot, or a RSET): MAIL may follow.
        self._ready = False
        #: Whether the last :meth:`send` wrote any of its message's data (after the server's 354).
        self.data_started = False

    @property
    def pipelined(self) -> bool:
        """Whether the next transaction's commands went out with the last final dot (:meth:`pipeline_next`)."""
        return self._written is not None

    @property
    def ehlo_reply(self) -> str:
        """The server's last EHLO (or HELO) reply text, capabilities included."""
        response = self._smtp.last_ehlo_response if self._smtp is not None else None
        return response.message if response is not None else ""

    def extensions(self) -> dict[str, str]:
        """The ESMTP extensions of the last EHLO reply (lower-case names: their parameters)."""
        return dict(self._smtp.esmtp_extensions) if self._smtp is not None else {}

    def auth_offered(self) -> list[str]:
        """The SASL mechanisms the server offers."""
        return [name.upper() for name in self._smtp.server_auth_methods] if self._smtp is not None else []

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS connection's SSL object, or None on a connection in clear."""
        if self._smtp is None:
            return None
        return self._smtp.get_transport_info("ssl_object")  # type: ignore[no-any-return]

    @property
    def is_open(self) -> bool:
        """Whether the connection is up and usable for another transaction (False before :meth:`open`, after
        :meth:`close`, after an error that dropped it, and once the server has hung up)."""
        return self._smtp is not None and self._smtp.is_connected

    # ---- commands --------------------------------------------------------------------------------------------------

    @property
    def _protocol(self) -> PipeliningProtocol:
        assert self._smtp is not None and self._smtp.protocol is not None
        return adopt(self._smtp.protocol)

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
        helo = self.helo
        self.trace.client(f"EHLO {helo}")
        try:
            response = await self._smtp.ehlo(hostname=helo)
        except aiosmtplib.SMTPHeloError as refused:
            # EHLO unknown to an old server: fall back to HELO (RFC 5321 3.2). Any other refusal (a 421 inside TLS
            # for a missing client certificate, say) goes to open(), which explains it.
            if refused.code not in (500, 501, 502, 504):
                raise
            self.trace.server(refused.code, refused.message)
            self.trace.client(f"HELO {helo}")
            response = await self._smtp.helo(hostname=helo)
        self.trace.server(response.code, response.message)

    # ---- session ---------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, greet, secure and authenticate, as the identity says. Errors name the server and its reply.

        With ``starttls required`` (or ``smtps enabled``) nothing but EHLO and STARTTLS is sent before TLS is up and
        the certificate checked; with ``starttls enabled`` a STARTTLS that fails is an error, never a downgrade.
        """
        try:
            try:
                await self._open()
            except _Reconnect:
                await self.abort()
                await self._open()  # once: _refreshed is set, so a second refusal is final
        except aiosmtplib.SMTPResponseException as error:
            await self.abort()
            response = SMTPResponse(error.code, error.message)
            if self._tls_phase and self.tls is not None:
                # The first reply inside TLS refuses us: typically "421 ... No client certificate presented".
                from esmtp.smtp import tls

                raise tls.refused_in_tls(response.code, response.message, self.tls, self.server) from None
            raise failure(self.server, "refused the connection", response) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            await self.abort()
            endpoint = Endpoint(self.host, self.port, self.smtps, self.helo, self.timeout)
            raise await connection_failure(error, endpoint, self.tls, in_handshake=self._tls_phase,
                                           encrypted=self.encrypted) from None
        except BaseException:
            await self.abort()
            raise

    async def _open(self) -> None:
        if self.smtps or self.identity.starttls != "disabled":
            from esmtp.smtp import tls  # not for a plain connection: 2 ms of a run of its own

            # Built before connecting: a certificate file that breaks the rules stops us before any traffic.
            self.tls = tls.make_policy(self.identity, self.host)
            if self.tls.client_cert:
                self.trace.info(f"client certificate: {self.tls.client_cert}")
        context = self.tls.context if self.tls is not None else None
        self.trace.session(self.server)
        path = NetworkPath.of(self.identity)
        how = "" if path.direct else " " + path.describe()
        self.trace.info(f"connecting to {self.server}{' (implicit TLS)' if self.smtps else ''}{how}")
        sock = await open_socket(self.host, self.port, self.timeouts.connect, path)
        self._smtp = aiosmtplib.SMTP(
            hostname=self.host,
            use_tls=self.smtps,
            start_tls=False,
            tls_context=context,
            timeout=self.timeouts.command,
            local_hostname=self.helo,
        )
        self._tls_phase = self.smtps
        greeting = await self._greet(sock)
        self.greeting = f"{greeting.code} {greeting.message}"
        if self.smtps:
            self._check_tls()
        self.trace.server(greeting.code, greeting.message)
        await self._ehlo()  # with TLS 1.3 a refused client certificate shows up here, as an alert
        self._tls_phase = False
        if not self.smtps and self.identity.starttls != "disabled":
            if self._smtp.supports_extension("starttls"):
                await self._starttls()
            elif self.identity.starttls == "required":
                raise PermanentFailure(
                    f"{self.server} does not offer STARTTLS and the configuration says 'starttls required'; "
                    "nothing was sent"
                )
            else:
                self.trace.info(
                    f"warning: {self.server} does not offer STARTTLS; continuing WITHOUT encryption "
                    "('starttls enabled'; use 'starttls required' to refuse this)"
                )
        identity = self.identity
        if self.login and (identity.username is not None or identity.password is not None or uses_oauth2(identity)):
            await self._authenticate()
            self.authenticated = True
        self._ready = True

    async def _greet(self, sock: socket.socket) -> SMTPResponse:
        """Read the greeting on the connected ``sock`` (after the TLS handshake with ``smtps enabled``)."""
        assert self._smtp is not None
        wait = self.timeouts.greeting
        suspect_tls = self.port == IMPLICIT_TLS_PORT and not self.smtps
        if suspect_tls:
            wait = min(wait, IMPLICIT_TLS_SILENCE)
        shown = wait  # the wait the messages name (what is left of it may be less, after a silence below)
        if not suspect_tls and not self.smtps and wait > IMPLICIT_TLS_SILENCE:
            # On any other port: silence, then a TLS handshake on a probe, is an implicit-TLS server too.
            from esmtp.smtp import implicit_tls

            started = time.monotonic()
            silent = not await implicit_tls.readable(sock, IMPLICIT_TLS_SILENCE)
            if silent and await implicit_tls.answers_tls(self.host, self.port, IMPLICIT_TLS_SILENCE):
                sock.close()
                raise PermanentFailure(implicit_tls.advice(self.server, IMPLICIT_TLS_SILENCE, probed=True))
            left = wait - (time.monotonic() - started)
            if left <= 0:
                sock.close()
                raise TemporaryFailure(f"{self.server} sent no greeting within {wait:g} s (timed out)")
            wait, shown = left, wait
        try:
            greeting = await self._smtp.connect(sock=sock, timeout=wait)
        except aiosmtplib.SMTPConnectError as error:
            if self._smtp.transport is None:
                sock.close()  # else the transport owns it
            if self.smtps or isinstance(error, aiosmtplib.SMTPResponseException):
                raise  # a TLS failure or a refusal: open() explains it
            if isinstance(error, aiosmtplib.SMTPConnectTimeoutError) and suspect_tls:
                from esmtp.smtp.implicit_tls import advice

                raise PermanentFailure(advice(self.server, wait, probed=False)) from None
            if isinstance(error, aiosmtplib.SMTPConnectTimeoutError):
                raise TemporaryFailure(f"{self.server} sent no greeting within {shown:g} s (timed out)") from None
            cause = error.__cause__ or error
            raise TemporaryFailure(f"{self.server} closed the connection before its greeting ({cause})") from None
        assert self._smtp.protocol is not None
        adopt(self._smtp.protocol)  # ours from the first command on (STARTTLS included)
        return greeting

    async def _starttls(self) -> None:
        assert self._smtp is not None and self.tls is not None
        self.plain_ehlo = self.ehlo_reply
        self.trace.client("STARTTLS")
        self._tls_phase = True
        try:
            response = await self._smtp.starttls(tls_context=self.tls.context, server_hostname=self.host)
        except aiosmtplib.SMTPResponseException as error:
            # Not a downgrade either: a refused STARTTLS ends the session, as a failed handshake does.
            self.trace.server(error.code, error.message)
            raise failure(self.server, "refused STARTTLS", SMTPResponse(error.code, error.message)) from None
        self.trace.server(response.code, response.message)
        self._check_tls()
        await self._ehlo()
        self._tls_phase = False

    def _check_tls(self) -> None:
        """The handshake is done: check the pin, note the connection as encrypted, say how with -v."""
        assert self._smtp is not None and self.tls is not None
        self.trace.info(self.tls.check_peer(self._smtp.get_transport_info("ssl_object"), self.server))
        self.encrypted = True

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
        username = self.identity.username or ""
        secret = self._secret if self._secret is not None else self._lookup_secret(mechanism)
        retrying = False  # a fresh token is being tried on this connection, after the server refused the old one
        while True:
            credentials = Credentials(username, secret, self.host, dict(self.identity.options))
            try:
                await authenticate(self._command, mechanism, credentials, server=self.server)
                break
            except AuthenticationError:
                try:
                    fresh = self._fresh_token(mechanism, secret)
                except EsmtpError:  # the refresh itself failed (invalid_grant, endpoint down): that is the news
                    await self._quit_quietly()
                    raise
                if fresh is None:
                    await self._quit_quietly()
                    raise
                secret = self._secret = fresh
                if not self._smtp.is_connected:
                    raise _Reconnect from None
                self.trace.info(f"trying {mechanism.name} again with a fresh token")
                retrying = True
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not retrying:
                    raise
                raise _Reconnect from None  # dropped after refusing the old token: a new connection, once
            except DeliveryError:
                await self._quit_quietly()
                raise
        self.trace.info(f"authenticated as {credentials.username} with {mechanism.name}")

    def _lookup_secret(self, mechanism: SaslMechanism) -> str:
        """The password (or token) from the configuration, else from the plugins' secret sources."""
        if self.identity.password is not None:
            return self.identity.password
        secret = self.secrets(self.identity, self.host, mechanism, None, self.trace)
        if secret is None:
            where = f"{self.identity.source}:{self.identity.lineno}: " if self.identity.source else ""
            raise ConfigError(
                f"{where}no password for {self.identity.username or '(no username)'} at {self.host}: set 'password' "
                "or 'password_command', store one with 'esmtp --store-password', or add it to ~/.netrc"
            )
        self._secret = secret
        return secret

    def _fresh_token(self, mechanism: SaslMechanism, rejected: str) -> str | None:
        """After a refused bearer token: a fresh one from the sources (once per session), else None."""
        if not mechanism.bearer or self._refreshed or self.identity.password is not None:
            return None
        self._refreshed = True
        fresh = self.secrets(self.identity, self.host, mechanism, rejected, self.trace)
        return fresh if fresh is not None and fresh != rejected else None

    async def _quit_quietly(self) -> None:
        with contextlib.suppress(TimeoutError, aiosmtplib.SMTPException, OSError):
            await self._command(b"QUIT")  # say goodbye; the caller then drops the connection

    async def close(self) -> None:
        """Say QUIT (errors ignored: the mail is already accepted or refused)."""
        if self._smtp is None:
            return
        try:
            # Not with pipelined commands in flight: after their DATA the server would take QUIT as message text.
            if self._smtp.is_connected and self._written is None:
                self.trace.client("QUIT")
                response = await self._smtp.quit(timeout=5)
                self.trace.server(response.code, response.message)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            await self.abort()

    async def reset(self) -> bool:
        """Make a kept connection ready for another transaction; False (connection dropped) if it cannot be, so that
        the caller opens a new one: nothing of a message has been sent yet.

        After a finished transaction (the server answered the final dot) the session is ready for MAIL as it is
        (RFC 5321 4.1.4), so no RSET round trip is spent; a connection the server has closed meanwhile then fails
        before any data (see :attr:`data_started`). Otherwise RSET.
        """
        if not self.is_open or self._written is not None:
            await self.abort()
            return False
        if self._ready:
            return True
        try:
            code, _ = await self._command(b"RSET")
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            await self.abort()
        self._ready = code == 250
        return code == 250

    async def abort(self) -> None:
        """Drop the connection (a transaction in progress is abandoned: the server never got its final dot)."""
        self._next = self._written = None
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    # ---- transactions ----------------------------------------------------------------------------------------------

    def pipeline_next(self, envelope: Envelope, message: Message, recipients: list[str]) -> None:
        """Announce the transaction of the next :meth:`send` on this session (the queue knows what comes next).

        When the server offers PIPELINING, its MAIL, RCPT and DATA then go out in the same write as the final dot of
        the message being sent (RFC 2920 lets message content open a group of pipelined commands), so every further
        message costs one round trip instead of two. Only the commands go early: that message's data waits, as
        always, for its 354, which the server sends after its reply to the dot before. The next send() on this
        session must be for this envelope and these recipients (else it drops the connection), or the session is
        closed.
        """
        self._next = None
        if self._smtp is None or not self._smtp.supports_extension("pipelining"):
            return
        with contextlib.suppress(DeliveryError):  # e.g. SMTPUTF8 missing: send() reports it
            self._next = commands_for(self._smtp, self.server, envelope, message, recipients, self.trace)

    async def send(self, envelope: Envelope, message: Message, recipients: list[str], *,
                   meanwhile: Callable[[], None] | None = None) -> str:
        """Send one message to ``recipients``; return the server's final reply.

        MAIL, every RCPT and DATA go in one write when the server offers PIPELINING (or went out already with the
        previous message's final dot, see :meth:`pipeline_next`). If any recipient is refused no data is sent to
        anybody, and RecipientsRejected lists each one with the server's reply.

        ``meanwhile`` is called once the final dot is written, while the server decides: the caller's own work
        then overlaps the server's without a second task. Its exceptions are the caller's (they propagate as they
        are, and leave the message's outcome unknown: the caller should let them end the session).
        """
        self._ready = self.data_started = False
        try:
            return await self._send_and_wait(envelope, message, recipients, meanwhile)
        except EsmtpError as error:
            error.data_started = self.data_started  # for failover: may the server have the message?
            raise

    async def _send_and_wait(self, envelope: Envelope, message: Message, recipients: list[str],
                             meanwhile: Callable[[], None] | None) -> str:
        try:
            await self._send(envelope, message, recipients)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise await self._broken(error) from None
        if meanwhile is not None:
            meanwhile()
        try:
            final = await self._protocol.read_response(timeout=self.timeouts.final_reply)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise await self._broken(error) from None
        self.trace.server(final.code, final.message)
        self._ready = self._written is None  # the transaction is over, whatever the reply
        if final.code != 250:
            raise failure(self.server, "refused the message", final)
        return f"{final.code} {final.message}"

    async def _broken(self, error: BaseException) -> DeliveryError:
        """Drop the connection after ``error`` (the server's state is unknown); return what to report."""
        await self.abort()
        if isinstance(error, aiosmtplib.SMTPResponseException):
            return failure(self.server, "failed", SMTPResponse(error.code, error.message))
        return TemporaryFailure(f"{self.server}: {describe(error)}")

    async def _send(self, envelope: Envelope, message: Message, recipients: list[str]) -> None:
        """Everything up to the final dot (and the next transaction's commands that go with it)."""
        assert self._smtp is not None
        protocol = self._protocol
        pipelining = self._smtp.supports_extension("pipelining")
        written, self._written = self._written, None
        replies: list[SMTPResponse] = []
        if written is not None:
            if not written.matches(envelope, recipients):
                # Another transaction's commands are out: only a new connection gets rid of them safely.
                await self.abort()
                raise TemporaryFailure(f"{self.server}: pipelined commands out of order; connection dropped")
            transaction = written
            for _ in transaction.commands:
                replies.append(await self._reply(replies))
        else:
            announced = self._next
            if announced is not None and announced.matches(envelope, recipients):
                transaction, self._next = announced, None
            else:  # not announced, or the announcement is for the message after this one: keep it
                transaction = commands_for(self._smtp, self.server, envelope, message, recipients, self.trace)
            commands = transaction.commands
            if pipelining:
                for command in commands:
                    self.trace.client(command)
                protocol.write(transaction.wire)
                for _ in commands:
                    replies.append(await self._reply(replies))
            else:
                for command in commands:
                    self.trace.client(command)
                    protocol.write(command.encode("utf-8") + b"\r\n")
                    replies.append(await self._reply(replies))
                    if replies[-1].code >= 400:
                        break
        for reply in replies:
            self.trace.server(reply.code, reply.message)
        expected = len(transaction.commands)
        mail_reply, rcpt_replies, data_reply = replies[0], replies[1:1 + len(recipients)], replies[-1]

        if mail_reply.code != 250:
            await self._reset(data_reply if len(replies) == expected else None)
            raise failure(self.server, f"refused sender <{envelope.sender}>", mail_reply)
        rejected = {
            rcpt: f"{reply.code} {reply.message}"
            for rcpt, reply in zip(recipients, rcpt_replies, strict=False)
            if reply.code not in (250, 251)
        }
        if rejected or len(rcpt_replies) < len(recipients):
            await self._reset(data_reply if len(replies) == expected else None)
            raise rejected_recipients(self.server, rejected)
        if data_reply.code != 354:
            await self._reset(None)
            raise failure(self.server, "refused DATA", data_reply)

        self.data_started = True
        last = b""
        for index, chunk in enumerate(encode_data(message.chunks())):
            if index:
                protocol.write(last)
                await protocol.drain()
            last = chunk
        # The next transaction, if one was announced meanwhile, rides along with the final dot.
        following, self._next = self._next, None
        protocol.write(last + following.wire if following is not None else last)  # one write: no Nagle stall
        self._written = following
        self.trace.client(f"<{message.size} bytes of data>")
        self.trace.client(".")
        for command in following.commands if following is not None else ():
            self.trace.client(command)
        await protocol.drain()

    async def _reply(self, replies: list[SMTPResponse]) -> SMTPResponse:
        """The next reply of a transaction. A server that said 421 and closed the connection (RFC 5321 3.8) ends the
        transaction with its 421, not with "connection lost": the reason is the server's."""
        try:
            return await self._protocol.read_response(timeout=self.timeout)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            closing = next((reply for reply in replies if reply.code == 421), None)
            if closing is None:
                raise
            for reply in replies:
                self.trace.server(reply.code, reply.message)
            await self.abort()
            raise failure(self.server, "closed the connection", closing) from None

    async def _reset(self, data_reply: SMTPResponse | None) -> None:
        """Leave the transaction. After a 354 the only safe way out is to drop the connection (no partial mail)."""
        if data_reply is not None and data_reply.code == 354:
            await self.abort()
            return
        try:
            code, _ = await self._command(b"RSET")
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            await self.abort()
        else:
            self._ready = code == 250
