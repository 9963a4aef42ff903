"""--serverinfo against a real Postfix: STARTTLS and implicit TLS with the test CA, and --login."""

from __future__ import annotations

import re
from typing import Any

import pytest
from postfix_server import PostfixServer
from test_tls_interop import trust

pytestmark = pytest.mark.interop


def serverinfo(run: Any, postfix: PostfixServer, port: int, *lines: str, login: bool = False) -> Any:
    config = [f"hostname {postfix.hostname}:{port}", *lines,
              f"username {postfix.user}", f'password "{postfix.password}"']
    run.write_config("\n".join(config) + "\n")
    return run("--serverinfo", *(("--login",) if login else ()), program="esmtp")


def assert_tls_report(out: str, postfix: PostfixServer) -> None:
    assert re.search(r"^greeting:    220 interop\.localhost ESMTP esmtp-interop", out, re.M), out
    assert re.search(r"^TLS:         TLSv1\.[23], \S+ \(\d+ bits\), certificate verified$", out, re.M), out
    assert re.search(r"^  SIZE \d+ \(messages up to [\d.]+ MiB\)$", out, re.M), out
    # The chain: the server certificate, then the test CA; each with its names, validity and pin.
    assert "certificate 1:" in out and "certificate 2:" in out
    assert re.search(r"^  names:       .*DNS:localhost", out, re.M)
    assert re.search(r"^  valid:       \S+ \S+ to \S+ \S+ UTC \(\d+ days left\)$", out, re.M)
    assert re.search(r"^  fingerprint: tls_fingerprint SHA256(:[0-9A-F]{2}){32}$", out, re.M)
    assert postfix.password not in out


def test_serverinfo_over_starttls(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result = serverinfo(run, postfix, postfix.ports.submission, "starttls required")
    assert result.returncode == 0, result.stderr
    assert_tls_report(result.stdout, postfix)
    assert re.search(r"^before STARTTLS: .*STARTTLS", result.stdout, re.M)
    assert re.search(r"^AUTH:        offered: .*PLAIN", result.stdout, re.M)  # offered only inside TLS
    assert "a send would use" in result.stdout
    assert postfix.messages() == []


def test_serverinfo_over_implicit_tls_with_login(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    result = serverinfo(run, postfix, postfix.ports.smtps, "smtps enabled", login=True)
    assert result.returncode == 0, result.stderr
    assert_tls_report(result.stdout, postfix)
    assert "before STARTTLS" not in result.stdout
    assert re.search(rf"^login:       authenticated as {postfix.user} with \S+$", result.stdout, re.M)
    assert postfix.messages() == []


def test_serverinfo_fingerprint_is_what_tls_fingerprint_accepts(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    trust(run, postfix)
    first = serverinfo(run, postfix, postfix.ports.smtps, "smtps enabled")
    pin = re.search(r"tls_fingerprint (SHA256\S+)", first.stdout)
    assert pin is not None, first.stdout
    # Pinned, without the CA: the printed line is the configuration line that works.
    (run.home / ".authenticate" / "ca.pem").unlink()
    second = serverinfo(run, postfix, postfix.ports.smtps, "smtps enabled", f"tls_fingerprint {pin.group(1)}")
    assert second.returncode == 0, second.stderr
    assert "certificate pinned by tls_fingerprint" in second.stdout


def test_serverinfo_untrusted_certificate_fails_as_a_send(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    result = serverinfo(run, postfix, postfix.ports.rogue, "starttls required")
    assert result.returncode == 69
    assert "issued by an untrusted CA" in result.stderr
