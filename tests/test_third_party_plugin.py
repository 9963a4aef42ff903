"""A third-party SASL mechanism, packaged and installed like any distribution, is discovered and used.

The distribution is built in ``tmp_path``: a ``pyproject.toml`` with an ``esmtp.plugins`` entry point and a toy XOAUTH2
module. pip installs it into a target directory that the command then finds through ``PYTHONPATH``. Its build
backend is a few lines in the distribution itself, so the test needs neither the network nor ``wheel``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from support import Runner
from test_auth import MESSAGE, AuthServer, AuthSMTP, start_auth_server

TOKEN = "ya29.toy-access-token"

PLUGIN = '''\
"""A toy XOAUTH2 mechanism (Google/Microsoft OAuth 2.0 bearer tokens): the esmtprc password is the access token."""

from esmtp import hookimpl
from esmtp.types import Credentials, SaslMechanism


class XOAuth2Client:
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def step(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            user, token = self._credentials.username, self._credentials.password
            return f"user={user}\\x01auth=Bearer {token}\\x01\\x01".encode()
        return b""  # the server sent its JSON error: an empty answer ends the exchange


@hookimpl
def esmtp_sasl_mechanisms():
    # A bearer token is replayable, so it is "plaintext": TLS (or auth_plaintext enabled) is required.
    return [SaslMechanism("XOAUTH2", priority=50, factory=XOAuth2Client, plaintext=True)]
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "toy_backend"
backend-path = ["."]

[project]
name = "esmtp-toy-xoauth2"
version = "0.1"
description = "A toy XOAUTH2 mechanism for esmtp"

[project.entry-points."esmtp.plugins"]
toy_xoauth2 = "esmtp_toy_xoauth2"
"""

# A minimal PEP 517 backend: writes a wheel holding the module, its metadata and the entry points.
BACKEND = '''\
import base64, hashlib, os, zipfile

NAME, VERSION, MODULE = "esmtp_toy_xoauth2", "0.1", "esmtp_toy_xoauth2.py"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
FILES = {
    MODULE: open(MODULE, "rb").read(),
    f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\\nName: esmtp-toy-xoauth2\\nVersion: 0.1\\n",
    f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: toy_backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    f"{DIST_INFO}/entry_points.txt": b"[esmtp.plugins]\\ntoy_xoauth2 = esmtp_toy_xoauth2\\n",
}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in FILES.items():
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{DIST_INFO}/RECORD,,")
        wheel.writestr(f"{DIST_INFO}/RECORD", "\\n".join(record) + "\\n")
    return name
'''


class XOAuth2SMTP(AuthSMTP):
    """The test server, also speaking XOAUTH2 (the ``334 <JSON>`` error form, as Gmail does)."""

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) != 2:
            await self.push("501 5.5.2 XOAUTH2 needs an initial response")
            return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if self.state.users.get(user) == token:
            return self.state.check("XOAUTH2", user, True)
        await self.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return self.state.check("XOAUTH2", user, False)


@pytest.fixture
def xoauth2_server() -> Iterator[AuthServer]:
    server = start_auth_server({"alice": TOKEN}, ("XOAUTH2",), server_class=XOAuth2SMTP)
    yield server
    server.controller.stop()


def build_distribution(where: Path) -> Path:
    source = where / "esmtp-toy-xoauth2"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "toy_backend.py").write_text(BACKEND)
    (source / "esmtp_toy_xoauth2.py").write_text(PLUGIN)
    return source


def pip_install(source: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )


def cached_plugin_names(run: Runner) -> set[str]:
    [cache] = (run.home / ".cache" / "esmtp").glob("plugins-*.json")
    return {record["name"] for record in json.loads(cache.read_text())["entry_points"]}


def test_installed_mechanism_is_discovered_and_used(run: Runner, xoauth2_server: AuthServer, tmp_path: Path) -> None:
    target = tmp_path / "site"
    target.mkdir()
    env = run.env(PYTHONPATH=str(target))
    # The toy replaces esmtp's own XOAUTH2 (sasl_xoauth2): two plugins offering one mechanism would be an error.
    run.write_config(f"disable_plugins sasl_xoauth2\nhostname {xoauth2_server.hostport}\nusername alice\n"
                     f"password {TOKEN}\nauth_plaintext enabled\n")

    def send() -> Any:
        return run("-f", "alice@example.org", "bob@example.net", input=MESSAGE, env=env)

    before = send()
    assert before.returncode == 77
    assert "offers AUTH XOAUTH2, none of which is allowed and installed" in before.stderr
    assert "toy_xoauth2" not in cached_plugin_names(run)

    pip_install(build_distribution(tmp_path), target)

    after = send()
    assert after.returncode == 0, after.stderr
    assert xoauth2_server.state.attempts == [("XOAUTH2", "alice", True)]
    assert [message.login for message in xoauth2_server.sink.messages] == ["alice"]
    assert "toy_xoauth2" in cached_plugin_names(run)  # the cache noticed the new distribution

    # Wrong token: the server's 334 JSON error gets an empty answer, then 535 → 77, nothing delivered.
    run.write_config(f"disable_plugins sasl_xoauth2\nhostname {xoauth2_server.hostport}\nusername alice\n"
                     "password expired\nauth_plaintext enabled\n")
    failed = send()
    assert failed.returncode == 77
    assert "535" in failed.stderr
    assert len(xoauth2_server.sink.messages) == 1

    # The plugin is blockable by its entry-point name, like the built-ins.
    blocked = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE,
                  env={**env, "ESMTP_DISABLE_PLUGINS": "toy_xoauth2"})
    assert blocked.returncode == 77
    assert "none of which is allowed and installed" in blocked.stderr

