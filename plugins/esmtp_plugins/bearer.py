"""What XOAUTH2 and OAUTHBEARER share (not a plugin): reading the server's JSON error challenge (RFC 7628 3.2.2)."""

from __future__ import annotations


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
