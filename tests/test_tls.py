"""TLS: STARTTLS and implicit TLS against real in-process servers (aiosmtpd), esmtp's certificate files and rules.

The end-to-end tests run the installed ``sendmail`` command with its own HOME, as a user would, against aiosmtpd
servers using certificates generated for the run (a test CA, good, expired, wrong-host and rogue server
certificates, client certificates). Every failing case also checks that nothing was delivered.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from support import (
    BIN,
    RESET,
    BindsPortZero,
    Reply,
    Runner,
    ScriptedServer,
    Sink,
    StartScripted,
    _Authenticator,
    _Handler,
    _Server,
    transcript_lines,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from interop_tls import TLSFiles, generate_tls_files

from esmtp.config.model import Identity
from esmtp.errors import ConfigError
from esmtp.smtp import tls

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: tls\n\nover TLS\n"
SEND = ("-f", "alice@example.org", "bob@example.net")
EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 69, 75, 77, 78


# ---- certificates and servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A test CA, server certificates (good, expired, wrong host, rogue CA) and client certificates."""
    return generate_tls_files(tmp_path_factory.mktemp("pki") / "tls")


def server_context(pki: TLSFiles, cert: Path | None = None, *, client_ca: Path | None = None,
                   max_version: ssl.TLSVersion | None = None, sni: list[str] | None = None) -> ssl.SSLContext:
    """A server-side context serving ``cert`` (the good one by default); ``client_ca`` makes a client cert required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert or pki.server_cert_pem), str(pki.server_key_pem))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    if max_version is not None:
        context.maximum_version = max_version
    if sni is not None:
        def record(_ssl: Any, name: str | None, _ctx: Any) -> None:
            sni.append(name or "")

        context.sni_callback = record
    return context


@dataclass
class TlsServer:
    port: int
    sink: Sink
    controller: Controller

    @property
    def hostport(self) -> str:
        return f"localhost:{self.port}"


class _TlsController(BindsPortZero, Controller):
    """aiosmtpd with STARTTLS (``tls_context``) or implicit TLS (``ssl_context``), optionally AUTH after TLS only."""

    def __init__(self, sink: Sink, *, users: dict[str, str] | None, starttls: ssl.SSLContext | None,
                 require_starttls: bool, implicit: ssl.SSLContext | None) -> None:
        self.sink, self.users = sink, users
        self.starttls, self.require_starttls = starttls, require_starttls
        super().__init__(_Handler(sink), hostname="127.0.0.1", port=0, ssl_context=implicit)

    def factory(self) -> Any:
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
        if self.starttls is not None:
            kwargs.update(tls_context=self.starttls, require_starttls=self.require_starttls)
        if self.users is not None:
            kwargs.update(authenticator=_Authenticator(self.sink, self.users), auth_require_tls=True)
        server = _Server(self.handler, **kwargs)
        server.sink = self.sink
        return server


@pytest.fixture
def tls_server() -> Iterator[Callable[..., TlsServer]]:
    """Start aiosmtpd servers with the given TLS set-up; all are stopped at the end of the test."""
    started: list[Controller] = []

    def start(*, starttls: ssl.SSLContext | None = None, implicit: ssl.SSLContext | None = None,
              require_starttls: bool = True, users: dict[str, str] | None = None) -> TlsServer:
        sink = Sink()
        controller = _TlsController(sink, users=users, starttls=starttls, require_starttls=require_starttls,
                                    implicit=implicit)
        controller.start()
        sink.clear()  # the controller's own readiness probe is not a client
        started.append(controller)
        return TlsServer(controller.port, sink, controller)

    yield start
    for controller in started:
        controller.stop()


# ---- helpers -----------------------------------------------------------------------------------------------------


def install(path: Path, source: Path | bytes, mode: int = 0o600) -> Path:
    """Put a certificate file where esmtp looks, with esmtp's permissions (directories 0700)."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir(mode=0o700)
    path.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    path.chmod(mode)
    return path


def trust(run: Runner, pki: TLSFiles) -> Path:
    """The esmtp README's way: the test CA in ~/.authenticate/ca.pem."""
    return install(run.home / ".authenticate" / "ca.pem", pki.ca_pem)


def send(run: Runner, hostport: str, *options: str, args: tuple[str, ...] = ()) -> Any:
    run.write_config(f"hostname {hostport}\n" + "".join(f"{line}\n" for line in options))
    return run("-v", *args, *SEND, input=MESSAGE)


def delivered(server: TlsServer) -> list[Any]:
    return server.sink.messages


# ---- STARTTLS ----------------------------------------------------------------------------------------------------


def test_starttls_required_with_esmtp_ca_pem(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    sni: list[str] = []
    server = tls_server(starttls=server_context(pki, sni=sni))
    trust(run, pki)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == 0, result.stderr
    [got] = delivered(server)
    assert got.tls and got.rcpt_tos == ["bob@example.net"]
    assert sni == ["localhost"]  # SNI carries the configured host name
    assert "certificate verified" in result.stderr


def test_starttls_required_authenticates_only_inside_tls(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]
) -> None:
    server = tls_server(starttls=server_context(pki), users={"alice": "s3cret"})
    trust(run, pki)
    transcript = run.home / "transcript"
    result = send(run, server.hostport, "starttls required", "username alice", "password s3cret",
                  args=("-X", str(transcript)))
    assert result.returncode == 0, result.stderr
    assert server.sink.auths == [("PLAIN", "alice")]
    lines = transcript_lines(transcript)
    starttls = lines.index("C: STARTTLS")
    assert any(line.startswith("C: AUTH") for line in lines[starttls:])
    assert not any(line.startswith(("C: AUTH", "C: MAIL")) for line in lines[:starttls])


def test_ip_address_host_is_checked_against_ip_san(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]
) -> None:
    server = tls_server(starttls=server_context(pki))
    trust(run, pki)
    result = send(run, f"127.0.0.1:{server.port}", "starttls required")
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


def test_starttls_enabled_uses_tls_when_offered(run: Runner, pki: TLSFiles,
                                                tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki))
    trust(run, pki)
    result = send(run, server.hostport, "starttls enabled")
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


def test_starttls_enabled_without_starttls_continues_in_clear_with_a_warning(
    run: Runner, tls_server: Callable[..., TlsServer]
) -> None:
    server = tls_server()
    result = send(run, server.hostport, "starttls enabled")
    assert result.returncode == 0, result.stderr
    assert not delivered(server)[0].tls
    assert "does not offer STARTTLS" in result.stderr and "WITHOUT encryption" in result.stderr


def test_starttls_required_without_starttls_sends_nothing(run: Runner, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server()
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == EX_UNAVAILABLE
    assert f"localhost:{server.port} does not offer STARTTLS" in result.stderr
    assert delivered(server) == []


def test_starttls_disabled_never_starts_tls_nor_reads_certificate_files(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]
) -> None:
    server = tls_server(starttls=server_context(pki), require_starttls=False)
    install(run.home / ".authenticate" / "ca.pem", pki.ca_pem, mode=0o644)  # would be an error if it were read
    result = send(run, server.hostport, "starttls disabled")
    assert result.returncode == 0, result.stderr
    assert not delivered(server)[0].tls
    assert "C: STARTTLS" not in result.stderr


@pytest.mark.parametrize("level", ["enabled", "required"])
def test_verification_failure_is_an_error_never_a_downgrade(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer], level: str
) -> None:
    server = tls_server(starttls=server_context(pki, pki.rogue_cert_pem), require_starttls=False)
    trust(run, pki)
    result = send(run, server.hostport, f"starttls {level}")
    assert result.returncode == EX_UNAVAILABLE
    assert "issued by an untrusted CA (issuer: esmtp interop ROGUE CA (untrusted))" in result.stderr
    assert str(run.home / ".authenticate" / "ca.pem") in result.stderr
    assert delivered(server) == []


def test_expired_certificate_names_the_date(run: Runner, pki: TLSFiles,
                                            tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki, pki.expired_cert_pem))
    trust(run, pki)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == EX_UNAVAILABLE
    assert f"localhost:{server.port}: the TLS certificate for localhost has expired (not after 20" in result.stderr
    assert delivered(server) == []


def test_wrong_host_names_what_the_certificate_is_for(run: Runner, pki: TLSFiles,
                                                      tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki, pki.wronghost_cert_pem))
    trust(run, pki)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == EX_UNAVAILABLE
    assert "is not for host localhost (it is for wrong.example.invalid)" in result.stderr
    assert delivered(server) == []


def test_untrusted_ca_without_esmtp_files_fails(run: Runner, pki: TLSFiles,
                                                tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki))
    result = send(run, server.hostport, "starttls required")  # the test CA is in no store at all
    assert result.returncode == EX_UNAVAILABLE
    assert "untrusted CA (issuer: esmtp interop test CA)" in result.stderr
    assert delivered(server) == []


def test_refused_starttls_is_an_error_not_a_downgrade(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"STARTTLS": "454 4.7.0 TLS not available due to local problem"}, extensions=("STARTTLS",))
    result = send(run, f"127.0.0.1:{server.port}", "starttls enabled", "username alice", "password s3cret")
    assert result.returncode == EX_TEMPFAIL
    assert f"127.0.0.1:{server.port} refused STARTTLS: 454 4.7.0 TLS not available" in result.stderr
    assert [c.split()[0] for c in server.commands] == ["EHLO", "STARTTLS"]


def test_handshake_reset_is_temporary_and_sends_nothing(run: Runner, pki: TLSFiles,
                                                        scripted_server: StartScripted) -> None:
    # The connection is reset (RST) in the middle of the handshake, once the ClientHello has arrived.
    server = scripted_server({"STARTTLS": Reply("220 2.0.0 go ahead", then=RESET)}, extensions=("STARTTLS",))
    trust(run, pki)
    result = send(run, f"127.0.0.1:{server.port}", "starttls required", "username alice", "password s3cret")
    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert f"127.0.0.1:{server.port} closed the connection during the TLS handshake" in result.stderr
    assert [c.split()[0] for c in server.commands] == ["EHLO", "STARTTLS"]


def test_cleartext_injected_after_starttls_is_discarded(run: Runner, pki: TLSFiles,
                                                        scripted_server: StartScripted) -> None:
    # What a man in the middle adds in clear text behind the 220 (RFC 3207 4.2), before the handshake.
    server = scripted_server({"STARTTLS": "220 2.0.0 go ahead\n250 injected.test"}, tls=server_context(pki))
    trust(run, pki)
    result = send(run, f"localhost:{server.port}", "starttls required")
    assert result.returncode == 0, result.stderr
    assert "injected.test" not in result.stderr  # never read as the reply to the EHLO inside TLS
    assert len(server.messages) == 1


# ---- implicit TLS ------------------------------------------------------------------------------------------------


def test_implicit_tls(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(implicit=server_context(pki))
    trust(run, pki)
    result = send(run, server.hostport, "smtps enabled")
    assert result.returncode == 0, result.stderr
    assert len(delivered(server)) == 1  # (aiosmtpd marks only STARTTLS sessions as TLS)
    assert "(implicit TLS)" in result.stderr and "certificate verified" in result.stderr


def test_implicit_tls_verifies_too(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(implicit=server_context(pki, pki.expired_cert_pem))
    trust(run, pki)
    result = send(run, server.hostport, "smtps enabled")
    assert result.returncode == EX_UNAVAILABLE
    assert "the TLS certificate for localhost has expired" in result.stderr
    assert delivered(server) == []


def test_implicit_tls_against_a_plain_port_says_so(run: Runner, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server()
    result = send(run, server.hostport, "smtps enabled")
    assert result.returncode == EX_UNAVAILABLE
    assert "does not speak TLS on this port" in result.stderr
    assert delivered(server) == []


@pytest.mark.parametrize("starttls", ["starttls required", "starttls disabled"])
@pytest.mark.parametrize("command", ["send", "serverinfo"])
def test_implicit_tls_on_any_port_without_smtps_says_so(run: Runner, pki: TLSFiles,
                                                        tls_server: Callable[..., TlsServer], starttls: str,
                                                        command: str) -> None:
    """An implicit-TLS server on a port other than 465 (2465 here: any free port) waits for our TLS hello in silence.
    Silence after connecting, then a TLS handshake that succeeds on a probe, is the pattern: the same advice and 69
    as on port 465, in seconds, instead of 75 after the greeting wait (and a caller retrying forever)."""
    server = tls_server(implicit=server_context(pki))
    run.write_config(f"hostname {server.hostport}\n{starttls}\n")
    started = time.monotonic()
    args = ["--serverinfo"] if command == "serverinfo" else list(SEND)
    result = run(*args, input=MESSAGE, program="esmtp" if command == "serverinfo" else "sendmail")
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert f"{server.hostport} sent no greeting within 5 s and answers a TLS handshake" in result.stderr
    assert "add 'smtps enabled'" in result.stderr
    assert time.monotonic() - started < 20
    assert delivered(server) == []


# ---- certificate locations and rules ----------------------------------------------------------------------------


def test_hashed_ca_directory(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    if pki.ca_dir is None:
        pytest.skip("openssl CLI not installed: no hashed CA directory")
    server = tls_server(starttls=server_context(pki))
    ca_dir = run.home / ".authenticate" / "ca"
    for entry in pki.ca_dir.iterdir():
        install(ca_dir / entry.name, entry)
    ca_dir.chmod(0o700)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


def test_libesmtp_xdg_locations(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki, client_ca=pki.ca_pem))
    xdg = run.home / ".config" / "libesmtp"
    install(xdg / "ca.pem", pki.ca_pem)
    install(xdg / "private" / "localhost.pem", pki.client_combined_pem)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


def test_xdg_config_dir_is_honoured_like_libesmtp(run: Runner, pki: TLSFiles,
                                                   tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki))
    elsewhere = run.home / "cfg"
    install(elsewhere / "libesmtp" / "ca.pem", pki.ca_pem)
    run.write_config(f"hostname {server.hostport}\nstarttls required\n")
    result = run(*SEND, input=MESSAGE, env=run.env(XDG_CONFIG_DIR=str(elsewhere)))
    assert result.returncode == 0, result.stderr


def test_system_store_is_used_besides_esmtp_files(run: Runner, pki: TLSFiles,
                                                  tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki))
    install(run.home / ".authenticate" / "ca.pem", pki.rogue_ca_pem)  # esmtp's file trusts another CA only
    run.write_config(f"hostname {server.hostport}\nstarttls required\n")
    # SSL_CERT_FILE stands in for the system store (OpenSSL's default verify path).
    result = run(*SEND, input=MESSAGE, env=run.env(SSL_CERT_FILE=str(pki.ca_pem)))
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o644, "has permissions 0644"), (0o640, "has permissions 0640"), (0o700, "has permissions 0700")],
)
def test_ca_file_breaking_the_rules_is_an_error_naming_it(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer], mode: int, expected: str
) -> None:
    server = tls_server(starttls=server_context(pki))
    ca = install(run.home / ".authenticate" / "ca.pem", pki.ca_pem, mode=mode)
    result = send(run, server.hostport, "starttls enabled")
    assert result.returncode == EX_CONFIG
    assert f"{ca} {expected}" in result.stderr and f"chmod 600 {ca}" in result.stderr
    assert server.sink.connections == 0  # checked before connecting: no plain-text fall-back as in esmtp


def test_ca_directory_open_to_others_is_an_error(run: Runner, pki: TLSFiles,
                                                  tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki))
    ca_dir = run.home / ".authenticate" / "ca"
    install(ca_dir / "x.pem", pki.ca_pem)
    ca_dir.chmod(0o755)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == EX_CONFIG
    assert f"{ca_dir} has permissions 0755" in result.stderr
    assert server.sink.connections == 0


# ---- client certificates -----------------------------------------------------------------------------------------


def test_client_certificate_accepted(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki, client_ca=pki.ca_pem))
    trust(run, pki)
    cert = install(run.home / ".authenticate" / "private" / "smtp-starttls.pem", pki.client_combined_pem)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == 0, result.stderr
    assert f"client certificate: {cert}" in result.stderr
    assert delivered(server)[0].tls


def requiring_client_cert(scripted_server: StartScripted, pki: TLSFiles,
                          max_version: ssl.TLSVersion | None = None) -> ScriptedServer:
    """An OpenSSL server (it sends TLS alerts, unlike asyncio's) that requires a client cert from the test CA."""
    return scripted_server(tls=server_context(pki, client_ca=pki.ca_pem, max_version=max_version))


def test_client_certificate_missing_is_refused(run: Runner, pki: TLSFiles,
                                               scripted_server: StartScripted) -> None:
    server = requiring_client_cert(scripted_server, pki)
    trust(run, pki)
    result = send(run, f"localhost:{server.port}", "starttls required")
    assert result.returncode == EX_NOPERM
    assert f"localhost:{server.port} requires a TLS client certificate and none is configured" in result.stderr
    assert str(run.home / ".authenticate" / "private" / "smtp-starttls.pem") in result.stderr
    assert [c.split()[0] for c in server.commands] == ["EHLO", "STARTTLS"] and server.messages == []


def test_client_certificate_missing_tls12_server(run: Runner, pki: TLSFiles,
                                                 scripted_server: StartScripted) -> None:
    server = requiring_client_cert(scripted_server, pki, max_version=ssl.TLSVersion.TLSv1_2)
    trust(run, pki)
    result = send(run, f"localhost:{server.port}", "starttls required")
    assert result.returncode == EX_UNAVAILABLE
    assert "handshake failure; if the server requires a TLS client certificate, see docs/tls.md" in result.stderr
    assert server.messages == []


def test_server_hanging_up_after_the_handshake_hints_at_the_client_certificate(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]
) -> None:
    # asyncio's TLS servers (aiosmtpd) send no alert when they refuse a client: the connection just closes.
    server = tls_server(starttls=server_context(pki, client_ca=pki.ca_pem))
    trust(run, pki)
    result = send(run, server.hostport, "starttls required")
    assert result.returncode == EX_TEMPFAIL
    # "during" or "right after" the handshake, depending on when the close arrives
    assert re.search(r"closed the connection (during|right after) the TLS handshake; nothing was sent", result.stderr)
    assert "requires a TLS client certificate" in result.stderr
    assert delivered(server) == []


def test_per_host_client_certificate_wins(run: Runner, pki: TLSFiles, scripted_server: StartScripted) -> None:
    server = requiring_client_cert(scripted_server, pki)
    trust(run, pki)
    authenticate = run.home / ".authenticate"
    general = install(authenticate / "private" / "smtp-starttls.pem", pki.rogue_client_combined_pem)
    install(authenticate / "localhost" / "private" / "smtp-starttls.pem", pki.client_combined_pem)
    result = send(run, f"localhost:{server.port}", "starttls required")
    assert result.returncode == 0, result.stderr
    assert len(server.messages) == 1

    (authenticate / "localhost" / "private" / "smtp-starttls.pem").unlink()
    result = send(run, f"localhost:{server.port}", "starttls required")
    assert result.returncode == EX_NOPERM
    assert f"refused the TLS client certificate {general} (tlsv1 alert unknown ca)" in result.stderr
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("passphrase", "code", "expected"),
    [
        (None, EX_CONFIG, "is encrypted: set certificate_passphrase"),
        ("wrong", EX_CONFIG, "certificate_passphrase does not decrypt the private key in"),
    ],
)
def test_encrypted_client_key_needs_the_right_passphrase(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer], passphrase: str | None, code: int,
    expected: str,
) -> None:
    server = tls_server(starttls=server_context(pki, client_ca=pki.ca_pem))
    trust(run, pki)
    cert = install(run.home / ".authenticate" / "private" / "smtp-starttls.pem", pki.client_combined_encrypted_pem)
    options = ["starttls required"] + ([f'certificate_passphrase "{passphrase}"'] if passphrase else [])
    result = send(run, server.hostport, *options)
    assert result.returncode == code
    assert expected in result.stderr and str(cert) in result.stderr
    assert server.sink.connections == 0


def test_encrypted_client_key_with_the_right_passphrase(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]
) -> None:
    server = tls_server(starttls=server_context(pki, client_ca=pki.ca_pem))
    trust(run, pki)
    install(run.home / ".authenticate" / "private" / "smtp-starttls.pem", pki.client_combined_encrypted_pem)
    result = send(run, server.hostport, "starttls required", f'certificate_passphrase "{pki.client_key_passphrase}"')
    assert result.returncode == 0, result.stderr
    assert delivered(server)[0].tls


# ---- beyond esmtp: pinning and minimum version -------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    return tls.format_fingerprint(ssl.PEM_cert_to_DER_cert(path.read_text()))


@pytest.mark.parametrize("spelling", ["as printed", "lower case without colons"])
def test_fingerprint_pin_accepts_an_otherwise_untrusted_certificate(
    run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer], spelling: str
) -> None:
    server = tls_server(starttls=server_context(pki, pki.rogue_cert_pem))
    pin = fingerprint(pki.rogue_cert_pem)
    if spelling != "as printed":
        pin = pin.removeprefix("SHA256:").replace(":", "").lower()
    result = send(run, server.hostport, "starttls required", f'tls_fingerprint "{pin}"')
    assert result.returncode == 0, result.stderr
    assert "pinned by tls_fingerprint" in result.stderr
    assert delivered(server)[0].tls


def test_fingerprint_mismatch_sends_nothing(run: Runner, pki: TLSFiles,
                                            tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki), users={"alice": "s3cret"})
    trust(run, pki)  # even a certificate that verifies must match the pin
    pin = fingerprint(pki.rogue_cert_pem)
    result = send(run, server.hostport, "starttls required", f'tls_fingerprint "{pin}"', "username alice",
                  "password s3cret")
    assert result.returncode == EX_UNAVAILABLE
    assert "does not match tls_fingerprint; it is " + fingerprint(pki.server_cert_pem) in result.stderr
    assert server.sink.auths == [] and delivered(server) == []


def test_fingerprint_pin_with_implicit_tls(run: Runner, pki: TLSFiles, tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(implicit=server_context(pki, pki.wronghost_cert_pem))
    result = send(run, server.hostport, "smtps enabled", f"tls_fingerprint {fingerprint(pki.wronghost_cert_pem)}")
    assert result.returncode == 0, result.stderr


def test_untrusted_message_offers_the_fingerprint_to_pin(run: Runner, pki: TLSFiles,
                                                         tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(starttls=server_context(pki, pki.rogue_cert_pem))
    result = send(run, server.hostport, "starttls required")
    assert f"tls_fingerprint {fingerprint(pki.rogue_cert_pem)}" in result.stderr


def test_minimum_version_refuses_an_older_server(run: Runner, pki: TLSFiles,
                                                 scripted_server: StartScripted) -> None:
    server = scripted_server(tls=server_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    trust(run, pki)
    result = send(run, f"localhost:{server.port}", "starttls required", "tls_min_version 1.3")
    assert result.returncode == EX_UNAVAILABLE
    assert "share no TLS version at or above 1.3 (tlsv1 alert protocol version)" in result.stderr
    assert server.messages == []

    result = send(run, f"localhost:{server.port}", "starttls required", "tls_min_version 1.2")
    assert result.returncode == 0, result.stderr
    assert "TLSv1.2" in result.stderr
    assert len(server.messages) == 1


def test_minimum_version_against_a_server_closing_without_alert(run: Runner, pki: TLSFiles,
                                                               tls_server: Callable[..., TlsServer]) -> None:
    # asyncio's TLS servers (aiosmtpd) just close when no version is shared: no alert says why.
    server = tls_server(starttls=server_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    trust(run, pki)
    result = send(run, server.hostport, "starttls required", "tls_min_version 1.3")
    assert result.returncode == EX_UNAVAILABLE, result.stderr  # permanent: a queue must not retry it for days
    assert f"{server.hostport} speaks TLS 1.2 at most, below 'tls_min_version 1.3'" in result.stderr
    assert "client certificate" not in result.stderr
    assert delivered(server) == []


# ---- tls.py on its own -------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_DIR", raising=False)
    return home


def test_certificate_dirs(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls.certificate_dirs() == [str(home / ".authenticate"), str(home / ".config" / "libesmtp")]
    monkeypatch.setenv("XDG_CONFIG_DIR", "/elsewhere")
    assert tls.certificate_dirs()[1] == "/elsewhere/libesmtp"


def test_client_certificate_candidates_order(home: Path) -> None:
    a, x = home / ".authenticate", home / ".config" / "libesmtp"
    assert tls.client_certificate_candidates("mail.example.org") == [
        str(a / "mail.example.org" / "private" / "smtp-starttls.pem"),
        str(x / "private" / "mail.example.org.pem"),
        str(a / "private" / "smtp-starttls.pem"),
        str(x / "private" / "smtp-starttls.pem"),
    ]
    assert len(tls.client_certificate_candidates("../etc")) == 2  # never a path outside the directories


def test_check_file_rules(home: Path, pki: TLSFiles) -> None:
    path = home / "ca.pem"
    assert tls.check_file(str(path)) is False
    install(path, pki.ca_pem, mode=0o400)
    assert tls.check_file(str(path)) is True
    link = home / "link.pem"
    link.symlink_to(path)
    assert tls.check_file(str(link)) is True  # libESMTP follows symlinks (stat)
    (home / "dangling.pem").symlink_to(home / "nowhere")
    with pytest.raises(ConfigError, match="symbolic link to a file that does not exist"):
        tls.check_file(str(home / "dangling.pem"))
    install(home / "empty.pem", b"")
    with pytest.raises(ConfigError, match=r"empty\.pem is empty"):
        tls.check_file(str(home / "empty.pem"))
    with pytest.raises(ConfigError, match="must be a regular file"):
        tls.check_file(str(home))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_check_file_ownership(home: Path, pki: TLSFiles) -> None:
    path = install(home / "ca.pem", pki.ca_pem)
    os.chown(path, 65534, -1)
    with pytest.raises(ConfigError, match=r"ca\.pem must be owned by you \(uid 0\), not by uid 65534"):
        tls.check_file(str(path))


@pytest.mark.parametrize(
    "text",
    [
        "SHA256:" + ":".join(["AB"] * 32),
        "sha256:" + "ab" * 32,
        "AB" * 32,
        ":".join(["ab"] * 32),
        "  SHA-256:" + "Ab" * 32 + " ",
    ],
)
def test_parse_fingerprint_spellings(text: str) -> None:
    assert tls.parse_fingerprint(text) == bytes([0xAB] * 32)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SHA1:" + ":".join(["AB"] * 20), "only SHA256 fingerprints"),
        ("SHA256:ABCD", "is not a SHA-256 fingerprint"),
        ("zz" * 32, "is not a SHA-256 fingerprint"),
    ],
)
def test_parse_fingerprint_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tls.parse_fingerprint(text)


def test_policy_settings(home: Path, pki: TLSFiles) -> None:
    policy = tls.make_policy(Identity(None, options={"tls_min_version": "1.3"}), "localhost")
    assert policy.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert policy.context.check_hostname and policy.context.verify_mode == ssl.CERT_REQUIRED
    assert policy.client_cert is None and policy.ca_locations == []

    ca = install(home / ".authenticate" / "ca.pem", pki.ca_pem)
    pinned = tls.make_policy(Identity(None, options={"tls_fingerprint": "AB" * 32}), "localhost")
    assert pinned.fingerprint == bytes([0xAB] * 32)
    assert not pinned.context.check_hostname and pinned.context.verify_mode == ssl.CERT_NONE
    assert tls.make_policy(Identity(None), "localhost").ca_locations == [str(ca)]


def test_not_pem_ca_file_is_an_error(home: Path) -> None:
    ca = install(home / ".authenticate" / "ca.pem", b"not a certificate\n")
    with pytest.raises(ConfigError, match=re.escape(f"{ca} holds no usable CA certificate")):
        tls.make_policy(Identity(None), "localhost")


def test_client_file_without_key_is_an_error(home: Path, pki: TLSFiles) -> None:
    cert = install(home / ".authenticate" / "private" / "smtp-starttls.pem", pki.client_cert_pem)
    expected = f"{cert} must hold the client certificate followed by its private key"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        tls.make_policy(Identity(None), "localhost")


def test_tls_is_not_imported_at_start_up() -> None:
    code = "import sys, esmtp.cli; print(sorted(m for m in ('ssl', 'esmtp.smtp.tls') if m in sys.modules))"
    out = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_smtps_port_defaults_to_465() -> None:
    def port(identity: Identity) -> int:
        return identity.endpoint()[1]

    assert port(Identity(None, hostname="mail.example.org", options={"smtps": "enabled"})) == 465
    assert port(Identity(None, hostname="mail.example.org")) == 587
    assert port(Identity(None, hostname="mail.example.org:2465", options={"smtps": "enabled"})) == 2465
