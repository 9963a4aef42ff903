"""The password source registry that --pretend and --check report from (issue 11's sources register here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from esmtp import password_sources
from esmtp.config import Identity
from esmtp.password_sources import MASK, PasswordSource, password_source, register


@pytest.fixture
def registry() -> Iterator[None]:
    saved = list(password_sources._DESCRIBERS)
    yield
    password_sources._DESCRIBERS[:] = saved


def test_inline_password_is_masked_and_none_is_none() -> None:
    inline = password_source(Identity("a@x", password="hunter2", source="/rc"))
    assert (inline.kind, inline.description) == ("inline", f"inline in /rc ({MASK})")
    assert "hunter2" not in repr(inline)
    assert password_source(Identity("a@x")).kind == "none"


def test_a_registered_source_wins_and_checks_secrets_only_when_asked(registry: None) -> None:
    ran: list[bool] = []

    def check(secrets: bool) -> str:
        ran.append(secrets)
        return "exited with status 1" if secrets else ""

    @register
    def command(identity: Identity) -> PasswordSource | None:
        command = identity.options.get("password_command")
        return PasswordSource("password_command", f"password_command `{command}`", check) if command else None

    identity = Identity("a@x", password="inline-too", options={"password_command": "pass show mail"})
    source = password_source(identity)
    assert source.description == "password_command `pass show mail`"
    assert (source.check(False), source.check(True)) == ("", "exited with status 1")
    assert ran == [False, True]
    assert password_source(Identity("b@x", password="p")).kind == "inline"
