"""Internationalised domains for servers without SMTPUTF8: ``user@bücher.example`` goes as ``user@xn--bcher-kva…``.

Only the domain has an ASCII form (IDNA); a non-ASCII local part has none, so only such an address needs SMTPUTF8
(RFC 6531), as msmtp decides. The stdlib codec implements IDNA 2003 (RFC 3490), which covers the domains in use.
"""

from __future__ import annotations


def ascii_form(address: str) -> str | None:
    """``address`` with its domain in IDNA form, or None if it cannot be written in ASCII (non-ASCII local part, or
    a domain IDNA refuses)."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None
