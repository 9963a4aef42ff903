"""Where a password comes from, as --pretend and --check report it: the core's inline answer and the
``esmtp_password_source`` hook that secret-source plugins (issue 11) implement."""

from __future__ import annotations

from pathlib import Path

import pytest

from esmtp import hookimpl
from esmtp.config.model import Config, Identity
from esmtp.password_sources import MASK, PasswordSource, password_source
from esmtp.plugins import Hooks, make_plugin_manager


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_inline_password_is_masked_and_none_is_none() -> None:
    inline = password_source(Identity("a@x", password="hunter2", source="/rc"))
    assert (inline.kind, inline.description) == ("inline", f"inline in /rc ({MASK})")
    assert "hunter2" not in repr(inline)
    assert password_source(Identity("a@x")).kind == "none"


class CommandSource:
    """A plugin like issue 11's password_command: it claims identities with the keyword, checks only with secrets."""

    def __init__(self) -> None:
        self.ran: list[bool] = []

    def check(self, secrets: bool) -> str:
        self.ran.append(secrets)
        return "exited with status 1" if secrets else ""

    @hookimpl
    def esmtp_password_source(self, identity: Identity) -> PasswordSource | None:
        command = identity.options.get("password_command")
        return PasswordSource("password_command", f"password_command `{command}`", self.check) if command else None


def test_a_plugin_source_wins_and_checks_secrets_only_when_asked() -> None:
    identity = Identity("a@x", password="inline-too", options={"password_command": "pass show mail"})
    config = Config(path="rc", identities=[identity], default=identity)
    pm = make_plugin_manager(config)
    plugin = CommandSource()
    pm.register(plugin, name="command-source")
    hooks = Hooks(pm)
    source = password_source(identity, hooks)
    assert source.description == "password_command `pass show mail`"
    assert (source.check(False), source.check(True)) == ("", "exited with status 1")
    assert plugin.ran == [False, True]
    assert password_source(Identity("b@x", password="p"), hooks).kind == "inline"
