"""Test helpers: a real in-process SMTP server (aiosmtpd) and a runner for the installed ``sendmail`` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Controller(Controller):
    def __init__(self, sink: Sink, *, users: dict[str, str] | None, **kwargs: Any) -> None:
        self.sink = sink
        self.users = users
        super().__init__(_Handler(sink), hostname="127.0.0.1", port=free_port(), **kwargs)

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


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runner:
    """Runs the installed command in a fresh process, with its own HOME, as mutt or cron would."""

    home: Path

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
            "LANG": "C.UTF-8",
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
def run(tmp_path: Path) -> Runner:
    home = tmp_path / "home"
    home.mkdir()
    return Runner(home)



def transcript_lines(path: Path) -> list[str]:
    """The protocol lines of a ``-X`` transcript without their time stamps and session header lines."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("=== "):
            stamp, _, rest = line.partition(" ")
            assert len(stamp) == 12 and stamp[2] == ":" and stamp[8] == ".", f"no time stamp in {line!r}"
            lines.append(rest)
    return lines
