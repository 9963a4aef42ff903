"""Regression guards for start-up cost (no timing here: benchmarks/ measures time).

A process starts per message, so what a run imports is what it costs. These tests run the real command in a fresh
interpreter and look at ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import Runner, SmtpServer

HEAVY = ("asyncio", "ssl", "aiosmtplib", "spnego", "cryptography")

DRIVER = """
import json, os, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
from esmtp.cli import main
code = main()
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def run_in_process(run: Runner, tmp_path: Path, *args: str, input: bytes = b"", **env: str) -> tuple[int, set[str]]:
    """Run ``main()`` in a fresh interpreter and return its exit code and every module it imported."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *args], input=input, capture_output=True,
        env=run.env(MODULES_OUT=str(out), **env), cwd=run.home, timeout=60,
    )
    assert out.exists(), proc.stderr.decode()
    result = json.loads(out.read_text())
    return result["code"], set(result["modules"])


def test_version_loads_no_plugins(run: Runner, tmp_path: Path) -> None:
    code, modules = run_in_process(run, tmp_path, "esmtp", "--version")
    assert code == 0
    assert not {"pluggy", "typing", "email", *HEAVY} & modules


def test_mailq_loads_no_network_or_email_modules(run: Runner, tmp_path: Path) -> None:
    run_in_process(run, tmp_path, "mailq")  # the first run may scan entry points and fill the cache
    code, modules = run_in_process(run, tmp_path, "mailq")
    assert code == 0
    # Plugins are imported when a hook they implement is called: mailq needs only the queue.
    plugins = {m for m in modules if m.startswith("esmtp_plugins.")}
    allowed = ("settings", "entry", "store", "commands", "listing", "clock")
    assert plugins <= {"esmtp_plugins.queue", *(f"esmtp_plugins.queue.{m}" for m in allowed)}
    unwanted = {*HEAVY, "email.parser", "email.headerregistry", "importlib_metadata", "importlib.metadata"}
    assert not unwanted & modules, unwanted & modules


def test_plugin_registry_is_not_rescanned_when_nothing_changed(run: Runner, tmp_path: Path) -> None:
    cache = run.home / ".cache" / "esmtp"
    run_in_process(run, tmp_path, "mailq")
    [cache_file] = cache.iterdir()
    before = cache_file.stat().st_mtime_ns
    _, modules = run_in_process(run, tmp_path, "mailq")
    assert not {"importlib_metadata", "importlib.metadata"} & modules
    assert cache_file.stat().st_mtime_ns == before
    # A new distribution on the path changes its directory: the next run rescans and sees it.
    site = tmp_path / "site"
    dist = site / "extra_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[esmtp.plugins]\nextra = json\n")
    _, modules = run_in_process(run, tmp_path, "mailq", PYTHONPATH=str(site))
    assert "extra" in cache_file.read_text()


def test_direct_send_loads_no_spnego_or_cryptography(run: Runner, tmp_path: Path, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\n")
    code, modules = run_in_process(run, tmp_path, "sendmail", "x@example.net", input=b"Subject: x\n\nbody\n")
    assert code == 0
    assert "aiosmtplib" in modules  # it did talk SMTP
    assert not {"spnego", "cryptography"} & modules
    assert not {m for m in modules if m.startswith("esmtp.stdio")}  # the -bs server is imported by -bs only
    assert not {m for m in modules if m.startswith("esmtp_plugins.dkim_")}  # only the dkim hook, which returns


def test_a_signed_send_imports_no_pem_loader_or_email_parser(run: Runner, tmp_path: Path,
                                                            smtp_server: SmtpServer) -> None:
    """DKIM on the send path: cryptography's key classes, not its serialization package (7 ms of imports)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = tmp_path / "key.pem"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    run.write_config(f"hostname {smtp_server.hostport}\ndkim_selector s\ndkim_key_file {key}\n")
    message = b"From: Alice <alice@example.org>\nDate: Sat, 5 Dec 2026 01:00:00 +0000\nMessage-ID: <a@b>\n\nbody\n"
    run_in_process(run, tmp_path, "sendmail", "x@example.net", input=message)  # the first run scans the plugins
    code, modules = run_in_process(run, tmp_path, "sendmail", "x@example.net", input=message)
    assert code == 0
    assert smtp_server.sink.messages[1].data.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in modules
    assert "cryptography.hazmat.primitives.serialization" not in modules


def test_bs_session_without_mail_makes_no_smtp_connection(run: Runner, tmp_path: Path) -> None:
    run.write_config("hostname 127.0.0.1:1\n")
    code, modules = run_in_process(run, tmp_path, "sendmail", "-bs", input=b"EHLO c\r\nNOOP\r\nQUIT\r\n")
    assert code == 0
    assert "esmtp.server.dialogue" in modules
    assert not {"asyncio", "ssl", "aiosmtplib"} & modules  # the smarthost is contacted for a message, not before


def test_enqueue_imports_no_asyncio_ssl_or_aiosmtplib(run: Runner, tmp_path: Path) -> None:
    run.write_config("hostname 127.0.0.1:9\nqueue always\n")
    code, modules = run_in_process(
        run, tmp_path, "sendmail", "x@example.net", input=b"Subject: x\n\nbody\n",
        ESMTP_QUEUE_DIR=str(tmp_path / "queue"),
    )
    assert code == 0
    assert not set(HEAVY) & modules
    # Only a flush imports the delivery part of the queue package.
    queue_modules = {m for m in modules if m.startswith("esmtp_plugins.queue.")}
    allowed = ("settings", "entry", "store", "background", "clock")
    assert queue_modules <= {f"esmtp_plugins.queue.{m}" for m in allowed}, queue_modules


def test_memory_stays_bounded_for_a_large_message(run: Runner, tmp_path: Path, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\n")
    size = 50 * 1024 * 1024
    body = tmp_path / "big.eml"
    with body.open("wb") as handle:
        handle.write(b"Subject: big\n\n")
        line = b"x" * 76 + b"\n"
        for _ in range(size // len(line)):
            handle.write(line)
    # Measured from a small intermediate process: a child forked from this (large) test process would report the
    # parent's resident size as its own peak.
    probe = (
        "import resource, subprocess, sys\n"
        "with open(sys.argv[2], 'rb') as stdin:\n"
        "    code = subprocess.run([sys.argv[1], 'x@example.net'], stdin=stdin).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", probe, str(Path(sys.executable).parent / "sendmail"), str(body)],
                          capture_output=True, env=run.env(), timeout=120)
    code, maxrss_kb = (int(field) for field in proc.stdout.split())
    assert code == 0, proc.stderr.decode()
    peak_mb = maxrss_kb / 1024
    assert peak_mb < 50, f"peak RSS {peak_mb:.1f} MB for a 50 MB message"
    assert len(smtp_server.sink.messages[0].data) > size


def test_password_send_loads_no_oauth2_http_or_keyring(run: Runner, tmp_path: Path, auth_server: SmtpServer) -> None:
    """Secret sources cost nothing when the configuration holds the password: no urllib, http or keyring."""
    run.write_config(f"hostname {auth_server.hostport}\nusername alice\npassword s3cret\nauth_plaintext enabled\n")
    run_in_process(run, tmp_path, "sendmail", "x@example.net", input=b"Subject: x\n\nbody\n")  # fills the index
    code, modules = run_in_process(run, tmp_path, "sendmail", "x@example.net", input=b"Subject: x\n\nbody\n")
    assert code == 0
    assert auth_server.sink.auths[-1] == ("PLAIN", "alice")
    unwanted = {"urllib.request", "http.client", "http.server", "keyring", "netrc",
                *(f"esmtp_plugins.{name}" for name in ("oauth2", "oauth2_tokens", "oauth2_http", "oauth2_store",
                                                       "password_command", "password_keyring", "password_netrc"))}
    assert not unwanted & modules, unwanted & modules
    # (urllib.parse is aiosmtplib's own import; nothing that speaks HTTP is loaded)
    assert not {m for m in modules if m.startswith("http") or m.startswith("urllib.re")}
