"""What XOAUTH2 and OAUTHBEARER share (not a plugin): the exchange, and the server's JSON error (RFC 7628 3.2.2)."""

from __future__ import annotations

from esmtp.types import Credentials


class BearerClient:
    """Sends the token in the initial response; answers the server's error challenge with :attr:`ERROR_ANSWER`.

    A server that refuses the token sends a 334 with a base64 JSON error; the answer makes it send the final 5xx,
    which the core reports together with :attr:`failure` (the JSON's status and scope).
    """

    ERROR_ANSWER = b""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        #: The server's error (status, scope), read by the core for its message.
        self.failure: str | None = None

    def initial_response(self) -> bytes:
        raise NotImplementedError

    def step(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            return self.initial_response()
        if self.failure is not None:
            raise ValueError("the server sent a second challenge after its error")
        self.failure = describe_error(challenge)
        return self.ERROR_ANSWER


def describe_error(challenge: bytes) -> str:
    """The ``status`` and ``scope`` (and ``schemes``) of a bearer-token error challenge, for the user."""
    import json

    try:
        error = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "the server's error challenge was not JSON"
    if not isinstance(error, dict):
        return "the server's error challenge was not a JSON object"
    parts = [f"{key} {error[key]}" for key in ("status", "scope", "schemes") if key in error]
    return "the server says: " + (", ".join(parts) if parts else "no status")


def user_bytes(username: str) -> bytes:
    return username.encode("utf-8", "surrogateescape")


def token_bytes(token: str) -> bytes:
    return token.encode("utf-8", "surrogateescape")
