"""Test helpers: a real in-process SMTP server (aiosmtpd), a scripted one for faults and exact wire checks, and a
runner for the installed ``sendmail`` command."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

BIN = Path(sys.executable).parent


def entry_point(name: str = "sendmail") -> str:
    """The installed console script, by explicit path (never whatever ``sendmail`` is on PATH)."""
    path = BIN / name
    assert path.exists(), f"{path} is not installed: run pip install -e ."
    return str(path)


@dataclass
class Received:
    """One message as the server got it: envelope, parameters, the DATA bytes (dot-unstuffed) and the AUTH login."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    data: bytes
    login: str | None = None
    tls: bool = False


@dataclass
class Sink:
    """What the test server received, and knobs to make it misbehave."""

    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    auths: list[tuple[str, str]] = field(default_factory=list)
    #: recipient → reply line for RCPT TO (e.g. "550 5.1.1 no such user").
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.auths.clear()
            self.connections = 0


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.sink.mail_reply:
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.sink.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.sink.data_reply:
            return self.sink.data_reply
        login = session.login_data.decode() if isinstance(session.login_data, bytes) else session.login_data
        with self.sink.lock:
            self.sink.messages.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    list(envelope.mail_options),
                    list(envelope.rcpt_options),
                    bytes(envelope.original_content or b""),
                    login,
                    session.ssl is not None,
                )
            )
        return "250 2.0.0 OK queued"


class _Authenticator:
    def __init__(self, sink: Sink, users: dict[str, str]) -> None:
        self.sink, self.users = sink, users

    def __call__(self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        self.sink.auths.append((mechanism, user))
        ok = self.users.get(user) == password
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


class _Server(AiosmtpdSMTP):
    sink: Sink

    def connection_made(self, transport: Any) -> None:
        self.sink.connections += 1
        super().connection_made(transport)


#: Sockets bound by :func:`free_port`, held (never listening) until the test process ends.
_HELD_PORTS: list[socket.socket] = []


def free_port() -> int:
    """A loopback port on which nothing listens, for a server that must be unreachable (connection refused).

    The port stays bound, without listening, for the rest of the test process: no server started later (they bind
    port 0, see :class:`BindsPortZero`) can be given it, so a connection to it is refused for as long as a test may
    use it. (A probe that binds, closes and hands the number on would race with every other bind.)
    """
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(held)
    return int(held.getsockname()[1])


def port_for_a_program() -> int:
    """A loopback port for a server program that must be told its port (microsocks, Postfix): bound once to find a
    free one, then released for the program to bind. Servers of our own bind port 0 (:class:`BindsPortZero`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BindsPortZero:
    """An aiosmtpd controller that binds port 0 itself and reads its port back (``self.port``) before it serves:
    no probe-then-bind race with other servers of a parallel test run."""

    hostname: str
    port: int
    ssl_context: ssl.SSLContext | None
    loop: Any
    _factory_invoker: Any

    def _create_server(self) -> Any:
        listener = socket.create_server((self.hostname, 0))
        self.port = int(listener.getsockname()[1])
        return self.loop.create_server(self._factory_invoker, sock=listener, ssl=self.ssl_context)


class _Controller(BindsPortZero, Controller):
    def __init__(self, sink: Sink, *, users: dict[str, str] | None, **kwargs: Any) -> None:
        self.sink = sink
        self.users = users
        super().__init__(_Handler(sink), hostname="127.0.0.1", port=0, **kwargs)

    def factory(self) -> AiosmtpdSMTP:
        server_kwargs: dict[str, Any] = {"enable_SMTPUTF8": True, "data_size_limit": 1 << 30}
        if self.users is not None:
            server_kwargs.update(authenticator=_Authenticator(self.sink, self.users), auth_require_tls=False)
        server = _Server(self.handler, **server_kwargs)
        server.sink = self.sink
        return server


@dataclass
class SmtpServer:
    host: str
    port: int
    sink: Sink
    controller: Controller

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"


def start_server(users: dict[str, str] | None = None) -> SmtpServer:
    sink = Sink()
    controller = _Controller(sink, users=users)
    controller.start()
    return SmtpServer("127.0.0.1", controller.port, sink, controller)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback (no AUTH)."""
    server = start_server()
    yield server
    server.controller.stop()


@pytest.fixture
def auth_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback offering AUTH PLAIN and LOGIN for user "alice", password "s3cret"."""
    server = start_server(users={"alice": "s3cret"})
    yield server
    server.controller.stop()


def wait_for_queue_runner(queue: Path, timeout: float = 30) -> None:
    """Wait until no background run holds the runner lock of the queue directory ``queue`` (the lock is taken
    before the queueing command exits)."""
    import fcntl

    path = queue / "runner.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
        finally:
            os.close(fd)
    raise AssertionError("the background run did not finish")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runner:
    """Runs the installed command in a fresh process, with its own HOME, as mutt or cron would."""

    home: Path
    #: ``ESMTP_RELAY_DAEMON`` for the run's mode (see :mod:`relay_support`).
    mode_env: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Path:
        return self.home.parent / "run"

    def write_config(self, text: str, name: str = ".esmtprc") -> Path:
        path = self.home / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_STATE_HOME": str(self.home / ".local/state"),
            # The warm relay's sockets: private to the test, so that its resident processes can be found and ended.
            "XDG_RUNTIME_DIR": str(self.runtime),
            # No system service (docs/system.md), even on a machine where one runs: the test's own configuration.
            "ESMTP_SYSTEM_SOCKET": str(self.runtime / "no-system-service.sock"),
            "ESMTP_SYSTEM_MAILDROP": str(self.runtime / "no-system-maildrop"),
            "LANG": "C.UTF-8",
            **self.mode_env,
        }
        env.update(extra)
        return env

    def __call__(
        self, *args: str, input: bytes = b"", program: str = "sendmail", env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        proc = subprocess.run(
            [entry_point(program), *args], input=input, capture_output=True, env=env or self.env(), timeout=timeout
        )
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Runner]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    runner = Runner(home)
    yield runner
    from relay_support import stop_relays

    stop_relays(runner.runtime)



# ---- a scripted SMTP server --------------------------------------------------------------------------------------

#: Actions a stage can be scripted with instead of a reply (or after one, with ``Reply(then=...)``).
DROP = "drop"  # close the connection (FIN) without a word
SILENCE = "silence"  # stop answering; keep reading until the client gives up
RESET = "reset"  # wait for the client's next bytes (a ClientHello, a command), then reset the connection (RST)
_ACTIONS = (DROP, SILENCE, RESET)

#: The stages a test can script: the greeting, each command verb, and ``"dot"``, the end of the message data.
STAGES = ("greeting", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "dot", "RSET", "NOOP", "QUIT")


@dataclass
class Reply:
    """A reply (``"250 ok"``; several lines joined with ``\\n``), how long to wait before it for more input (so a
    pipelined command can arrive first), and what to do after it (:data:`DROP`, :data:`SILENCE`, :data:`RESET`)."""

    text: str
    wait_for_next: float = 0.0
    then: str | None = None


@dataclass
class Command:
    """One command line as received; ``early``: it had arrived before the server answered the command before it."""

    line: str
    early: bool

    @property
    def verb(self) -> str:
        return self.line.split(" ", 1)[0].upper()


@dataclass
class Message:
    """One message's data as it arrived (CRLF line ends, dot-stuffed, without the final dot) and the reply to it."""

    data: bytes
    reply: str = ""

    @property
    def subject(self) -> str:
        for line in self.data.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"subject:"):
                return line[8:].strip().decode()
        return ""


@dataclass
class Connection:
    """One connection, as the server saw it."""

    commands: list[Command] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    tls: bool = False
    #: The client's address, as the server sees it.
    peer: str = ""


#: What a stage does: a reply line, a :class:`Reply`, an action, or a function of the connection and the command line
#: (``"."`` for the dot, whose data is ``connection.messages[-1]``) returning one of those (None: the default).
Action = str | Reply | Callable[[Connection, str], "str | Reply | None"]


class ScriptedServer:
    """A scripted SMTP server on loopback, for what aiosmtpd cannot do: exact replies per stage, drops, silence,
    resets, TLS alerts, and a record of every command line and message exactly as it arrived.

    ``replies`` maps a stage (:data:`STAGES`) to what it does; unscripted stages answer as a plain server would:
    EHLO lists ``extensions`` (plus STARTTLS while a ``tls`` context is set and the connection is not encrypted), DATA
    gets 354, or 554 when no RCPT was accepted in the transaction, the dot 250, QUIT 221 and a close, anything else
    250. ``script(stage, action)`` changes a stage later. ``on_data`` is called with the connection when a message's
    first data line arrives. ``host`` and ``port`` (default: a free one) are where it listens. Each connection is
    served on its own thread.
    """

    def __init__(
        self, replies: dict[str, Action] | None = None, *, extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME"),
        tls: ssl.SSLContext | None = None, on_data: Callable[[Connection], None] | None = None,
        host: str = "127.0.0.1", port: int = 0,
    ) -> None:
        self.replies: dict[str, Action] = dict(replies or {})
        unknown = set(self.replies) - set(STAGES)
        assert not unknown, f"not SMTP stages: {unknown}"
        self.extensions = extensions
        self.tls = tls
        self.on_data = on_data
        self.connections: list[Connection] = []
        self._open: list[socket.socket] = []
        self._listener = socket.create_server((host, port))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def script(self, stage: str, action: Action) -> None:
        assert stage in STAGES, stage
        self.replies[stage] = action

    @property
    def commands(self) -> list[str]:
        """Every command line of every connection, in order."""
        return [command.line for connection in self.connections for command in connection.commands]

    @property
    def messages(self) -> list[Message]:
        return [message for connection in self.connections for message in connection.messages]

    def hang_up(self) -> None:
        """Close every open connection now, as a server that times out or shuts down does."""
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        self.hang_up()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            connection = Connection(peer=peer[0])
            self.connections.append(connection)
            threading.Thread(target=self._serve, args=(conn, connection), daemon=True).start()

    def _serve(self, conn: socket.socket, connection: Connection) -> None:
        wire = _Wire(conn)
        self._open.append(conn)
        try:
            with contextlib.suppress(OSError, ssl.SSLError):
                _Dialogue(self, wire, connection).run()
        finally:
            if conn in self._open:
                self._open.remove(conn)
            with contextlib.suppress(OSError):
                wire.conn.close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Wire:
    """A connection read line by line, which can tell whether more input has already arrived."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def _pull(self, timeout: float | None) -> bool:
        """Read what arrives within ``timeout`` (None: wait); False at end of input."""
        pending = isinstance(self.conn, ssl.SSLSocket) and self.conn.pending()
        if not pending and timeout is not None and not select.select([self.conn], [], [], timeout)[0]:
            return True
        chunk = self.conn.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            if not self._pull(None):
                return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def has_input(self, wait: float = 0.0) -> bool:
        """Whether a whole line has arrived (waiting up to ``wait`` seconds for one)."""
        deadline = time.monotonic() + wait
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if not self._pull(max(left, 0.0)) or left <= 0:
                return b"\n" in self.buffer
        return True

    def send(self, text: str) -> None:
        self.conn.sendall("".join(f"{line}\r\n" for line in text.split("\n")).encode())


class _Dialogue:
    def __init__(self, server: ScriptedServer, wire: _Wire, connection: Connection) -> None:
        self.server, self.wire, self.connection = server, wire, connection
        self.accepted_rcpt = False
        #: A whole line had arrived before the last reply was sent: the next command is pipelined.
        self.early = False

    def run(self) -> None:
        if not self.answer("greeting", "", "220 scripted ESMTP"):
            return
        while True:
            raw = self.wire.line()
            if raw is None:
                return
            command = Command(raw.decode("utf-8", "replace").rstrip("\r\n"), self.early)
            self.connection.commands.append(command)
            if not self.command(command):
                return

    def command(self, command: Command) -> bool:
        verb = command.verb
        default: str | Reply
        stage = verb if verb in STAGES else "NOOP"
        if verb == "EHLO":
            offered = [*self.server.extensions]
            if self.server.tls is not None and not self.connection.tls:
                offered.append("STARTTLS")
            default = "\n".join(f"250{'-' if i < len(offered) else ' '}{text}"
                                for i, text in enumerate(["scripted", *offered]))
        elif verb == "MAIL":
            self.accepted_rcpt, default = False, "250 2.1.0 ok"
        elif verb == "RCPT":
            default = "250 2.1.5 ok"
        elif verb == "DATA":
            default = "354 go ahead" if self.accepted_rcpt else "554 5.5.1 no valid recipients"
        elif verb == "STARTTLS":
            default = "220 2.0.0 go ahead" if self.server.tls is not None else "454 4.7.0 TLS not available"
        elif verb == "QUIT":
            default = Reply("221 bye", then=DROP)
        else:
            default = "250 ok"
        reply = self.answer(stage, command.line, default)
        if reply is None:
            return False
        if verb == "RCPT" and reply.startswith("2"):
            self.accepted_rcpt = True
        elif verb == "STARTTLS" and reply.startswith("220") and self.server.tls is not None:
            return self.start_tls()
        elif verb == "DATA" and reply.startswith("354"):
            return self.data()
        return True

    def data(self) -> bool:
        lines: list[bytes] = []
        while (line := self.wire.line()) not in (b".\r\n", b".\n"):
            if line is None:
                return False
            if not lines and self.server.on_data is not None:
                self.server.on_data(self.connection)
            lines.append(line)
        message = Message(b"".join(lines))
        self.connection.messages.append(message)
        reply = self.answer("dot", ".", "250 2.0.0 queued")
        if reply is None:
            return False
        message.reply = reply
        return True

    def start_tls(self) -> bool:
        assert self.server.tls is not None
        conn = self.server.tls.wrap_socket(self.wire.conn, server_side=True, do_handshake_on_connect=False)
        self.wire.conn = conn
        try:
            conn.do_handshake()
        except ssl.SSLError:
            # OpenSSL has sent its alert. Close as careful servers do: closing with the client's EHLO still unread
            # would send a reset, which may destroy the alert before the client reads it.
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            while conn.recv(4096):
                pass
            return False
        self.connection.tls = True
        return True

    def answer(self, stage: str, line: str, default: str | Reply) -> str | None:
        """Do what the stage is scripted to do; the reply text sent, or None when the connection is over."""
        action = self.server.replies.get(stage)
        if callable(action):
            action = action(self.connection, line)
        reply = default if action is None else action
        if isinstance(reply, str):
            reply = Reply(reply, then=None) if reply not in _ACTIONS else Reply("", then=reply)
        self.early = self.wire.has_input(reply.wait_for_next)
        if reply.text:
            self.wire.send(reply.text)
        if reply.then == DROP:
            return None
        if reply.then == SILENCE:
            while self.wire.line() is not None:
                pass
            return None
        if reply.then == RESET:
            self.wire.conn.settimeout(5)
            with contextlib.suppress(OSError):
                self.wire.conn.recv(512)
            self.wire.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return None
        return reply.text


#: The type of the :func:`scripted_server` fixture.
StartScripted = Callable[..., ScriptedServer]


@pytest.fixture
def scripted_server() -> Iterator[StartScripted]:
    """Start :class:`ScriptedServer` instances (same arguments); each is closed when the test ends."""
    servers: list[ScriptedServer] = []

    def start(replies: dict[str, Action] | None = None, **options: Any) -> ScriptedServer:
        servers.append(ScriptedServer(replies, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def transcript_lines(path: Path) -> list[str]:
    """The protocol lines of a ``-X`` transcript without their time stamps and session header lines."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("=== "):
            stamp, _, rest = line.partition(" ")
            assert len(stamp) == 12 and stamp[2] == ":" and stamp[8] == ".", f"no time stamp in {line!r}"
            lines.append(rest)
    return lines
