"""Fixtures for the interop tests: a real Postfix + Cyrus SASL + TLS server on loopback, and a second Postfix whose
SASL is Dovecot with its oauth2 passdb (``oauth2_postfix``), for XOAUTH2 and OAUTHBEARER.

``postfix`` (session scope) starts one :class:`postfix_server.PostfixServer` for the whole run and stops it at
the end. Without root or the Debian packages (``.ci/install-interop-deps.sh``) the tests that use it are
skipped, except under ``CI=true``, where a skip would hide a broken CI setup and so they fail instead.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TypeVar

import pytest

# tests/ is not a package: make the fixture's modules importable from here and from the test files.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dovecot_server import DovecotPostfixServer, dovecot_unavailable_reason
from oauth2_support import OAuth2Provider
from postfix_server import (
    CI_FAIL_NOTE,
    PostfixServer,
    must_fail_instead_of_skip,
    runtime_directory,
    unavailable_reason,
)


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under ``CI=true`` (never returns)."""
    if must_fail_instead_of_skip(os.environ):
        pytest.fail(f"interop server unavailable: {reason} ({CI_FAIL_NOTE})", pytrace=False)
    pytest.skip(f"interop server unavailable: {reason}")


@pytest.fixture(scope="session")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServer]:
    """A running Postfix with every listener ready; see :class:`postfix_server.PostfixServer` for the API."""
    reason = unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    # Postfix runs from a world-traversable temp dir; at the end it moves into pytest's tmp dir, whose
    # retention policy then cleans it up (pytest's own dirs are 0700: postfix/nobody cannot reach them).
    yield from _running(PostfixServer(runtime_directory()), tmp_path_factory, "postfix")


Server = TypeVar("Server", bound=PostfixServer)


def _running(server: Server, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Server]:
    """Start ``server``, yield it, stop it (also on SIGTERM) and keep its directory in pytest's tmp dir."""
    previous = _interrupt_on_sigterm()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        server.move_to(tmp_path_factory.mktemp(name, numbered=True) / "server")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_on_sigterm() -> signal.Handlers | None:
    """Make SIGTERM (CI timeouts, ``kill``) unwind like Ctrl-C, so the fixture still stops Postfix.

    Only when nobody else handles SIGTERM; returns the handler to restore, or None if unchanged.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    return signal.SIG_DFL


@pytest.fixture(scope="session")
def oauth2_postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotPostfixServer]:
    """Postfix + Dovecot SASL whose oauth2 passdb asks the loopback provider (``oauth2_postfix.provider``)."""
    reason = dovecot_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    provider = OAuth2Provider()
    provider.start()
    try:
        server = DovecotPostfixServer(runtime_directory("esmtp-interop-dovecot-"), provider)
        yield from _running(server, tmp_path_factory, "dovecot")
    finally:
        provider.stop()


@pytest.fixture
def clean_postfix(postfix: PostfixServer) -> PostfixServer:
    """The session's ``postfix`` with the messages delivered for earlier tests removed."""
    postfix.clear()
    return postfix
