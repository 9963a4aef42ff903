"""Fixtures for the interop tests: a real Postfix + Cyrus SASL + TLS server on loopback.

``postfix`` (session scope) starts one :class:`postfix_server.PostfixServer` for the whole run and stops it at
the end. Without root or the Debian packages (``.ci/install-interop-deps.sh``) the tests that use it are
skipped, except under ``CI=true``, where a skip would hide a broken CI setup and so they fail instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not a package: make the fixture's modules importable from here and from the test files.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from postfix_server import (
    CI_FAIL_NOTE,
    PostfixServer,
    make_traversable,
    must_fail_instead_of_skip,
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
    directory = tmp_path_factory.mktemp("postfix")
    make_traversable(directory, up_to=tmp_path_factory.getbasetemp().parent)
    server = PostfixServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def clean_postfix(postfix: PostfixServer) -> PostfixServer:
    """The session's ``postfix`` with the messages delivered for earlier tests removed."""
    postfix.clear()
    return postfix
