"""``esmtp --listen [ADDRESS:]PORT``: the SMTP listener for applications and containers that speak SMTP.

Each client connection is a :class:`ListenerDialogue` (the same state machine as ``-bs``, plus AUTH, STARTTLS and
the sender policy) driven by a coroutine: many clients cost one thread and a few kilobytes each while they are
idle. What blocks runs in a bounded pool of worker threads: each message through the same pipeline as
``sendmail rcpt < message`` (:class:`esmtp.server.relay.PipelineRelay`), the reply to its final dot being the real
outcome, and password checks (scrypt). All clients share the kept upstream sessions (``RunContext.sessions``): one
authenticated connection per identity, used by one message at a time.

Every wait is bounded: a command line must arrive whole within ``listen_idle_timeout`` (a client that sends a byte
a minute is cut off, not kept), a message's DATA within ``listen_data_timeout``; a line longer than the limit is
dropped as it arrives, and the DATA goes to a spool file beyond its first 64 KiB, so a client never holds more than
about 200 KiB of memory. On SIGTERM the listener stops accepting, answers idle clients 421, lets messages whose DATA is
arriving finish (for :data:`~esmtp.server.settings.GRACE` seconds, then 421: the client keeps the message), waits
for every delivery in progress to be answered, and exits: a message is delivered and answered 250, or not
delivered and answered 4xx (or not answered at all), never both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from esmtp.errors import ConfigError, DataError
from esmtp.server.dialogue import COMMAND_LIMIT, Dialogue, Transaction
from esmtp.server.input import DataLines, LineBuffer, Reject

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    from esmtp.config.model import Config
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.server.clients import Client, ClientFile
    from esmtp.server.dialogue import Relay
    from esmtp.server.settings import ListenSettings

#: A message's DATA is held in memory up to this size, then in an unnamed file (at most this much per client).
SPOOL_IN_MEMORY = 64 * 1024
#: Failed AUTH attempts on one connection before it is closed.
MAX_AUTH_FAILURES = 3
_SSL_HANDSHAKE_TIMEOUT = 30.0


class Closing(Exception):
    """The connection ends now, after ``reply`` is written."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class ListenerDialogue(Dialogue):
    """The SMTP dialogue of one client of the listener: the ``-bs`` dialogue plus AUTH, STARTTLS, a sender policy
    and a ``Received:`` field naming the client."""

    banner = "ESMTP esmtp"

    def __init__(self, relay: Relay, settings: ListenSettings, *, hostname: str, peer: str, clients: ClientFile | None,
                 tls_available: bool, tls_active: bool) -> None:
        super().__init__(relay, hostname=hostname, max_size=settings.max_size, max_recipients=settings.max_recipients)
        self.settings = settings
        self.peer = peer
        self.clients = clients
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.user: Client | None = None
        self.auth_failures = 0
        #: Set by STARTTLS after its 220: the driver starts TLS, then calls :meth:`tls_started`.
        self.starttls = False
        #: Set when the session must end after the queued replies (too many AUTH failures).
        self.closing = False

    # ---- EHLO ----------------------------------------------------------------------------------------------------

    def extensions(self) -> list[str]:
        offered = super().extensions()
        if self.tls_available and not self.tls_active:
            offered.insert(0, "STARTTLS")
        if self.clients is not None and self.user is None and self._auth_allowed():
            offered.insert(0, "AUTH PLAIN LOGIN")
        return offered

    def _auth_allowed(self) -> bool:
        return self.tls_active or self.settings.auth_plaintext

    # ---- STARTTLS ------------------------------------------------------------------------------------------------

    def smtp_STARTTLS(self, argument: str) -> bool:
        if not self.tls_available:
            raise Reject("502 5.5.1 STARTTLS is not offered (no listen_tls_cert)")
        if self.tls_active:
            raise Reject("503 5.5.1 TLS is already active")
        if argument:
            raise Reject("501 5.5.4 Syntax: STARTTLS")
        self.reply("220 2.0.0 Ready to start TLS")
        self.starttls = True
        return True

    def tls_started(self) -> None:
        """RFC 3207 4.2: after the handshake the client starts again with EHLO; nothing said before counts."""
        self.starttls = False
        self.tls_active = True
        self.extended = False
        self.transaction = None
        self.helo = ""

    # ---- AUTH ----------------------------------------------------------------------------------------------------

    def smtp_AUTH(self, argument: str) -> bool:
        if self.clients is None:
            raise Reject("502 5.5.1 AUTH is not offered (no listen_auth_file)")
        if not self.extended:
            raise Reject("503 5.5.1 Error: send EHLO first")
        if self.user is not None:
            raise Reject("503 5.5.1 Already authenticated")
        if self.transaction is not None:
            raise Reject("503 5.5.1 AUTH is not allowed during a mail transaction")
        if not self._auth_allowed():
            raise Reject("538 5.7.11 Encryption required: use STARTTLS before AUTH")
        mechanism, _, initial = argument.partition(" ")
        mechanism, initial = mechanism.upper(), initial.strip()
        if mechanism == "PLAIN":
            if initial:
                return self._plain(initial)
            self.reply("334 ")
            self.continuation = self._plain
        elif mechanism == "LOGIN":
            if initial:
                return self._login_user(initial)
            self.reply("334 VXNlcm5hbWU6")  # "Username:"
            self.continuation = self._login_user
        else:
            raise Reject("504 5.5.4 Unrecognised authentication mechanism: use PLAIN or LOGIN")
        return True

    @staticmethod
    def _decode(text: str) -> str:
        import base64
        import binascii

        if text == "*":
            raise Reject("501 5.0.0 Authentication cancelled")
        try:
            return base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Reject("501 5.5.2 Cannot decode the response (base64 of UTF-8)") from None

    def _plain(self, text: str) -> bool:
        parts = self._decode(text).split("\0")
        if len(parts) != 3 or not parts[1]:
            raise Reject("501 5.5.2 PLAIN takes authzid NUL user NUL password")
        authzid, name, password = parts
        if authzid and authzid != name:
            raise Reject("535 5.7.8 Authentication credentials invalid (no authorisation identity of another user)")
        self._check(name, password)
        return True

    def _login_user(self, text: str) -> bool:
        name = self._decode(text)
        self.reply("334 UGFzc3dvcmQ6")  # "Password:"
        self.continuation = lambda answer: self._check(name, self._decode(answer))
        return True

    def _check(self, name: str, password: str) -> bool:
        clients = self.clients
        assert clients is not None

        def verify() -> None:
            client = clients.verify(name, password)
            if client is not None:
                self.user = client
                self.reply("235 2.7.0 Authentication successful")
                return
            self.auth_failures += 1
            if self.auth_failures >= MAX_AUTH_FAILURES:
                self.reply(f"421 4.7.0 {self.hostname} Too many failed logins; closing the session")
                self.closing = True
            else:
                self.reply("535 5.7.8 Authentication credentials invalid")

        self.blocking = verify
        return True

    # ---- MAIL, DATA ----------------------------------------------------------------------------------------------

    def check_sender(self, address: str) -> None:
        if self.clients is not None:
            if self.user is None:
                raise Reject("530 5.7.0 Authentication required")
            if not self.user.may_send_as(address):
                raise Reject(f"550 5.7.1 <{address}>: user {self.user.name} may not send as this sender")

    def smtp_DATA(self, argument: str) -> bool:
        going_on = super().smtp_DATA(argument)
        transaction = self.data_for
        if transaction is not None:
            transaction.client = self.peer
            transaction.received = self._received()
        return going_on

    def _received(self) -> str:
        """RFC 5321 4.4's trace field (the protocol names of RFC 3848), without recipients (Bcc stays secret)."""
        from email.utils import formatdate

        helo = "".join(c for c in self.helo if c.isprintable() and c not in "()\\") or "unknown"
        protocol = "ESMTP" if self.extended else "SMTP"
        protocol += "S" if self.tls_active else ""
        protocol += "A" if self.user is not None else ""
        user = f" (authenticated as {self.user.name})" if self.user is not None else ""
        address = f"IPv6:{self.peer}" if ":" in self.peer else self.peer
        return (f"from {helo} ([{address}]){user}\nby {self.hostname} (esmtp) with {protocol} id "
                f"{os.urandom(6).hex()};\n{formatdate(localtime=True)}")


class Connection:
    """One client: reads its lines and DATA within the limits, runs what blocks in the worker pool."""

    def __init__(self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 dialogue: ListenerDialogue) -> None:
        self.listener = listener
        self.reader = reader
        self.writer = writer
        self.dialogue = dialogue
        self.lines = LineBuffer()
        #: "command" (waiting for a command: may be stopped), "data" (a message is arriving), "work" (a delivery or
        #: a password check is running: never interrupted, its reply is owed).
        self.phase = "command"

    async def _write(self) -> None:
        data = self.dialogue.output()
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.listener.settings.idle_timeout)

    async def _line(self, limit: int, deadline: float) -> bytes:
        """The next line, received in full before ``deadline`` (``time.monotonic()``); replies are flushed before
        waiting (RFC 2920). Raises Reject (line too long), EOFError, TimeoutError."""
        while True:
            line = self.lines.line(limit)
            if line is not None:
                return line
            await self._write()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.lines.feed(await asyncio.wait_for(self.reader.read(1 << 16), remaining))

    async def run(self) -> None:
        dialogue = self.dialogue
        try:
            dialogue.greet()
            while not self.listener.stopping:
                self.phase = "command"
                deadline = time.monotonic() + self.listener.settings.idle_timeout
                try:
                    going_on = dialogue.handle(await self._line(COMMAND_LIMIT, deadline))
                except Reject as refused:
                    going_on = dialogue.refuse(refused.reply)
                if dialogue.data_for is not None:
                    transaction, dialogue.data_for = dialogue.data_for, None
                    await self._data(transaction)
                if dialogue.blocking is not None:
                    work, dialogue.blocking = dialogue.blocking, None
                    await self._work(work)
                if dialogue.starttls:
                    await self._starttls()
                if not going_on or dialogue.closing:
                    break
            else:
                dialogue.reply(f"421 4.3.2 {dialogue.hostname} Service shutting down; try again later")
        except asyncio.CancelledError:  # the listener stops (SIGTERM): see Listener.stop
            dialogue.reply(f"421 4.3.2 {dialogue.hostname} Service shutting down; try again later")
        except TimeoutError:
            dialogue.timed_out(self.listener.settings.idle_timeout)
        except Closing as closing:
            dialogue.reply(closing.reply)
        except (EOFError, OSError):
            dialogue.pending.clear()  # the client hung up, or broke the connection: nobody to answer
        except Exception as error:  # noqa: BLE001  (a bug: this client gets 421, the others go on; no traceback)
            from esmtp.progname import warn

            warn(f"internal error serving {dialogue.peer}: {type(error).__name__}: {error}")
            dialogue.reply(f"421 4.3.0 {dialogue.hostname} internal error; try again later")
        with contextlib.suppress(OSError, TimeoutError):
            await self._write()
        await self._close()

    async def _close(self) -> None:
        """Close gracefully (the last reply goes out), but never wait long for a client that does not read."""
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError):
            self.writer.transport.abort()

    async def _work(self, work: Callable[[], None]) -> None:
        self.phase = "work"
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.listener.pool, work)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            await future  # never answer (or leave) before the delivery's outcome is known
            raise

    async def _data(self, transaction: Transaction) -> None:
        """Read the message within the limits (in memory up to :data:`SPOOL_IN_MEMORY`, then in an unnamed file),
        then deliver it from a worker thread."""
        import tempfile

        from esmtp.message import read_message

        self.phase = "data"
        settings = self.listener.settings
        lines = DataLines(self.dialogue.max_size, after_crlf=self.lines.crlf)
        data_deadline = time.monotonic() + settings.data_timeout
        refused: Reject | OSError | None = None
        try:
            with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
                while not lines.done:
                    deadline = min(data_deadline, time.monotonic() + settings.idle_timeout)
                    try:
                        line = await self._line(DataLines.READ_LIMIT, deadline)
                    except Reject:  # a line too long to read, skipped
                        lines.skipped(self.lines.crlf)
                        refused = refused or DataLines.too_long()
                        continue
                    try:
                        text = lines.take(line)
                    except Reject as error:
                        refused = refused or error
                        continue
                    if refused is None and text:
                        try:
                            spool.write(text)
                        except OSError as error:
                            refused = error
                if refused is not None:
                    self.dialogue.data_refused(refused)
                    return

                # The replies earned so far go out before a delivery that may take a while (pipelining clients).
                await self._write()

                def deliver() -> None:
                    try:
                        spool.seek(0)
                        message = read_message(cast("BinaryIO", spool))
                    except (DataError, OSError) as error:
                        self.dialogue.data_refused(error)
                        return
                    with message:
                        self.dialogue.message(transaction, message)

                await self._work(deliver)
        except TimeoutError:
            raise Closing(f"421 4.4.2 {self.dialogue.hostname} Timeout during DATA: the message was not taken; "
                          "try again later") from None

    async def _starttls(self) -> None:
        self.dialogue.tls_started()
        # RFC 3207 5: what was pipelined after STARTTLS in clear text is dropped, never read as commands after it.
        self.lines = LineBuffer()
        # The 220 goes out and TLS starts without a pass of the event loop in between (no wait_for, which runs its
        # coroutine as a task): the client's ClientHello must reach the TLS layer, not the plain stream's buffer.
        self.writer.write(self.dialogue.output())
        try:
            async with asyncio.timeout(_SSL_HANDSHAKE_TIMEOUT + 1):
                await self.writer.start_tls(self.listener.tls, ssl_handshake_timeout=_SSL_HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError) as error:  # a failed handshake (ssl.SSLError is an OSError): nothing more
            raise OSError(f"TLS handshake failed: {error}") from None


class Listener:
    """The listening sockets, the connection limits and the worker pool."""

    def __init__(self, settings: ListenSettings, relay: Relay, clients: ClientFile | None, tls: Any,
                 hostname: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.settings = settings
        self.relay = relay
        self.clients = clients
        self.tls = tls
        self.hostname = hostname
        self.pool: ThreadPoolExecutor = ThreadPoolExecutor(settings.workers, thread_name_prefix="esmtp-delivery")
        self.servers: list[asyncio.Server] = []
        self.connections: dict[asyncio.Task[Any], Connection] = {}
        self.per_address: dict[str, int] = {}
        self.stopping = False

    async def serve(self, sockets: list[tuple[socket.socket, bool]]) -> None:
        """Accept on ``sockets`` (each with whether it speaks implicit TLS) until :meth:`stop`."""
        for sock, implicit in sockets:
            handler = self._implicit if implicit else self._plain
            server = await asyncio.start_server(handler, sock=sock, ssl=self.tls if implicit else None,
                                                ssl_handshake_timeout=_SSL_HANDSHAKE_TIMEOUT if implicit else None,
                                                limit=1 << 16)
            self.servers.append(server)

    async def _plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._client(reader, writer, tls_active=False)

    async def _implicit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._client(reader, writer, tls_active=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls_active: bool) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else "unix"
        if peer.startswith("::ffff:") and "." in peer:
            peer = peer[7:]
        task = asyncio.current_task()
        assert task is not None
        refusal = self._refusal(peer)
        if refusal is not None:
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(refusal.encode())
                await asyncio.wait_for(writer.drain(), 5)
            writer.transport.abort()
            return
        dialogue = ListenerDialogue(self.relay, self.settings, hostname=self.hostname, peer=peer, clients=self.clients,
                                    tls_available=self.tls is not None, tls_active=tls_active)
        connection = Connection(self, reader, writer, dialogue)
        self.connections[task] = connection
        self.per_address[peer] = self.per_address.get(peer, 0) + 1
        try:
            await connection.run()
        finally:
            del self.connections[task]
            self.per_address[peer] -= 1
            if not self.per_address[peer]:
                del self.per_address[peer]

    def _refusal(self, peer: str) -> str | None:
        if self.stopping:
            return f"421 4.3.2 {self.hostname} Service shutting down; try again later\r\n"
        if not self.settings.allows(peer):
            return f"554 5.7.1 {self.hostname} Access denied: {peer} may not use this server (listen_allow)\r\n"
        if len(self.connections) >= self.settings.max_connections:
            return f"421 4.7.0 {self.hostname} Too many connections; try again later\r\n"
        if self.per_address.get(peer, 0) >= self.settings.max_per_address:
            return f"421 4.7.0 {self.hostname} Too many connections from {peer}; try again later\r\n"
        return None

    async def stop(self) -> None:
        """Stop accepting; 421 to idle clients; let arriving messages finish (within the grace time) and every
        delivery be answered."""
        self.stopping = True
        for server in self.servers:
            server.close()
        for task, connection in list(self.connections.items()):
            if connection.phase == "command":
                task.cancel()
        pending = set(self.connections)
        if pending:
            _, still = await asyncio.wait(pending, timeout=self.settings.grace)
            for task in still:
                late = self.connections.get(task)  # (None: the task ended just now)
                if late is not None and late.phase != "work":
                    task.cancel()
            if still:
                await asyncio.wait(still)
        self.pool.shutdown(wait=True)


def _bind(address: str | None, port: int) -> list[socket.socket]:
    hosts = [address] if address else ["0.0.0.0", "::"]  # all: who may connect is listen_allow's job
    sockets = []
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if address is None and family == socket.AF_INET6:
                continue  # no IPv6 on this host
            raise
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise ConfigError(f"--listen {host}:{port}: cannot listen there: {error.strerror or error}") from None
        sock.listen(512)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def systemd_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed (socket activation: ``LISTEN_PID``, ``LISTEN_FDS``, from fd 3)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for the children (an MDA, a preconnect command)
    sockets = []
    for fd in range(3, 3 + count):
        try:
            sock = socket.socket(fileno=fd)
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError as error:
            reason = error.strerror or error
            raise ConfigError(f"LISTEN_FDS={count}: descriptor {fd} is not a socket ({reason})") from None
        if sock.type != socket.SOCK_STREAM or not listening:
            raise ConfigError(f"LISTEN_FDS={count}: descriptor {fd} is not a listening stream socket (in the .socket "
                              "unit: ListenStream=, Accept=no)")
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _raise_file_limit() -> None:
    """Each client is a descriptor: raise the soft limit to the hard one (1024 is common, too few for a server)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _be_init() -> None:
    """As PID 1 (a container's only process), fork: this process reaps every child that is orphaned into it and
    passes SIGTERM, SIGINT and SIGHUP on; the child serves. Returns in the child; the parent exits with its status."""
    child = os.fork()
    if child == 0:
        return
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda received, frame: os.kill(child, received))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def listen(options: Options, load: Callable[[], tuple[Config | None, Hooks]]) -> int:
    """Run the listener in the foreground until SIGTERM or SIGINT; return the exit status."""
    from esmtp.options import listen_address
    from esmtp.progname import warn
    from esmtp.server.relay import PipelineRelay
    from esmtp.server.settings import load_settings, server_tls
    from esmtp.smtp.kept import KeptSessions
    from esmtp.trace import Trace

    config, hooks = load()
    assert config is not None
    settings = load_settings(config)
    tls = server_tls(settings)
    clients = None
    if settings.auth_file is not None:
        from esmtp.server.clients import ClientFile

        clients = ClientFile.load(settings.auth_file)
    sockets: list[tuple[socket.socket, bool]] = []
    for sock in systemd_sockets():
        sockets.append((sock, sock.getsockname()[1] in settings.smtps_ports))
    for value in options.listen:
        if value == "systemd":
            continue
        address, port = listen_address(value)
        sockets.extend((sock, port in settings.smtps_ports) for sock in _bind(address, port))
    if not sockets:
        raise ConfigError("--listen systemd: systemd passed no socket (LISTEN_FDS); start the .socket unit")
    if os.getpid() == 1:
        _be_init()
    _raise_file_limit()
    # The event loop gives up the GIL at every socket call and then waits for it behind a worker thread's pipeline
    # work for up to the switch interval (5 ms by default): 1 ms keeps the clients' dialogue moving (10-25% more
    # messages a second in A/B runs on a loaded machine; docs/performance.md).
    sys.setswitchinterval(0.001)
    trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    sessions = KeptSessions()
    relay = PipelineRelay(options, config, hooks, trace, sessions)
    listener = Listener(settings, relay, clients, tls, os.uname().nodename)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stopped.set)
        # SIGHUP would end the process at once, messages in flight included: it is ignored (restart to reload).
        loop.add_signal_handler(signal.SIGHUP, warn, "SIGHUP ignored: restart the listener to read the configuration "
                                                     "again (SIGTERM lets the messages in progress finish)")
        await listener.serve(sockets)
        shown = ", ".join(_shown(sock, implicit) for sock, implicit in sockets)
        warn(f"listening on {shown} ({'AUTH required' if clients else 'no AUTH'}; "
             f"{'TLS offered' if tls else 'no TLS'})")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        sweeper = asyncio.create_task(_sweep(sessions))
        await stopped.wait()
        warn("stopping: no new connections; finishing the messages in progress")
        sweeper.cancel()
        await listener.stop()

    try:
        asyncio.run(main())
    finally:
        sessions.close()
        trace.close()
    return 0


def _shown(sock: socket.socket, implicit: bool) -> str:
    host, port = sock.getsockname()[:2]
    return f"{'[' + host + ']' if ':' in host else host}:{port}{' (implicit TLS)' if implicit else ''}"


async def _sweep(sessions: Any) -> None:
    """QUIT upstream sessions that have been idle too long, now and then (off the event loop: it blocks)."""
    while True:
        await asyncio.sleep(15)
        await asyncio.to_thread(sessions.sweep)
