"""SASL LOGIN (draft-murchison-sasl-login): the username and the password, each in answer to a prompt.

LOGIN sends the password recoverably, so the core allows it only over TLS unless ``auth_plaintext enabled``.
By default the username is *not* sent as an initial response: every LOGIN server prompts for it, while some
servers reject ``AUTH LOGIN <username>``. ``auth_login_initial_response enabled`` saves the round trip (esmtp 1.2
sent it that way).
"""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.types import Credentials, KeywordSpec, SaslMechanism

KEYWORD = "auth_login_initial_response"


class LoginClient:
    """Answers ``Username:`` and ``Password:`` prompts; prompts it cannot read are answered in that order."""

    def __init__(self, credentials: Credentials, *, initial_response: bool = False) -> None:
        self._username = credentials.username.encode("utf-8", "surrogateescape")
        self._password = credentials.password.encode("utf-8", "surrogateescape")
        self._initial_response = initial_response
        self._sent_username = False
        self._sent_password = False

    def step(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            if not self._initial_response:
                return None
            self._sent_username = True
            return self._username
        if self._sent_password:
            raise ValueError("the server asked for more after the password")
        prompt = challenge.lower()
        # A server that ignored the initial response asks for the username again: answer it again.
        if b"pass" not in prompt and (b"user" in prompt or not self._sent_username):
            self._sent_username = True
            return self._username
        self._sent_password = True
        return self._password


def _factory(credentials: Credentials) -> LoginClient:
    # Credentials.options (the identity's extension keywords) exists only in cores that pass it on.
    options = getattr(credentials, "options", None) or {}
    return LoginClient(credentials, initial_response=options.get(KEYWORD) == "enabled")


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """LOGIN ranks below PLAIN: both send the password, and PLAIN is the standard one."""
    return [SaslMechanism("LOGIN", priority=5, factory=_factory, plaintext=True)]


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    """``auth_login_initial_response enabled|disabled`` (default disabled), per identity."""
    return [
        KeywordSpec(
            KEYWORD, choices=("enabled", "disabled"), help="send the LOGIN username with the AUTH command"
        )
    ]
