"""SMTP AUTH: the four built-in mechanisms, how one is chosen, the plaintext rule, failures and secrecy.

The end-to-end tests run the installed ``sendmail`` in a subprocess against a real aiosmtpd server that speaks
PLAIN and LOGIN (aiosmtpd's own), CRAM-MD5 (RFC 2195, below) and NTLM (backed by pyspnego's NTLM acceptor).
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as ServerEnvelope
from esmtp_plugins import sasl_crammd5, sasl_login, sasl_ntlm, sasl_plain
from support import Runner, Sink, SmtpServer, _Controller, _Server, transcript_lines

from esmtp.config.model import Identity
from esmtp.errors import AuthenticationError, ConfigError
from esmtp.smtp.sasl import choose_mechanisms
from esmtp.types import Credentials, SaslMechanism

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: auth\n\nHello.\n"
ALL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "NTLM")
USER, PASSWORD = "alice", "s3cret-Pa55"
UTF8_USER, UTF8_PASSWORD = "jürgen", "pä ss wörd ✓"


# ---------------------------------------------------------------------------------------------------------------------
# A real server: aiosmtpd with CRAM-MD5 and NTLM added.
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class AuthState:
    """What the server knows (users) and saw (AUTH command lines, attempts), and a reply to force."""

    users: dict[str, str]
    #: Reply to every AUTH command instead of authenticating (e.g. "454 4.7.0 Temporary authentication failure").
    forced_reply: str | None = None
    #: The argument of each AUTH command as received ("PLAIN <b64>", "LOGIN", ...).
    commands: list[str] = field(default_factory=list)
    #: (mechanism, user, accepted) for each completed exchange.
    attempts: list[tuple[str, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, mechanism: str, user: str, ok: bool) -> AuthResult:
        with self.lock:
            self.attempts.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user.encode(), b"") if ok else None)

    def authenticator(
        self, server: Any, session: Session, envelope: ServerEnvelope, mechanism: str, data: Any
    ) -> AuthResult:
        """PLAIN and LOGIN (aiosmtpd decodes those itself)."""
        user, password = data.login.decode("utf-8"), data.password.decode("utf-8")
        return self.check(mechanism, user, self.users.get(user) == password)


class AuthSMTP(_Server):
    state: AuthState

    async def smtp_AUTH(self, arg: str) -> None:
        self.state.commands.append(arg)
        if self.state.forced_reply and self.session is not None and self.session.extended_smtp:
            await self.push(self.state.forced_reply)
            return
        await super().smtp_AUTH(arg)

    async def auth_CRAM__MD5(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) != 1:
            await self.push("501 5.5.4 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbelow(10**9)}.{os.getpid()}@test.invalid>".encode()
        answer = await self.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(answer, bytes)
        user, _, digest = answer.decode("utf-8").rpartition(" ")
        password = self.state.users.get(user)
        expected = hmac.new(password.encode(), challenge, "md5").hexdigest() if password is not None else None
        # RFC 2195: lowercase hex. A client sending uppercase hex is wrong even if the digest is right.
        return self.state.check("CRAM-MD5", user, expected is not None and digest == expected)

    async def auth_NTLM(self, _: Any, args: list[str]) -> AuthResult:
        import spnego
        from spnego.exceptions import SpnegoError

        context = spnego.server(protocol="ntlm")  # users from NTLM_USER_FILE
        if len(args) == 2:
            negotiate: Any = base64.b64decode(args[1], validate=True)
        else:
            negotiate = await self.challenge_auth(b"")
            if negotiate is MISSING:
                return AuthResult(success=False, handled=True)
        challenge = context.step(negotiate)
        assert challenge is not None
        authenticate = await self.challenge_auth(challenge)
        if authenticate is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            context.step(authenticate)
        except SpnegoError:
            return self.state.check("NTLM", "?", False)
        return self.state.check("NTLM", str(context.client_principal), True)


class AuthController(_Controller):
    def __init__(self, sink: Sink, state: AuthState, mechanisms: tuple[str, ...], server_class: type) -> None:
        self.state, self.mechanisms, self.server_class = state, mechanisms, server_class
        super().__init__(sink, users=None)

    def factory(self) -> Any:
        server = self.server_class(
            self.handler,
            enable_SMTPUTF8=True,
            authenticator=self.state.authenticator,
            auth_require_tls=False,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN", "CRAM-MD5", "NTLM", "XOAUTH2")
                                    if m not in self.mechanisms],
        )
        server.sink = self.sink
        server.state = self.state
        return server


@dataclass
class AuthServer(SmtpServer):
    state: AuthState = field(default_factory=lambda: AuthState({}))


def start_auth_server(users: dict[str, str], mechanisms: tuple[str, ...] = ALL_MECHANISMS,
                      server_class: type = AuthSMTP) -> AuthServer:
    sink, state = Sink(), AuthState(users)
    controller = AuthController(sink, state, mechanisms, server_class)
    controller.start()
    return AuthServer("127.0.0.1", controller.port, sink, controller, state)


@pytest.fixture
def ntlm_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pyspnego's acceptor reads users from NTLM_USER_FILE (``DOMAIN:USER:PASSWORD`` lines)."""
    path = tmp_path / "ntlm-users"
    path.write_text(f":{USER}:{PASSWORD}\n:{UTF8_USER}:{UTF8_PASSWORD}\nCORP:bob:{PASSWORD}\n"
                    f":carol@example.org:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(path))
    return path


@pytest.fixture
def server(ntlm_users: Path) -> Iterator[AuthServer]:
    """All four mechanisms, users alice and jürgen."""
    started = start_auth_server({USER: PASSWORD, UTF8_USER: UTF8_PASSWORD})
    yield started
    started.controller.stop()


@pytest.fixture
def make_server(ntlm_users: Path) -> Iterator[Any]:
    """A factory for servers offering a chosen set of mechanisms."""
    started: list[AuthServer] = []

    def make(mechanisms: tuple[str, ...], users: dict[str, str] | None = None) -> AuthServer:
        one = start_auth_server(users if users is not None else {USER: PASSWORD}, mechanisms)
        started.append(one)
        return one

    yield make
    for one in started:
        one.controller.stop()


def write_config(run: Runner, server: SmtpServer, *lines: str, user: str = USER, password: str = PASSWORD) -> None:
    run.write_config("\n".join([f"hostname {server.hostport}", f'username "{user}"', f'password "{password}"',
                                *lines]) + "\n")


def send(run: Runner, *args: str) -> Any:
    return run(*args, "-f", "alice@example.org", "bob@example.net", input=MESSAGE)


# ---------------------------------------------------------------------------------------------------------------------
# The mechanisms' step objects, on their own.
# ---------------------------------------------------------------------------------------------------------------------


def test_plain_sends_no_authorization_identity() -> None:
    client = sasl_plain.PlainClient(Credentials("alice", "pw"))
    assert client.step(None) == b"\0alice\0pw"


def test_cram_md5_matches_the_rfc_2195_example() -> None:
    client = sasl_crammd5.CramMd5Client(Credentials("tim", "tanstaaftanstaaf"))
    assert client.step(None) is None  # the server speaks first
    answer = client.step(b"<1896.697170952@postoffice.reston.mci.net>")
    assert answer == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(ValueError, match="second"):
        client.step(b"<again@x>")


def test_login_answers_prompts_without_an_initial_response() -> None:
    client = sasl_login.LoginClient(Credentials("alice", "pw"))
    assert client.step(None) is None
    assert client.step(b"Username:") == b"alice"
    assert client.step(b"Password:") == b"pw"
    with pytest.raises(ValueError):
        client.step(b"More:")


def test_login_with_an_initial_response_and_odd_prompts() -> None:
    client = sasl_login.LoginClient(Credentials("alice", "pw"), initial_response=True)
    assert client.step(None) == b"alice"
    assert client.step(b"") == b"pw"  # an unreadable prompt after the username: the password

    ignored = sasl_login.LoginClient(Credentials("alice", "pw"), initial_response=True)
    ignored.step(None)
    assert ignored.step(b"User Name") == b"alice"  # the server ignored the initial response
    assert ignored.step(b"Password") == b"pw"

    positional = sasl_login.LoginClient(Credentials("alice", "pw"))
    positional.step(None)
    assert [positional.step(b"?"), positional.step(b"?")] == [b"alice", b"pw"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [("alice", "alice"), ("corp\\bob", "CORP\\bob"), ("Corp.Example\\bob", "CORP.EXAMPLE\\bob"),
     ("carol@example.org", "carol@example.org")],
)
def test_ntlm_domain_rules(given: str, sent: str) -> None:
    assert sasl_ntlm.ntlm_username(given) == sent


@pytest.mark.parametrize(
    ("username", "password", "principal"),
    [(USER, PASSWORD, USER), ("corp\\bob", PASSWORD, "CORP\\bob"), ("carol@example.org", PASSWORD,
                                                                    "carol@example.org"),
     (UTF8_USER, UTF8_PASSWORD, UTF8_USER)],
)
def test_ntlm_client_against_pyspnego_acceptor(ntlm_users: Path, username: str, password: str,
                                               principal: str) -> None:
    import spnego

    client = sasl_ntlm.NtlmClient(Credentials(username, password, "mail.example.org"))
    acceptor = spnego.server(protocol="ntlm")
    negotiate = client.step(None)
    assert negotiate is not None and negotiate.startswith(b"NTLMSSP\0\x01\0\0\0")
    authenticate = client.step(acceptor.step(negotiate))
    assert authenticate is not None and authenticate.startswith(b"NTLMSSP\0\x03\0\0\0")
    acceptor.step(authenticate)
    assert acceptor.complete
    assert str(acceptor.client_principal).upper() == principal.upper()


def test_ntlm_client_uses_ntlmv2(ntlm_users: Path) -> None:
    import spnego
    from spnego._ntlm_raw.messages import Authenticate

    client = sasl_ntlm.NtlmClient(Credentials(USER, PASSWORD, "mail.example.org"))
    acceptor = spnego.server(protocol="ntlm")
    authenticate = client.step(acceptor.step(client.step(None)))
    assert authenticate is not None
    # NTLMv1 answers are 24 bytes; NTLMv2 answers carry a client blob and are longer.
    assert len(Authenticate.unpack(authenticate).nt_challenge_response or b"") > 24


def test_importing_the_ntlm_plugin_does_not_import_spnego() -> None:
    code = (
        "import sys; import esmtp_plugins.sasl_ntlm as m; [mech] = m.esmtp_sasl_mechanisms(); "
        "mech.factory; assert 'spnego' not in sys.modules, 'spnego imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------------------
# Choosing a mechanism (pure logic).
# ---------------------------------------------------------------------------------------------------------------------


def _installed() -> dict[str, SaslMechanism]:
    found: dict[str, SaslMechanism] = {}
    for plugin in (sasl_plain, sasl_login, sasl_crammd5, sasl_ntlm):
        for mechanism in plugin.esmtp_sasl_mechanisms():
            found[mechanism.name] = mechanism
    return found


def _choose(offered: list[str], *, encrypted: bool = False, **options: str) -> list[str]:
    identity = Identity(address=None, username="u", password="p", options=dict(options))
    chosen = choose_mechanisms(identity, _installed(), offered, encrypted=encrypted, server="mx:587")
    return [mechanism.name for mechanism in chosen]


def test_strongest_first_whatever_the_server_order() -> None:
    assert _choose(["PLAIN", "LOGIN", "NTLM", "CRAM-MD5"], encrypted=True) == ["CRAM-MD5", "NTLM", "PLAIN", "LOGIN"]
    assert _choose(["LOGIN", "PLAIN"], encrypted=True) == ["PLAIN", "LOGIN"]


def test_auth_mechanisms_sets_the_order_and_the_allowed_set() -> None:
    assert _choose(["CRAM-MD5", "PLAIN", "NTLM"], encrypted=True, auth_mechanisms="plain, ntlm") == ["PLAIN", "NTLM"]
    with pytest.raises(AuthenticationError, match=r"offers AUTH CRAM-MD5.*allowed: LOGIN"):
        _choose(["CRAM-MD5"], auth_mechanisms="LOGIN")


def test_auth_mechanisms_naming_an_unknown_mechanism_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SCRAM-SHA-256"):
        _choose(["PLAIN"], auth_mechanisms="SCRAM-SHA-256 PLAIN")


def test_plaintext_mechanisms_need_tls_or_auth_plaintext() -> None:
    assert _choose(["PLAIN", "LOGIN", "CRAM-MD5"]) == ["CRAM-MD5"]  # the safe one, silently
    with pytest.raises(AuthenticationError, match="auth_plaintext enabled"):
        _choose(["PLAIN", "LOGIN"])
    assert _choose(["PLAIN", "LOGIN"], auth_plaintext="enabled") == ["PLAIN", "LOGIN"]
    assert _choose(["PLAIN", "LOGIN"], encrypted=True) == ["PLAIN", "LOGIN"]


def test_no_auth_offered_is_an_error() -> None:
    with pytest.raises(AuthenticationError, match="does not offer authentication"):
        _choose([])


# ---------------------------------------------------------------------------------------------------------------------
# End to end: the installed command against the server.
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ALL_MECHANISMS)
def test_each_mechanism_delivers(run: Runner, server: AuthServer, mechanism: str) -> None:
    write_config(run, server, f"auth_mechanisms {mechanism}", "auth_plaintext enabled")
    result = send(run)
    assert result.returncode == 0, result.stderr
    assert server.state.attempts == [(mechanism, USER, True)]
    [got] = server.sink.messages
    assert got.login == USER and got.rcpt_tos == ["bob@example.net"]


def test_wire_formats(run: Runner, server: AuthServer) -> None:
    """PLAIN and NTLM with an initial response, CRAM-MD5 and (by default) LOGIN without."""
    for mechanism in ALL_MECHANISMS:
        write_config(run, server, f"auth_mechanisms {mechanism}", "auth_plaintext enabled")
        assert send(run).returncode == 0
    plain, login, cram, ntlm = server.state.commands
    assert plain == "PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert login == "LOGIN"
    assert cram == "CRAM-MD5"
    assert ntlm.startswith("NTLM ") and base64.b64decode(ntlm[5:]).startswith(b"NTLMSSP\0\x01")


def test_login_initial_response_keyword(run: Runner, server: AuthServer) -> None:
    write_config(run, server, "auth_mechanisms LOGIN", "auth_plaintext enabled", "auth_login_initial_response enabled")
    assert send(run).returncode == 0
    assert server.state.commands == ["LOGIN " + base64.b64encode(USER.encode()).decode()]


def test_the_login_plugin_registers_its_keyword(run: Runner, server: AuthServer) -> None:
    write_config(run, server, "auth_login_initial_response maybe")
    result = send(run)
    assert result.returncode == 78
    assert re.search(r"\.esmtprc:4: 'auth_login_initial_response' takes one of enabled, disabled", result.stderr)
    # Without the plugin, nobody declares the keyword.
    write_config(run, server, "auth_login_initial_response enabled")
    blocked = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE,
                  env=run.env(ESMTP_DISABLE_PLUGINS="sasl_login"))
    assert blocked.returncode == 78
    assert "unknown keyword 'auth_login_initial_response'" in blocked.stderr
    assert server.state.commands == []


@pytest.mark.parametrize("mechanism", ALL_MECHANISMS)
def test_utf8_credentials(run: Runner, server: AuthServer, mechanism: str) -> None:
    write_config(run, server, f"auth_mechanisms {mechanism}", "auth_plaintext enabled",
                 user=UTF8_USER, password=UTF8_PASSWORD)
    result = send(run)
    assert result.returncode == 0, result.stderr
    assert server.state.attempts == [(mechanism, UTF8_USER, True)]


def test_default_choice_is_the_strongest_offered(run: Runner, make_server: Any) -> None:
    everything = make_server(ALL_MECHANISMS)
    write_config(run, everything)
    assert send(run).returncode == 0
    assert [attempt[0] for attempt in everything.state.attempts] == ["CRAM-MD5"]

    # esmtp 1.2 took the server's first (LOGIN); without CRAM-MD5 the next strongest is NTLM.
    no_cram = make_server(("LOGIN", "NTLM", "PLAIN"))
    write_config(run, no_cram)
    assert send(run).returncode == 0
    assert [attempt[0] for attempt in no_cram.state.attempts] == ["NTLM"]


def test_auth_mechanisms_order_wins(run: Runner, server: AuthServer) -> None:
    write_config(run, server, 'auth_mechanisms "PLAIN CRAM-MD5"', "auth_plaintext enabled")
    assert send(run).returncode == 0
    assert [attempt[0] for attempt in server.state.attempts] == ["PLAIN"]


def test_plaintext_refused_without_tls(run: Runner, make_server: Any) -> None:
    plain_only = make_server(("PLAIN", "LOGIN"))
    write_config(run, plain_only)
    result = send(run)
    assert result.returncode == 77
    assert "auth_plaintext enabled" in result.stderr
    assert "not encrypted" in result.stderr
    assert plain_only.state.commands == []  # nothing was sent, not even the username
    assert plain_only.sink.messages == []


def test_auth_plaintext_enabled_allows_plain_without_tls(run: Runner, make_server: Any) -> None:
    plain_only = make_server(("PLAIN", "LOGIN"))
    write_config(run, plain_only, "auth_plaintext enabled")
    result = send(run)
    assert result.returncode == 0, result.stderr
    assert plain_only.state.attempts == [("PLAIN", USER, True)]


@pytest.mark.parametrize("mechanism", ALL_MECHANISMS)
def test_wrong_password_exits_77_and_sends_nothing(run: Runner, server: AuthServer, mechanism: str) -> None:
    write_config(run, server, f"auth_mechanisms {mechanism}", "auth_plaintext enabled", password="wrong")
    result = send(run)
    assert result.returncode == 77, result.stderr
    assert "535" in result.stderr and mechanism in result.stderr
    assert server.sink.messages == []
    assert len(server.state.commands) == 1  # no retry with another mechanism (esmtp 1.2 did that)


def test_wrong_password_does_not_fall_back(run: Runner, server: AuthServer) -> None:
    write_config(run, server, "auth_plaintext enabled", password="wrong")
    result = send(run)
    assert result.returncode == 77
    assert [attempt[0] for attempt in server.state.attempts] == ["CRAM-MD5"]
    assert server.sink.messages == []


def test_temporary_auth_failure_exits_75(run: Runner, server: AuthServer) -> None:
    server.state.forced_reply = "454 4.7.0 Temporary authentication failure"
    write_config(run, server)
    result = send(run)
    assert result.returncode == 75, result.stderr
    assert "454 4.7.0 Temporary authentication failure" in result.stderr
    assert server.sink.messages == []


def test_permanent_reply_to_the_auth_command_exits_77(run: Runner, server: AuthServer) -> None:
    server.state.forced_reply = "538 5.7.11 Encryption required for requested authentication mechanism"
    write_config(run, server)
    result = send(run)
    assert result.returncode == 77
    assert "538 5.7.11" in result.stderr


def test_unknown_mechanism_in_auth_mechanisms_exits_78(run: Runner, server: AuthServer) -> None:
    write_config(run, server, "auth_mechanisms SCRAM-SHA-1")
    result = send(run)
    assert result.returncode == 78
    assert "SCRAM-SHA-1" in result.stderr
    assert server.sink.messages == []


def test_username_but_no_auth_offered(run: Runner, smtp_server: SmtpServer) -> None:
    write_config(run, smtp_server)
    result = send(run)
    assert result.returncode == 77
    assert "does not offer authentication" in result.stderr
    assert smtp_server.sink.messages == []


def _secret_forms(user: str, password: str) -> list[str]:
    raw = [password, f"\0{user}\0{password}", f"{user}\0{password}"]
    return [*raw, *(base64.b64encode(item.encode()).decode() for item in raw)]


@pytest.mark.parametrize("mechanism", ALL_MECHANISMS)
def test_secrets_stay_out_of_verbose_output_and_transcript(run: Runner, server: AuthServer, mechanism: str,
                                                            tmp_path: Path) -> None:
    transcript = tmp_path / "transcript.log"
    for password in (PASSWORD, "wrong-Pa55"):  # a success and a failure
        write_config(run, server, f"auth_mechanisms {mechanism}", "auth_plaintext enabled", password=password)
        result = send(run, "-v", "-X", str(transcript))
        shown = result.stdout + result.stderr + transcript.read_text()
        for secret in _secret_forms(USER, password):
            assert secret not in shown, f"{secret!r} leaked"
    lines = transcript_lines(transcript)
    assert any(line.startswith(f"C: AUTH {mechanism}") for line in lines)
    # Every client line of the exchange is masked: "AUTH <MECH>" alone, "AUTH <MECH> ****" or "****".
    for line in lines:
        if line.startswith("C: AUTH"):
            assert re.fullmatch(rf"C: AUTH {re.escape(mechanism)}( \*\*\*\*)?", line), line
    answers = [line for index, line in enumerate(lines) if index and lines[index - 1].startswith("S: 334")]
    assert all(line == "C: ****" for line in answers)
    assert bool(answers) == (mechanism != "PLAIN")  # PLAIN is done in its initial response


def test_spnego_is_imported_only_for_ntlm(run: Runner, server: AuthServer) -> None:
    env = run.env(PYTHONPROFILEIMPORTTIME="1")
    write_config(run, server, "auth_mechanisms CRAM-MD5")
    cram = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE, env=env)
    assert cram.returncode == 0
    assert not re.search(r"\| +spnego$", cram.stderr, re.MULTILINE)
    write_config(run, server, "auth_mechanisms NTLM")
    ntlm = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE, env=env)
    assert ntlm.returncode == 0
    assert re.search(r"\| +spnego$", ntlm.stderr, re.MULTILINE)
