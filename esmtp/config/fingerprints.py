"""``tls_fingerprint`` values: parsing and writing SHA-256 certificate pins. Light: the configuration parser checks
pins with it without importing ``ssl``."""

from __future__ import annotations

import hashlib
import string

from esmtp.errors import ConfigError


def parse_fingerprint(text: str) -> bytes:
    """``SHA256:AB:CD:...`` (prefix optional, any case, colons optional) → the 32-byte digest."""
    value = text.strip()
    algorithm, sep, rest = value.partition(":")
    if sep and not all(c in string.hexdigits for c in algorithm):  # a prefix such as SHA256: (not a hex pair)
        if algorithm.upper().replace("-", "") != "SHA256":
            raise ConfigError(f"tls_fingerprint: only SHA256 fingerprints are supported, not {algorithm}")
        value = rest
    digits = value.replace(":", "").replace(" ", "")
    try:
        digest = bytes.fromhex(digits)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(
            f"tls_fingerprint '{text}' is not a SHA-256 fingerprint (32 bytes in hex, e.g. SHA256:AB:CD:...)"
        )
    return digest


def format_fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate as ``tls_fingerprint`` takes it."""
    return format_digest(hashlib.sha256(der).digest())


def format_digest(digest: bytes) -> str:
    """A SHA-256 digest written as ``tls_fingerprint`` takes it: ``SHA256:AB:CD:...``."""
    return "SHA256:" + ":".join(f"{byte:02X}" for byte in digest)


__all__ = ["format_digest", "format_fingerprint", "parse_fingerprint"]
