"""Every feature with every other: each delivery path against each secret source and each TLS mode.

The product of three tables in :mod:`composition_support` is run through the installed commands, against aiosmtpd
servers that verify the password (PLAIN, LOGIN) or ask the OAuth2 provider about the bearer token (XOAUTH2,
OAUTHBEARER). Each case checks what a user would: the exit codes and an empty stderr (the path's own checks), then
here that the server got exactly the letters sent, each once, with their envelope and bytes, over TLS, after exactly
the expected successful logins by the right user and mechanism and no refused one, and that no output shows a secret.

- :data:`~composition_support.PATHS`: a direct send, the warm relay (``relay_daemon auto``), the queue flush
  (``sendmail -q``), ``sendmail -bs``, ``esmtp --serverinfo --login`` and the SMTP listener ``esmtp --listen``;
- :data:`~composition_support.SOURCES`: ``password``, ``password_command``, the keyring (keyrings.alt's file
  backend), ``~/.netrc`` and OAuth2 with a refresh token;
- :data:`~composition_support.MODES`: ``starttls required`` and ``smtps enabled``, with a test CA.

Adding to the matrix is one entry:

- a path (the system service): a function ``(Case) -> Outcome`` that writes
  the configuration with :meth:`Case.write_config`, runs the commands through :meth:`Case.__call__` (or
  :meth:`Case.send`), checks their exit codes and output, and returns the letters the server should now have and
  how many connections and logins that costs; then ``DeliveryPath(name, function)`` in ``PATHS``;
- a source: a function ``(Case) -> None`` that sets ``case.identity`` (and ``case.env``, files in ``case.run.home``);
  then ``Source(name, function)`` in ``SOURCES`` (``bearer=True`` when the server must see OAuth2);
- a mode: ``Mode(name, config_lines, server_kwargs)`` in ``MODES``; one server per mode is started for the module;
- a new dimension: a table like ``MODES`` whose entries add configuration lines, one more factor in :data:`CASES` and
  one more parameter of :func:`test_composition`, with its check of the received bytes, as
  :data:`~composition_support.SIGNINGS` does: unsigned, and DKIM (an RSA and an Ed25519 signature on every message,
  each verified by OpenDKIM with the keys in a DNS server on loopback, tests/dkim_support.py; the rest of the
  message must be the bytes sent).

A combination that fails for a known reason is listed in :data:`composition_support.KNOWN_FAILURES` and runs as a
strict xfail, here and in tests/interop/test_composition_interop.py: it must keep failing until the fix lands, and
then its entry goes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from composition_support import (
    KNOWN_FAILURES,
    MODES,
    PASSWORD,
    PATHS,
    SIGNINGS,
    SOURCES,
    USER,
    Case,
    DeliveryPath,
    MatrixServer,
    Mode,
    Signing,
    Source,
    known_failures,
    start_matrix_server,
    unsigned,
    without_trace,
)
from dkim_support import DOMAIN, Dns, Key, make_key, verify
from interop_tls import TLSFiles, generate_tls_files  # (tests/interop is on sys.path: composition_support put it there)
from oauth2_support import USER as OAUTH2_USER
from oauth2_support import OAuth2Provider
from support import Runner

CASES = [
    pytest.param(path, source, mode, signing, id=f"{path.name}-{source.name}-{mode.name}-{signing.name}",
                 marks=known_failures(path, source))
    for path, source, mode, signing in itertools.product(PATHS, SOURCES, MODES, SIGNINGS)
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return generate_tls_files(tmp_path_factory.mktemp("pki") / "tls")


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuth2Provider]:
    provider = OAuth2Provider()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def servers(pki: TLSFiles, provider: OAuth2Provider) -> Iterator[dict[str, MatrixServer]]:
    """One server per mode for the whole module, started when a case first needs it."""
    started: dict[str, MatrixServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def dkim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The DKIM keys and their DNS server, made when a signing case first needs them."""
    made: dict[str, object] = {}
    yield made
    dns = made.get("dns")
    if isinstance(dns, Dns):
        dns.close()


def dkim_lines(dkim: dict[str, object], factory: pytest.TempPathFactory) -> str:
    if "keys" not in dkim:
        directory = factory.mktemp("dkim")
        keys = [make_key(directory, "rsa2026", "rsa-sha256"), make_key(directory, "ed2026", "ed25519-sha256")]
        dkim["keys"] = keys
        dkim["dns"] = Dns(directory, {f"{key.selector}._domainkey.{DOMAIN}": key.record for key in keys})
    keys = dkim["keys"]
    assert isinstance(keys, list) and all(isinstance(key, Key) for key in keys)
    return f'dkim_selector "{" ".join(key.selector for key in keys)}"\n' \
           f"dkim_key_file {','.join(str(key.path) for key in keys)}"


@pytest.mark.parametrize("path, source, mode, signing", CASES)
def test_composition(path: DeliveryPath, source: Source, mode: Mode, signing: Signing, run: Runner, pki: TLSFiles,
                     provider: OAuth2Provider, servers: dict[str, MatrixServer], dkim: dict[str, object],
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    if mode.name not in servers:
        servers[mode.name] = start_matrix_server(mode, pki, provider)
    server = servers[mode.name]
    server.reset()
    case = Case(f"{path.name}-{source.name}-{mode.name}-{signing.name}", run, server.hostport, mode.config_lines,
                pki.ca_pem, USER, PASSWORD, provider, OAUTH2_USER)
    case.trust_ca()
    source.configure(case)
    if signing.dkim:
        case.identity.append(dkim_lines(dkim, tmp_path_factory))

    outcome = path.run(case)

    received = server.sink.messages
    stored = []
    for got in received:  # the signatures on top (made when sent), then the trace field a listener added on receipt
        rest, signed = unsigned(got.data)
        stored.append((got.mail_from, got.rcpt_tos, without_trace(rest, outcome.trace_fields), signed))
    signatures = 2 if signing.dkim else 0
    assert stored == [
        (letter.sender, list(letter.recipients), letter.wire, signatures) for letter in outcome.letters
    ]
    if signing.dkim:
        dns = dkim["dns"]
        assert isinstance(dns, Dns)
        for got in received:
            assert {(r.result, r.algorithm) for r in verify(dns, got.data)} == {
                ("pass", "rsa-sha256"), ("pass", "ed25519-sha256")}
    assert all(got.tls for got in received)
    mechanism = "OAUTHBEARER" if source.bearer else "PLAIN"
    assert server.handler.attempts == [(mechanism, case.login, True)] * outcome.logins
    assert all(got.login == case.login for got in received)
    assert server.sink.connections == outcome.connections
    if case.refresh_token is not None:  # the access token came from a refresh at the token endpoint
        assert any(fields.get("refresh_token") == case.refresh_token for path_, fields in provider.requests
                   if path_ == "/token")
    outputs = "".join(result.stdout + result.stderr for result in case.results)
    for secret in case.secrets():
        assert secret not in outputs


def test_every_combination_is_a_case() -> None:
    """The matrix is the whole product: no combination is left out by accident."""
    assert len(CASES) == len(PATHS) * len(SOURCES) * len(MODES) * len(SIGNINGS) >= 100
    assert set(KNOWN_FAILURES) <= {(path.name, source.name) for path in PATHS for source in SOURCES}
