"""The composition matrix's dimensions (tests/test_composition.py, tests/interop/test_composition_interop.py): how a
message gets delivered (:class:`DeliveryPath`), where the secret comes from (:class:`Source`) and how the connection
is encrypted (:class:`Mode`); each is a table of entries, and a test case is one entry of each.

A case runs the installed commands (``.venv/bin/sendmail``, ``esmtp``, ``mailq``) as subprocesses with a HOME of its
own (:class:`Case`), as callers run them, and a path reports what should now be at the server (:class:`Outcome`):
the letters, each exactly once, and how many connections and logins that took. Adding a path, a source or a mode is
one more entry in :data:`PATHS`, :data:`SOURCES` or :data:`MODES`; see the docstring of tests/test_composition.py.

The servers are aiosmtpd with real verifiers (:class:`MatrixServer`): PLAIN and LOGIN are checked against the
password, XOAUTH2 and OAUTHBEARER by asking the OAuth2 provider's introspection endpoint whether the bearer token is
active and whose it is (:mod:`oauth2_support`). One server per mode serves a whole module; :meth:`MatrixServer.reset`
empties its mailbox before each case.
"""

from __future__ import annotations

import base64
import re
import secrets
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from oauth2_support import BearerHandler, Grant, OAuth2Provider
from relay_support import relay_pids
from support import BindsPortZero, Result, Runner, Sink, _Server, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from interop_tls import TLSFiles

#: The account of the password sources at the aiosmtpd servers (the OAuth2 one is ``oauth2_support.USER``).
USER = "alice"
PASSWORD = "Matrix-s3cret.42"
SENDER = "alice@example.org"
RECIPIENTS = ("bob@example.net", "carol@example.com")
#: keyrings.alt's plain-text file backend (in ``~/.local/share``, so private to the case's HOME); the ``fail``
#: backend elsewhere, so that no source consults a keyring it was not given.
FILE_KEYRING = "keyrings.alt.file.PlaintextKeyring"
NO_KEYRING = "keyring.backends.fail.Keyring"


# ---- the servers -------------------------------------------------------------------------------------------------


class MatrixHandler(BearerHandler):
    """aiosmtpd's handler: bearer tokens checked with the provider (:class:`oauth2_support.BearerHandler`), PLAIN and
    LOGIN with :meth:`authenticate`; each message records whether it came over TLS (STARTTLS or implicit) and who
    had logged in."""

    def __init__(self, sink: Sink, provider: OAuth2Provider, users: dict[str, str]) -> None:
        super().__init__(sink, provider)
        self.users = users
        self.lock = threading.Lock()

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:
        """aiosmtpd's ``authenticator`` for PLAIN and LOGIN."""
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = data.login.decode()
        accepted = self.users.get(user) == data.password.decode()
        with self.lock:
            self.attempts.append((mechanism, user, accepted))
            if accepted:
                self.sink.auths.append((mechanism, user))
        return AuthResult(success=accepted, handled=False, auth_data=user if accepted else None)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        encrypted = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        reply = await super().handle_DATA(server, session, envelope)
        with self.sink.lock:
            got = self.sink.messages[-1]
            got.tls, got.login = encrypted, session.auth_data  # what the verifier returned for this session
        return reply

    def reset(self) -> None:
        self.sink.clear()
        with self.lock:
            self.attempts.clear()


class _MatrixSmtp(_Server):
    def connection_made(self, transport: Any) -> None:
        if self._original_transport is not None:  # the same connection after STARTTLS: not one more
            self.sink.connections -= 1
        super().connection_made(transport)


class _MatrixController(BindsPortZero, Controller):
    def __init__(self, handler: MatrixHandler, smtp_kwargs: dict[str, Any]) -> None:
        self.smtp_kwargs = dict(smtp_kwargs)
        ssl_context = self.smtp_kwargs.pop("ssl_context", None)
        super().__init__(handler, hostname="127.0.0.1", port=0, ssl_context=ssl_context)

    def factory(self) -> _MatrixSmtp:
        handler = self.handler
        assert isinstance(handler, MatrixHandler)
        server = _MatrixSmtp(handler, enable_SMTPUTF8=True, authenticator=handler.authenticate, **self.smtp_kwargs)
        server.sink = handler.sink
        return server


@dataclass
class MatrixServer:
    """One aiosmtpd server of a mode, verifying passwords (``users``) and bearer tokens (the provider)."""

    host: str
    port: int
    handler: MatrixHandler
    controller: Controller

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sink(self) -> Sink:
        return self.handler.sink

    def reset(self) -> None:
        """An empty mailbox and no connection or login counted, for the next case."""
        self.handler.reset()

    def stop(self) -> None:
        self.controller.stop()


def server_context(pki: TLSFiles) -> ssl.SSLContext:
    """The servers' TLS context: a certificate of the test CA for ``localhost`` and ``127.0.0.1``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.server_cert_pem), str(pki.server_key_pem))
    return context


def start_matrix_server(mode: Mode, pki: TLSFiles, provider: OAuth2Provider) -> MatrixServer:
    handler = MatrixHandler(Sink(), provider, {USER: PASSWORD})
    controller = _MatrixController(handler, mode.server_kwargs(server_context(pki)))
    controller.start()
    server = MatrixServer("127.0.0.1", controller.port, handler, controller)
    server.reset()  # the controller's own readiness probe is not a client
    return server


# ---- a case ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """A message as the caller hands it over (LF line ends) and the envelope it goes with."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def wire(self) -> bytes:
        """The bytes a server stores: CRLF line ends, dot-unstuffed (every header a fix-up would add is present)."""
        return self.data.replace(b"\n", b"\r\n")


@dataclass
class Outcome:
    """What a path says the server should have now: these letters, each once and in this order, after this many
    connections and successful logins."""

    letters: list[Letter]
    connections: int
    logins: int
    #: Trace fields (``Received:``) the path puts on top of each letter, before the letter's own bytes.
    trace_fields: int = 0


def without_trace(data: bytes, count: int) -> bytes:
    """``data`` without its first ``count`` header fields, each of which must be a ``Received:`` field (CRLF)."""
    lines = data.split(b"\r\n")
    start = 0
    for _ in range(count):
        assert lines[start].startswith(b"Received: "), data[:300]
        start += 1
        while lines[start][:1] in (b" ", b"\t"):
            start += 1
    return b"\r\n".join(lines[start:])


@dataclass
class Case:
    """One combination, run with its own HOME (``run``) against one server.

    ``user``/``password`` are the password account and ``provider``/``oauth2_user`` the OAuth2 one at that server
    (no provider: the server has no OAuth2).
    The source's :attr:`Source.configure` sets its configuration lines (:attr:`identity`), environment (:attr:`env`)
    and :attr:`login`; the mode's lines are :attr:`tls`.
    """

    name: str
    run: Runner
    hostport: str
    tls: tuple[str, ...]
    ca_pem: Path
    user: str
    password: str
    provider: OAuth2Provider | None
    oauth2_user: str
    env: dict[str, str] = field(default_factory=lambda: {"PYTHON_KEYRING_BACKEND": NO_KEYRING})
    identity: list[str] = field(default_factory=list)
    #: The user the server must see logged in (set by the source).
    login: str = ""
    #: The refresh token the OAuth2 source registered at the provider (None for the other sources).
    refresh_token: str | None = None
    #: Everything a path ran, for the checks that no secret leaked.
    results: list[Result] = field(default_factory=list)

    def trust_ca(self) -> None:
        """The test CA where esmtp looks for it (``~/.authenticate/ca.pem``, private)."""
        directory = self.run.home / ".authenticate"
        directory.mkdir(mode=0o700, exist_ok=True)
        target = directory / "ca.pem"
        target.write_bytes(self.ca_pem.read_bytes())
        target.chmod(0o600)

    def write_config(self, *extra: str, hostport: str | None = None) -> Path:
        """``~/.esmtprc``: the server, the mode's TLS lines, the source's lines, then ``extra``."""
        lines = [f"hostname {hostport or self.hostport}", *self.tls, *self.identity, *extra]
        return self.run.write_config("\n".join(lines) + "\n")

    def __call__(self, *args: str, input: bytes = b"", program: str = "sendmail") -> Result:
        """Run an installed command (by its path) with the case's environment."""
        result = self.run(*args, input=input, program=program, env=self.run.env(**self.env), timeout=60)
        self.results.append(result)
        return result

    def letter(self, number: int) -> Letter:
        """A message unique to this case, with a line that needs dot-stuffing."""
        data = (
            f"From: Alice <{SENDER}>\nTo: Bob <{RECIPIENTS[0]}>\nCc: {RECIPIENTS[1]}\n"
            f"Date: Sat, 05 Dec 2026 02:00:00 +0000\nMessage-ID: <{self.name}.{number}@example.org>\n"
            f"Subject: {self.name} #{number}\n\nLetter {number} of {self.name}.\n.a line that starts with a dot\n"
        ).encode()
        return Letter(SENDER, RECIPIENTS, data)

    def send(self, letter: Letter, *args: str) -> Result:
        """``sendmail [args] -f SENDER RECIPIENTS... < letter``."""
        return self(*args, "-f", letter.sender, *letter.recipients, input=letter.data)

    def secrets(self) -> list[str]:
        """What must never appear in any output: the password (also as AUTH PLAIN and LOGIN would send it) and every
        access or refresh token issued."""
        password = [self.password, base64.b64encode(self.password.encode()).decode(),
                    base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()]
        if self.provider is None:
            return password
        with self.provider.lock:
            return [*password, *self.provider.tokens, *self.provider.refresh]


def assert_quiet(result: Result, what: str) -> None:
    """Exit 0 and nothing on stderr (cron mails whatever a job prints)."""
    assert (result.returncode, result.stderr) == (0, ""), f"{what}: exit {result.returncode}\n{result.stderr}"


# ---- the delivery paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPath:
    """A way a message reaches the server; ``run`` sends (or logs in) and says what the server should have."""

    name: str
    run: Callable[[Case], Outcome]


def direct(case: Case) -> Outcome:
    """``sendmail -f SENDER RCPT... < message``: delivered by the command itself."""
    case.write_config()
    letter = case.letter(1)
    assert_quiet(case.send(letter), "sendmail")
    return Outcome([letter], connections=1, logins=1)


def warm_relay(case: Case) -> Outcome:
    """``relay_daemon auto``: the first message goes from the command and starts the resident process, which sends
    the second and third over one kept, logged-in connection."""
    case.write_config("relay_daemon auto")
    letters = [case.letter(number) for number in (1, 2, 3)]
    assert_quiet(case.send(letters[0]), "the first sendmail")
    assert_quiet(case.send(letters[1]), "the second sendmail")
    third = case.send(letters[2], "-v")
    assert third.returncode == 0, third.stderr
    assert "reusing the open connection" in third.stderr, third.stderr  # the resident process's kept session
    assert len(relay_pids(case.run.runtime)) == 1
    return Outcome(letters, connections=2, logins=2)


def queue_flush(case: Case) -> Outcome:
    """Two messages queued while the server is down (``queue fallback``), then ``sendmail -q`` delivers them over
    one connection and ``mailq`` shows an empty queue."""
    case.write_config("queue fallback", hostport=f"127.0.0.1:{free_port()}")  # nobody listens there
    letters = [case.letter(number) for number in (1, 2)]
    for letter in letters:
        assert_quiet(case.send(letter), "sendmail while the server is down")  # 0: queued, not lost
    case.write_config("queue fallback")
    assert_quiet(case("-q"), "sendmail -q")
    listing = case(program="mailq")
    assert listing.stdout.startswith("Mail queue is empty"), listing.stdout
    return Outcome(letters, connections=1, logins=1)


def smtp_on_stdin(case: Case) -> Outcome:
    """``sendmail -bs``: two transactions of one SMTP dialogue on standard input (smtplib on a socketpair)."""
    from test_stdio import Session as StdioSession

    case.write_config()
    letters = [case.letter(number) for number in (1, 2)]
    session = StdioSession(case.run, **case.env)
    try:
        client = session.smtplib()
        for letter in letters:
            assert client.sendmail(letter.sender, list(letter.recipients), letter.wire) == {}
        assert client.quit()[0] == 221
    finally:
        status, stderr, rest = session.end()
    case.results.append(Result(status, rest.decode("utf-8", "replace"), stderr))
    assert (status, stderr, rest) == (0, "", b""), f"sendmail -bs: exit {status}\n{stderr}"
    return Outcome(letters, connections=1, logins=1)


def serverinfo_login(case: Case) -> Outcome:
    """``esmtp --serverinfo --login``: connects and authenticates as a send would, sends nothing."""
    case.write_config()
    result = case("--serverinfo", "--login", program="esmtp")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert re.search(rf"^login: +authenticated as {re.escape(case.login)} with ", result.stdout, re.M), result.stdout
    return Outcome([], connections=1, logins=1)


def listener(case: Case) -> Outcome:
    """``esmtp --listen``: three messages from two SMTP clients (two on one connection), over one kept upstream
    connection and login; then SIGTERM, and the listener exits 0."""
    import signal
    import smtplib

    from listener_support import start_listener

    case.write_config()
    letters = [case.letter(number) for number in (1, 2, 3)]
    listener = start_listener(case.run, env=case.run.env(**case.env))
    try:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as first, \
                smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as second:
            for client, letter in zip((first, second, first), letters, strict=True):
                assert client.sendmail(letter.sender, list(letter.recipients), letter.wire) == {}
        status = listener.stop(signal.SIGTERM)
    finally:
        if listener.proc.poll() is None:
            listener.proc.kill()
    case.results.append(Result(status, "", listener.text))
    said = [line for line in listener.text.splitlines() if not line.startswith(("esmtp: listening on ",
                                                                                "esmtp: stopping: "))]
    assert (status, said) == (0, []), f"esmtp --listen: exit {status}\n{listener.text}"
    return Outcome(letters, connections=1, logins=1, trace_fields=1)


PATHS = [
    DeliveryPath("direct", direct),
    DeliveryPath("warm-relay", warm_relay),
    DeliveryPath("queue-flush", queue_flush),
    DeliveryPath("bs", smtp_on_stdin),
    DeliveryPath("serverinfo-login", serverinfo_login),
    DeliveryPath("listener", listener),
]


# ---- the secret sources ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the secret comes from. ``configure`` sets the case up (files, environment, a stored password) and sets
    :attr:`Case.identity` and :attr:`Case.login`; ``bearer``: the server must see an OAuth2 mechanism."""

    name: str
    configure: Callable[[Case], None]
    bearer: bool = False


def inline_password(case: Case) -> None:
    case.identity, case.login = [f"username {case.user}", f'password "{case.password}"'], case.user


def password_command(case: Case) -> None:
    """A small script that prints the password (one the user's password manager would be)."""
    script = case.run.home / "bin" / "smtp-password"
    script.parent.mkdir(mode=0o700)
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{case.password}'\n")
    script.chmod(0o700)
    case.identity, case.login = [f"username {case.user}", f'password_command "{script}"'], case.user


def keyring(case: Case) -> None:
    """The password stored in the keyring (keyrings.alt's file backend) with ``esmtp --store-password``."""
    case.env["PYTHON_KEYRING_BACKEND"] = FILE_KEYRING
    case.identity, case.login = [f"username {case.user}"], case.user
    case.write_config()
    stored = case("--store-password", input=f"{case.password}\n".encode(), program="esmtp")
    assert stored.returncode == 0, stored.stderr


def netrc(case: Case) -> None:
    """``~/.netrc`` (mode 0600) with an entry for the server's host and the user."""
    host = case.hostport.rsplit(":", 1)[0]
    path = case.run.home / ".netrc"
    path.write_text(f"machine {host} login {case.user} password {case.password}\n")
    path.chmod(0o600)
    case.identity, case.login = [f"username {case.user}"], case.user


def oauth2(case: Case) -> None:
    """OAuth2 with a refresh token that the provider's token endpoint exchanges for an access token."""
    assert case.provider is not None, "an OAuth2 case needs the provider"
    case.refresh_token = "rt-matrix-" + secrets.token_urlsafe(12)
    case.provider.refresh[case.refresh_token] = Grant(case.oauth2_user)
    case.identity = [f"username {case.oauth2_user}", *case.provider.configuration(case.refresh_token).splitlines()]
    case.login = case.oauth2_user


SOURCES = [
    Source("password", inline_password),
    Source("password_command", password_command),
    Source("keyring", keyring),
    Source("netrc", netrc),
    Source("oauth2", oauth2, bearer=True),
]


# ---- the TLS modes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """How the connection is encrypted: the configuration's lines, and aiosmtpd's keyword arguments for a server
    with this TLS context (``ssl_context`` goes to the controller: implicit TLS; the rest to each session)."""

    name: str
    config_lines: tuple[str, ...]
    server_kwargs: Callable[[ssl.SSLContext], dict[str, Any]]


MODES = [
    # Nothing before STARTTLS and no AUTH offered in clear: the secret can only travel encrypted.
    Mode("starttls", ("starttls required",),
         lambda context: {"tls_context": context, "require_starttls": True, "auth_require_tls": True}),
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; implicit TLS is encrypted from the first byte.
    Mode("smtps", ("smtps enabled",), lambda context: {"ssl_context": context, "auth_require_tls": False}),
]


# ---- signing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signing:
    """Whether the case signs with DKIM. ``dkim``: two signatures, RSA-2048 and Ed25519, with keys made once per
    module (tests/test_composition.py); OpenDKIM must pass both on every message the server got."""

    name: str
    dkim: bool


SIGNINGS = [Signing("unsigned", False), Signing("dkim", True)]

#: The DKIM-Signature fields at the top of a received message (the plugin puts its fields there).
DKIM_FIELDS = re.compile(rb"\A(?:DKIM-Signature:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+")


def unsigned(data: bytes) -> tuple[bytes, int]:
    """``data`` without the DKIM-Signature fields at its top, and how many there were."""
    match = DKIM_FIELDS.match(data)
    if match is None:
        return data, 0
    return data[match.end():], match.group(0).count(b"DKIM-Signature:")


# ---- known failures ----------------------------------------------------------------------------------------------

#: (path, source) → why that combination fails today, in every mode and against every server. Issue 19's 24 (the warm
#: relay, ``-bs`` and ``--serverinfo --login`` opened their sessions without the run's secret sources, so every source
#: but ``password`` failed with "no password for ...") were listed here until the fix ("one way to open a session").
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def known_failures(path: DeliveryPath, source: Source) -> list[pytest.MarkDecorator]:
    """A strict xfail for a combination in :data:`KNOWN_FAILURES`: it must fail until the fix removes its entry."""
    reason = KNOWN_FAILURES.get((path.name, source.name))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
