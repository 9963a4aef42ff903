"""DKIM signing (the built-in plugin 'dkim'), verified by a verifier that is not esmtp's: OpenDKIM, with the public
keys in a DNS server on loopback (tests/dkim_support.py). Every message goes through the installed
``.venv/bin/sendmail`` (or ``esmtp``) to a real SMTP server that keeps the bytes it received, and those bytes are
what OpenDKIM checks. The canonicalization is also checked against dkimpy's, as an independent reference, on
random header and body shapes (hypothesis).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dkim_support import DOMAIN, Dns, Key, make_key, verify
from esmtp_plugins.dkim_canon import body_hash, header_relaxed, header_simple
from esmtp_plugins.dkim_keys import parse_key
from esmtp_plugins.dkim_settings import settings_for
from esmtp_plugins.dkim_sign import body_chunks
from hypothesis import given
from hypothesis import strategies as st
from relay_support import start_relay, stop_relays
from support import Runner, SmtpServer, free_port, wait_for_queue_runner

from esmtp.config.model import Config, Identity
from esmtp.errors import ConfigError
from esmtp.message import read_message

# ---- keys and DNS, once per session ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("dkim-keys")
    return {
        "rsa": make_key(directory, "rsa2026", "rsa-sha256"),
        "pkcs1": make_key(directory, "pkcs1", "rsa-sha256", pkcs1=True),
        "ed": make_key(directory, "ed2026", "ed25519-sha256"),
    }


@pytest.fixture(scope="session")
def dns(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Key]) -> Iterator[Dns]:
    server = Dns(tmp_path_factory.mktemp("dkim-dns"),
                 {f"{key.selector}._domainkey.{DOMAIN}": key.record for key in keys.values()})
    yield server
    server.close()


def dkim_lines(*use: Key, extra: str = "") -> str:
    """Two keys: the selectors in quotes separated by a space, the files separated by a comma (both are lists)."""
    selectors = " ".join(key.selector for key in use)
    files = ",".join(str(key.path) for key in use)
    return f'  dkim_selector "{selectors}"\n  dkim_key_file {files}\n{extra}'


def configure(run: Runner, port: int, *use: Key, extra: str = "", top: str = "") -> None:
    run.write_config(f"{top}identity alice@{DOMAIN}\n  hostname 127.0.0.1:{port}\n  default\n"
                     + dkim_lines(*use, extra=extra))


def send(run: Runner, server: SmtpServer, message: bytes, *args: str) -> bytes:
    result = run(*(args or ("bob@example.net",)), input=message)
    assert result.returncode == 0, result.stderr
    assert len(server.sink.messages) == 1
    return server.sink.messages[0].data


def results(dns: Dns, data: bytes) -> set[tuple[str, str, str]]:
    return {(r.result, r.algorithm, r.selector) for r in verify(dns, data)}


def tags(data: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature field of the received bytes."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    fields = re.findall(r"^DKIM-Signature:(.*?)(?=\r\n\S|\Z)", head, re.S | re.M | re.I)
    return [{k.strip(): "".join(v.split()) for k, _, v in (p.partition("=") for p in f.split(";"))} for f in fields]


BOTH = ("pass", "rsa-sha256", "rsa2026"), ("pass", "ed25519-sha256", "ed2026")

# 8-bit and UTF-8, lines that start with a dot (one alone, as the end of DATA would be), trailing white space, tabs,
# runs of spaces, empty lines at the end, a lone CR: everything the wire and the canonicalizations touch. (White
# space right after a header's colon is in test_simple_keeps_the_space_after_the_colon: OpenDKIM's test mode reads
# header values as a milter does, without it.)
AWKWARD = (
    "From: Alice Äpfel <alice@example.org>\nTo: Bob <bob@example.net>\nCc: carol@example.net\n"
    "Subject: Grüße  \t aus   Köln \nX-Folded: first\n  second\t line\n\n"
    ".\n..two dots\n.one dot\nUTF-8: naïve café ✓\ntrailing spaces   \n\ttab\tin  line \t\nlone\rCR\n\n\n"
).encode() + b"latin-1: caf\xe9\n\n\n"


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"])
def test_rsa_and_ed25519_pass_opendkim_in_every_canonicalization(
    run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns, canon: str
) -> None:
    configure(run, smtp_server.port, keys["rsa"], keys["ed"], extra=f"  dkim_canonicalization {canon}\n")
    data = send(run, smtp_server, AWKWARD)
    assert results(dns, data) == set(BOTH)
    assert [t["c"] for t in tags(data)] == [canon, canon]
    assert b"\r\n..two dots\r\n" in data  # the server un-stuffed what went out as "...two dots"


def test_simple_keeps_the_space_after_the_colon(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                                dns: Dns) -> None:
    """``simple`` signs a header as it is, white space after the colon included. OpenDKIM's test mode hands header
    values over as a milter without SMFIP_HDR_LEADSPC does, that space removed, so it cannot judge this one: dkimpy
    (another verifier than esmtp's; RSA: its Ed25519 needs PyNaCl) does, and OpenDKIM must agree for ``relaxed``."""
    import dkim

    message = b"From: alice@example.org\nSubject:   three  spaces\t\nTo:bob@example.net\n\nbody\n"
    records = {f"{key.selector}._domainkey.{DOMAIN}.".encode(): key.record.encode() for key in keys.values()}
    for canon in ("simple/simple", "relaxed/relaxed"):
        smtp_server.sink.clear()
        configure(run, smtp_server.port, keys["rsa"], extra=f"  dkim_canonicalization {canon}\n")
        data = send(run, smtp_server, message)
        assert b"\r\nSubject:   three  spaces\t\r\n" in data
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: records[name])
        squeezed = data.replace(b"three  spaces", b"three spaces")  # the same message to relaxed, not to simple
        assert dkim.verify(squeezed, dnsfunc=lambda name, timeout=5: records[name]) == (canon == "relaxed/relaxed")
        if canon == "relaxed/relaxed":
            assert results(dns, data) == {("pass", "rsa-sha256", "rsa2026")}


def test_crlf_input_and_a_pkcs1_key(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns) -> None:
    configure(run, smtp_server.port, keys["pkcs1"])
    data = send(run, smtp_server, AWKWARD.replace(b"\n", b"\r\n"))
    assert results(dns, data) == {("pass", "rsa-sha256", "pkcs1")}


def test_a_tampered_message_fails(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns) -> None:
    """The check can fail: one byte of the body, or of a signed header, changed after signing."""
    configure(run, smtp_server.port, keys["rsa"], keys["ed"])
    data = send(run, smtp_server, AWKWARD)
    assert results(dns, data) == set(BOTH)
    body = data.replace("naïve".encode(), b"naive")
    assert {r[0] for r in results(dns, body)} == {"fail"}
    subject = data.replace(b"Subject: ", b"Subject: [spam] ")
    assert {r[0] for r in results(dns, subject)} == {"fail"}
    # An added From (oversigned) breaks it too; an unsigned field added later does not.
    assert {r[0] for r in results(dns, data.replace(b"\r\n\r\n", b"\r\nFrom: mallory@example.org\r\n\r\n", 1))} \
        == {"fail"}
    assert results(dns, data.replace(b"\r\n\r\n", b"\r\nX-Added-Later: yes\r\n\r\n", 1)) == set(BOTH)


def test_a_20_mb_attachment(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns) -> None:
    configure(run, smtp_server.port, keys["rsa"], keys["ed"])
    blob = base64.encodebytes(os.urandom(15 * 1024 * 1024))  # 20 MB once base64-encoded, 76-character lines
    message = (b"From: alice@example.org\nTo: bob@example.net\nSubject: big\nMIME-Version: 1.0\n"
               b"Content-Type: multipart/mixed; boundary=XYZ\n\n--XYZ\nContent-Type: text/plain\n\nsee attached\n"
               b"--XYZ\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
               + blob + b"--XYZ--\n")
    assert len(message) > 20 * 1024 * 1024
    data = send(run, smtp_server, message)
    assert results(dns, data) == set(BOTH)


def test_t_with_bcc_removes_bcc_before_signing(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                               dns: Dns) -> None:
    configure(run, smtp_server.port, keys["rsa"])
    message = b"From: alice@example.org\nTo: bob@example.net\nBcc: secret@example.net\nSubject: -t\n\nhi\n"
    data = send(run, smtp_server, message, "-t")
    assert smtp_server.sink.messages[0].rcpt_tos == ["bob@example.net", "secret@example.net"]
    assert b"secret" not in data and b"bcc" not in data.lower()
    assert results(dns, data) == {("pass", "rsa-sha256", "rsa2026")}


def test_signing_is_last_and_covers_every_fixup(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                                dns: Dns) -> None:
    """Date, From and Message-ID added by the built-in fixups are signed; From is listed once more than it occurs."""
    configure(run, smtp_server.port, keys["ed"])
    data = send(run, smtp_server, b"Subject: bare\n\nno From, Date or Message-ID\n", "-f", f"alice@{DOMAIN}",
                "bob@example.net")
    assert results(dns, data) == {("pass", "ed25519-sha256", "ed2026")}
    (found,) = tags(data)
    assert found["h"].split(":") == ["from", "from", "subject", "date", "message-id"]
    assert found["d"] == DOMAIN and found["a"] == "ed25519-sha256" and found["v"] == "1"
    assert data.startswith(b"DKIM-Signature: ")


def test_a_third_party_header_plugin_runs_before_signing(smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site plugin that adds a field as late as it can (a ``trylast`` fixup with a high PLUGIN_ORDER, and one on
    the signing hook itself) still runs before the signature is made: the fields are signed and verify."""
    from esmtp import hookimpl
    from esmtp.config.parser import parse_config
    from esmtp.pipeline import submit
    from esmtp.plugins import Hooks, make_plugin_manager, resolve_config
    from esmtp.trace import Trace
    from esmtp.types import Envelope, RunContext

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    class Site:
        PLUGIN_ORDER = 5000

        @hookimpl(trylast=True)
        def esmtp_fixup_headers(self, message: object) -> None:
            message.add("X-Site", "laptop")  # type: ignore[attr-defined]

        @hookimpl
        def esmtp_sign_message(self, message: object) -> None:
            message.replace("X-Late", "added on the signing hook")  # type: ignore[attr-defined]

    config = parse_config(f"identity alice@{DOMAIN}\n  hostname 127.0.0.1:{smtp_server.port}\n  default\n"
                          + dkim_lines(keys["ed"], extra="  dkim_headers from:subject:x-site:x-late\n"), "rc")
    hooks = Hooks(make_plugin_manager(config))
    resolve_config(config, hooks)
    hooks.pm.register(Site(), name="site")
    envelope = Envelope(sender=f"alice@{DOMAIN}", recipients=["bob@example.net"], identity=config.default)
    with read_message(io.BytesIO(b"From: alice@example.org\nSubject: site\n\nbody\n")) as message:
        submit(envelope, message, RunContext(config, hooks, Trace()))
    data = smtp_server.sink.messages[0].data
    assert b"\r\nX-Site: laptop\r\n" in data and b"\r\nX-Late: added on the signing hook\r\n" in data
    assert tags(data)[0]["h"] == "from:from:subject:x-site:x-late"
    assert results(dns, data) == {("pass", "ed25519-sha256", "ed2026")}


# ---- every path ------------------------------------------------------------------------------------------------


def test_the_warm_relay_signs(tmp_path: Path, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns) -> None:
    home = tmp_path / "relay-home"
    home.mkdir()
    run = Runner(home, {"ESMTP_RELAY_DAEMON": "1"})
    run.runtime.mkdir(mode=0o700)
    configure(run, smtp_server.port, keys["rsa"], keys["ed"])
    start_relay(run)
    try:
        for index in range(2):  # the resident process reads the keys once; the second message uses them again
            result = run("bob@example.net", input=AWKWARD + f"message {index}\n".encode())
            assert result.returncode == 0, result.stderr
    finally:
        stop_relays(run.runtime)
    assert len(smtp_server.sink.messages) == 2
    for got in smtp_server.sink.messages:
        assert results(dns, got.data) == set(BOTH)


def test_bs_signs_each_message(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns) -> None:
    configure(run, smtp_server.port, keys["rsa"])
    body = AWKWARD.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")  # as an SMTP client sends it
    dialogue = (b"EHLO php.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n" + body
                + b".\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"
                + b"From: alice@example.org\r\nSubject: second\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
    result = run("-bs", input=dialogue)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\r\n250 ") >= 4, result.stdout
    assert len(smtp_server.sink.messages) == 2
    for got in smtp_server.sink.messages:
        assert results(dns, got.data) == {("pass", "rsa-sha256", "rsa2026")}


def queue_dir(run: Runner) -> Path:
    return run.home / ".local" / "state" / "esmtp" / "queue"


@pytest.mark.parametrize("mode", ["always", "fallback"])
def test_queued_mail_is_signed_when_it_is_sent(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                               dns: Dns, mode: str) -> None:
    """``always``: stored unsigned, signed by the flush. ``fallback``: the failed direct try signed it and the
    stored copy keeps that signature; the flush replaces it (one signature per key, with the flush's time)."""
    dead = free_port()
    configure(run, dead, keys["rsa"], keys["ed"], top=f"queue {mode}\n")
    result = run("bob@example.net", input=AWKWARD)
    assert result.returncode == 0, result.stderr
    wait_for_queue_runner(queue_dir(run))
    (stored,) = queue_dir(run).glob("*.eml")
    assert (b"DKIM-Signature" in stored.read_bytes()) == (mode == "fallback")
    time.sleep(1.1)
    started = int(time.time())
    configure(run, smtp_server.port, keys["rsa"], keys["ed"], top=f"queue {mode}\n")
    result = run("-q")
    assert result.returncode == 0, result.stderr
    (got,) = smtp_server.sink.messages
    assert results(dns, got.data) == set(BOTH)
    signatures = tags(got.data)
    assert sorted(t["s"] for t in signatures) == ["ed2026", "rsa2026"]
    assert all(int(t["t"]) >= started for t in signatures)


# ---- the From domain -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["sign", "skip"])
def test_a_from_domain_that_is_not_dkim_domain(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                               dns: Dns, policy: str) -> None:
    configure(run, smtp_server.port, keys["rsa"], extra=f"  dkim_domain {DOMAIN}\n  dkim_from_mismatch {policy}\n")
    message = b"From: someone@elsewhere.example\nTo: bob@example.net\nSubject: x\n\nbody\n"
    result = run("-v", "-f", f"alice@{DOMAIN}", "bob@example.net", input=message)
    assert result.returncode == 0, result.stderr
    data = smtp_server.sink.messages[0].data
    assert "elsewhere.example is not example.org" in result.stderr
    if policy == "skip":
        assert b"DKIM-Signature" not in data and "not signed" in result.stderr
    else:
        assert results(dns, data) == {("pass", "rsa-sha256", "rsa2026")}
        assert "warning" in result.stderr


def test_a_subdomain_from_aligns_and_the_default_domain_is_the_from_domain(
    run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], tmp_path: Path
) -> None:
    configure(run, smtp_server.port, keys["rsa"], extra=f"  dkim_domain {DOMAIN}\n")
    result = run("-v", "bob@example.net", input=b"From: cron@host.example.org\nSubject: x\n\nbody\n")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert tags(smtp_server.sink.messages[0].data)[0]["d"] == DOMAIN
    configure(run, smtp_server.port, keys["rsa"])
    result = run("bob@example.net", input="From: a@Bücher.Example\nSubject: x\n\nbody\n".encode())
    assert result.returncode == 0, result.stderr
    assert tags(smtp_server.sink.messages[1].data)[0]["d"] == "xn--bcher-kva.example"


# ---- refusals: exit 78, nothing sent ---------------------------------------------------------------------------


def test_a_key_others_may_read_is_refused(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key],
                                          tmp_path: Path) -> None:
    exposed = tmp_path / "exposed.pem"
    exposed.write_bytes(keys["rsa"].path.read_bytes())
    exposed.chmod(0o640)
    run.write_config(f"identity alice@{DOMAIN}\n  hostname 127.0.0.1:{smtp_server.port}\n  default\n"
                     f"  dkim_selector s\n  dkim_key_file {exposed}\n")
    result = run("bob@example.net", input=b"From: alice@example.org\nSubject: x\n\nbody\n")
    assert result.returncode == 78
    assert str(exposed) in result.stderr and "chmod 600" in result.stderr and ".esmtprc:5" in result.stderr
    assert smtp_server.sink.messages == []
    check = run("--check", program="esmtp")
    assert check.returncode == 78 and str(exposed) in check.stderr


def test_a_key_behind_your_symbolic_link_is_used_and_its_target_checked(
    run: Runner, smtp_server: SmtpServer, keys: dict[str, Key], dns: Dns, tmp_path: Path
) -> None:
    """As for ~/.esmtprc: your symbolic link to a private key works (dotfile managers make them); the file it points
    to gets the checks."""
    target = tmp_path / "keys" / "real.pem"
    target.parent.mkdir()
    target.write_bytes(keys["rsa"].path.read_bytes())
    target.chmod(0o600)
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    run.write_config(f"identity alice@{DOMAIN}\n  hostname 127.0.0.1:{smtp_server.port}\n  default\n"
                     f"  dkim_selector rsa2026\n  dkim_key_file {link}\n")
    data = send(run, smtp_server, b"From: alice@example.org\nSubject: x\n\nbody\n")
    assert results(dns, data) == {("pass", "rsa-sha256", "rsa2026")}
    target.chmod(0o644)
    result = run("bob@example.net", input=b"From: alice@example.org\nSubject: x\n\nbody\n")
    assert result.returncode == 78 and "chmod 600" in result.stderr and "private key" in result.stderr
    assert len(smtp_server.sink.messages) == 1


def test_a_missing_key_is_refused(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    run.write_config(f"identity alice@{DOMAIN}\n  hostname 127.0.0.1:{smtp_server.port}\n  default\n"
                     f"  dkim_selector s\n  dkim_key_file {missing}\n")
    result = run("bob@example.net", input=b"From: alice@example.org\nSubject: x\n\nbody\n")
    assert result.returncode == 78
    assert f"{missing} does not exist" in result.stderr and "--dkim-keygen" in result.stderr
    assert smtp_server.sink.messages == []


@pytest.mark.parametrize(("lines", "error"), [
    ("  dkim_selector s\n", "'dkim_selector' needs 'dkim_key_file' too"),
    ("  dkim_selector 's;x=1'\n  dkim_key_file /k\n", "is not a DNS label"),
    ("  dkim_selector s\n  dkim_key_file /k\n  dkim_algorithm rsa-sha1\n", "not 'rsa-sha1'"),
    ("  dkim_selector s\n  dkim_key_file /k\n  dkim_headers to:subject\n", "must include From"),
    ("  dkim_selector s\n  dkim_key_file /k\n  dkim_canonicalization loose\n", "each simple or relaxed"),
    ("  dkim_selector 'a b'\n  dkim_key_file /k\n", "give one of each per signature"),
    ("  dkim_selector s\n  dkim_key_file /k\n  dkim_domain 'a;b'\n", "is not a domain name"),
])
def test_settings_a_send_cannot_use_are_configuration_errors(lines: str, error: str) -> None:
    from esmtp.config.parser import parse_config
    from esmtp.plugins import Hooks, make_plugin_manager, resolve_config

    config = parse_config(f"identity alice@{DOMAIN}\n{lines}", "rc")
    resolve_config(config, Hooks(make_plugin_manager(config)))
    with pytest.raises(ConfigError, match=re.escape(error)) as raised:
        settings_for(config.identities[-1], config)
    assert str(raised.value).startswith("rc:")


def test_key_files_that_are_not_dkim_keys() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ConfigError, match="neither an RSA nor an Ed25519"):
        parse_key(ec_key, "ec.pem")
    encrypted = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"))
    with pytest.raises(ConfigError, match="is encrypted"):
        parse_key(encrypted, "enc.pem")
    with pytest.raises(ConfigError, match="not a PEM file"):
        parse_key(b"hello", "x.pem")
    damaged = bytearray(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    damaged[-5] ^= 1  # a CRT coefficient off by a bit
    pem = b"-----BEGIN RSA PRIVATE KEY-----\n" + base64.encodebytes(bytes(damaged)) + b"-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(ConfigError, match="do not fit together"):
        parse_key(pem, "damaged.pem")


# ---- --pretend, --check, --dkim-keygen --------------------------------------------------------------------------


def test_pretend_shows_the_signature(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key]) -> None:
    configure(run, smtp_server.port, keys["rsa"])
    result = run("--pretend", "bob@example.net", input=b"From: alice@example.org\nSubject: x\n\nbody\n")
    assert result.returncode == 0, result.stderr
    shown = "\n  DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\n  \ts=rsa2026; t="
    assert shown in result.stdout
    assert "nothing was sent" in result.stdout and smtp_server.sink.messages == []


def test_check_names_the_record_to_publish(run: Runner, smtp_server: SmtpServer, keys: dict[str, Key]) -> None:
    configure(run, smtp_server.port, keys["rsa"], keys["ed"])
    result = run("--check", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert f"publish TXT at rsa2026._domainkey.{DOMAIN}" in result.stdout
    assert f"publish TXT at ed2026._domainkey.{DOMAIN}" in result.stdout
    assert "rsa-sha256 (2048-bit key" in result.stdout and keys["rsa"].record in result.stdout
    assert keys["ed"].record in result.stdout


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_keygen_writes_a_private_key_and_prints_its_record(run: Runner, smtp_server: SmtpServer, tmp_path: Path,
                                                           algorithm: str) -> None:
    path = tmp_path / "keys" / "new.pem"
    args = ("--dkim-keygen", "--selector", "fresh", "--domain", DOMAIN, "--algorithm", algorithm, "--output", str(path))
    result = run(*args, program="esmtp")
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert f"fresh._domainkey.{DOMAIN}" in result.stdout and f"dkim_key_file {path}" in result.stdout
    record = re.search(r"^  (v=DKIM1; k=\S+; p=\S+)$", result.stdout, re.M)
    assert record is not None
    again = run(*args, program="esmtp")
    assert again.returncode == 73 and "exists" in again.stderr
    # The key works: a message signed with it passes OpenDKIM with the printed record in DNS.
    dns = Dns(tmp_path, {f"fresh._domainkey.{DOMAIN}": record.group(1)})
    try:
        configure(run, smtp_server.port, Key("fresh", algorithm, path, record.group(1)))
        data = send(run, smtp_server, b"From: alice@example.org\nSubject: new key\n\nbody\n")
        assert results(dns, data) == {("pass", algorithm, "fresh")}
    finally:
        dns.close()


def test_keygen_needs_no_configuration_and_checks_its_arguments(run: Runner) -> None:
    result = run("--dkim-keygen", "--selector", "s", program="esmtp")
    assert result.returncode == 64 and "--domain" in result.stderr
    result = run("--dkim-keygen", "--selector", "s", "--domain", "example.org", "--algorithm", "rsa-sha1",
                 program="esmtp")
    assert result.returncode == 64 and "rsa-sha1" in result.stderr
    result = run("--selector", "s", "bob@example.net", program="esmtp")
    assert result.returncode == 64 and "--selector goes with --dkim-keygen" in result.stderr
    result = run("--dkim-keygen", "--selector", "s", "--domain", "example.org", program="esmtp")
    assert result.returncode == 0, result.stderr  # no ~/.esmtprc: the key is made anyway, in the default place
    assert (run.home / ".config" / "esmtp" / "dkim" / "example.org.s.pem").stat().st_mode & 0o777 == 0o600


# ---- canonicalization against an independent reference (dkimpy) --------------------------------------------------

_pieces = st.sampled_from([b"a", b"Z9", b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b".", b"\xc3\xa9", b"\xff", b":"])
_body = st.lists(_pieces, max_size=40).map(b"".join)


def _wire(raw: bytes) -> bytes:
    """What a server holds for ``raw``: CRLF line endings, a final CRLF added to a last line without one."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


@given(_body, st.lists(st.integers(min_value=0, max_value=80), max_size=6), st.sampled_from(["simple", "relaxed"]))
def test_body_hash_matches_dkimpy_however_the_body_is_chunked(raw: bytes, cuts: list[int], canon: str) -> None:
    from dkim.canonicalization import Relaxed, Simple

    expected = hashlib.sha256((Relaxed if canon == "relaxed" else Simple).canonicalize_body(_wire(raw))).digest()
    points = sorted({min(cut, len(raw)) for cut in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    from esmtp.smtp.wire import crlf_lines

    assert body_hash(crlf_lines(chunks), canon) == expected


_name = st.text(st.sampled_from("abcXYZ-_09"), min_size=1, max_size=12)
_value = st.lists(st.sampled_from([b"v", b"\xc3\xbc", b" ", b"\t", b"  ", b"\r\n ", b"\r\n\t", b";", b"="]),
                  max_size=20).map(b"".join)


@given(_name, st.sampled_from([b"", b" ", b"\t "]), _value)
def test_header_canonicalization_matches_dkimpy(name: str, before_colon: bytes, value: bytes) -> None:
    from dkim.canonicalization import Relaxed, Simple

    field = name.encode() + before_colon + b":" + value + b"\r\n"
    ((rname, rvalue),) = Relaxed.canonicalize_headers([(name.encode() + before_colon, value + b"\r\n")])
    assert header_relaxed(field) == rname + b":" + rvalue
    ((sname, svalue),) = Simple.canonicalize_headers([(name.encode() + before_colon, value + b"\r\n")])
    assert header_simple(field) == sname + b":" + svalue


@given(st.lists(st.sampled_from([b"Subject: x\n", b"X-A: 1\r\n", b"To: b\n\tc\n"]), max_size=4), _body,
       st.sampled_from([b"\n", b"\r\n"]))
def test_the_body_streamed_for_the_hash_is_the_body_sent(fields: list[bytes], body: bytes, newline: bytes) -> None:
    """body_chunks skips exactly the header block and its blank line, whatever its line endings."""
    raw = b"".join(fields) + newline + body if fields else body
    with read_message(io.BytesIO(raw)) as message:
        sent = b"".join(message.chunks())
        head = message.header_bytes()
        expected = sent[len(head) + len(message.newline):] if head else sent
        from esmtp.smtp.wire import crlf_lines

        assert b"".join(body_chunks(message)) == b"".join(crlf_lines([expected]))


def test_settings_fall_back_to_the_global_section(keys: dict[str, Key]) -> None:
    glob = Identity(address=None, options={"dkim_selector": "g", "dkim_key_file": str(keys["rsa"].path)})
    mine = Identity(address=f"a@{DOMAIN}", options={"dkim_canonicalization": "simple"})
    config = Config(path="rc", identities=[glob, mine], default=mine)
    settings = settings_for(mine, config)
    assert settings is not None
    assert [k.selector for k in settings.keys] == ["g"]
    assert (settings.header_canon, settings.body_canon) == ("simple", "simple")  # c=simple is simple/simple
    assert settings_for(Identity(address="x@y.example"), Config(path="rc", identities=[Identity(None)],
                                                                default=Identity(None))) is None
