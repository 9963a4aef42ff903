"""The DKIM plugin's settings: the ``dkim_*`` keywords of an identity (each falling back to the global section's)
checked and turned into :class:`Settings`, and the signatures a message gets (the From: domain, alignment, keys).

Imported only when an identity sets a ``dkim_*`` keyword: a send that does not sign never pays for it.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, NamedTuple

from esmtp.errors import ConfigError

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.message import Message
    from esmtp.trace import Trace

    from .dkim_keys import SigningKey
    from .dkim_sign import Signature

#: The fields signed by default when present (From always, and once more: oversigned).
DEFAULT_HEADERS: tuple[str, ...] = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition", "list-unsubscribe",
    "list-unsubscribe-post",
)

# No regular expression is compiled at import: this module is loaded by every send that signs (start-up counts).
_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
# Characters that make a From: value need the email package's parser (quotes, comments, lists, routes...).
_SPECIALS = frozenset('<>()",;:@\\[]')
# A header field name as h= may carry it: printable ASCII but ':' and ';'.
_FIELD_NAME = r"[!-9<-~]+"


def is_labels(text: str) -> bool:
    """A selector or an ASCII domain: dot-separated labels of 1-63 letters, digits and hyphens, no hyphen at
    either end of a label."""
    return all(0 < len(label) <= 63 and _LABEL_CHARACTERS.issuperset(label) and label[0] != "-" != label[-1]
               for label in text.split("."))


class KeyChoice(NamedTuple):
    """One signature to make: its selector and key file (and the algorithm dkim_algorithm asks for, if any)."""

    selector: str
    path: str
    algorithm: str | None
    where: str  # file:line of dkim_key_file


class Settings(NamedTuple):
    """An identity's DKIM settings, each keyword falling back to the global section's."""

    domain: str | None
    keys: tuple[KeyChoice, ...]
    headers: tuple[str, ...]
    header_canon: str
    body_canon: str
    mismatch: str


def domain_ascii(domain: str) -> str | None:
    """``domain`` as d= carries it (IDNA A-labels, lower case), or None when it is not a host name."""
    domain = domain.strip().rstrip(".").lower()
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return ascii_domain if is_labels(ascii_domain) and "." in ascii_domain else None


def _words(value: str) -> list[str]:
    """A list value: separated by commas (which esmtprc keeps in a value) or spaces (in quotes)."""
    return value.replace(",", " ").split()


def settings_for(identity: Identity, config: Config) -> Settings | None:
    """The identity's settings, or None when it does not sign. Raises ConfigError naming the file and line."""
    glob = config.identities[0] if config.identities else identity

    def look(key: str) -> tuple[str | None, str]:
        for block in (identity, glob):
            value = block.options.get(key)
            if value is not None:
                return value, config.where(key, block)
        return None, config.where(key, identity)

    selector_text, selector_at = look("dkim_selector")
    key_text, key_at = look("dkim_key_file")
    if selector_text is None and key_text is None:
        return None
    if selector_text is None or key_text is None:
        have, missing = ("dkim_selector", "dkim_key_file") if key_text is None else ("dkim_key_file", "dkim_selector")
        raise ConfigError(f"{selector_at if key_text is None else key_at}: '{have}' needs '{missing}' too (DKIM "
                          f"signs with a key published under a selector)")
    selectors = _words(selector_text)
    for selector in selectors:
        if not is_labels(selector):
            raise ConfigError(f"{selector_at}: dkim_selector '{selector}' is not a DNS label (letters, digits, '-', "
                              f"'.')")
    paths = _words(key_text) if len(selectors) > 1 else [key_text.strip()]
    algorithm_text, algorithm_at = look("dkim_algorithm")
    algorithms: list[str | None] = list(_words(algorithm_text)) if algorithm_text else [None] * len(selectors)
    from .dkim_keys import ALGORITHMS

    for algorithm in algorithms:
        if algorithm is not None and algorithm not in ALGORITHMS:
            raise ConfigError(f"{algorithm_at}: dkim_algorithm takes {' or '.join(ALGORITHMS)} (or both), not "
                              f"'{algorithm}'")
    if len(set(algorithms) - {None}) < len([a for a in algorithms if a]):
        raise ConfigError(f"{algorithm_at}: dkim_algorithm names an algorithm twice")
    if not len(selectors) == len(paths) == len(algorithms) or len(selectors) > 2:
        raise ConfigError(f"{key_at}: {len(selectors)} dkim_selector(s), {len(paths)} dkim_key_file(s) and "
                          f"{len(algorithms)} dkim_algorithm(s): give one of each per signature (at most two: "
                          f"rsa-sha256 and ed25519-sha256), in the same order")
    keys = tuple(KeyChoice(s, os.path.expanduser(p), a, key_at)
                 for s, p, a in zip(selectors, paths, algorithms, strict=True))

    domain_text, domain_at = look("dkim_domain")
    domain = None
    if domain_text is not None:
        domain = domain_ascii(domain_text)
        if domain is None:
            raise ConfigError(f"{domain_at}: dkim_domain '{domain_text}' is not a domain name")

    headers_text, headers_at = look("dkim_headers")
    headers = DEFAULT_HEADERS
    if headers_text is not None:
        headers = tuple(dict.fromkeys(name.strip().lower() for name in headers_text.split(":") if name.strip()))
        bad = [name for name in headers if not re.fullmatch(_FIELD_NAME, name)]
        if bad:
            raise ConfigError(f"{headers_at}: dkim_headers: '{bad[0]}' is not a header field name")
        if "from" not in headers:
            raise ConfigError(f"{headers_at}: dkim_headers must include From (RFC 6376 5.4: it is always signed)")
        if "dkim-signature" in headers:
            raise ConfigError(f"{headers_at}: dkim_headers cannot sign DKIM-Signature fields")

    canon_text, canon_at = look("dkim_canonicalization")
    header_canon, body_canon = "relaxed", "relaxed"
    if canon_text is not None:
        head, slash, body = canon_text.strip().lower().partition("/")
        header_canon, body_canon = head, body if slash else "simple"  # RFC 6376 3.5: c=relaxed is relaxed/simple
        if header_canon not in ("simple", "relaxed") or body_canon not in ("simple", "relaxed"):
            raise ConfigError(f"{canon_at}: dkim_canonicalization takes HEADER/BODY, each simple or relaxed (such "
                              f"as relaxed/relaxed), not '{canon_text}'")
    mismatch, _ = look("dkim_from_mismatch")
    return Settings(domain, keys, headers, header_canon, body_canon, mismatch or "sign")


def from_domain(message: Message) -> str | None:
    """The domain of the (first) From: address, in ASCII; None when there is none or it cannot be used as d=.

    ``a@b`` and ``Name <a@b>`` (no quotes, comments or lists: what scripts and fixups write) are read here; anything
    else goes to the email package's parser (whose import costs 14 ms where aiosmtplib has not paid it already: a
    message delivered by the MDA only).
    """
    value = message.get("from")
    if value is None:
        return None
    address = _simple_address(value)
    if address is None:
        from esmtp.addresses import header_addresses
        from esmtp.errors import DataError

        try:
            found = header_addresses(message, ("from",))
        except DataError:
            return None
        if not found:
            return None
        address = found[0]
    return domain_ascii(address.rpartition("@")[2])


def _simple_address(value: str) -> str | None:
    """The address of ``a@b`` or ``Name <a@b>`` (a name without specials), else None."""
    text = value.strip()
    name, angle, inner = text[:-1].partition("<") if text.endswith(">") else ("", "", text)
    if angle and _SPECIALS.intersection(name):
        return None
    local, at, domain = inner.partition("@")
    if not (local and at and domain) or _SPECIALS.intersection(local + domain) or any(c.isspace() for c in inner):
        return None
    return inner


def aligned(one: str, other: str) -> bool:
    """DMARC's relaxed alignment, without the public suffix list: one domain is the other or a subdomain of it."""
    return one == other or one.endswith("." + other) or other.endswith("." + one)


def signatures_for(settings: Settings, message: Message, trace: Trace) -> list[Signature]:
    """The signatures to add to ``message`` (none when it cannot or must not be signed, with the reason in -v)."""
    from .dkim_sign import Signature

    found = from_domain(message)
    domain = settings.domain or found
    if domain is None:
        trace.info("dkim: not signed: the message has no From: address with a domain to sign for (set dkim_domain)")
        return []
    if found is None or not aligned(found, domain):
        shown = found or "(none)"
        if settings.mismatch == "skip":
            trace.info(f"dkim: not signed: the From: domain {shown} is not {domain} (dkim_from_mismatch skip)")
            return []
        trace.info(f"dkim: warning: the From: domain {shown} is not {domain}: the signature will not align for DMARC")
    return [Signature(domain, choice.selector, key, settings.headers, settings.header_canon, settings.body_canon)
            for choice, key in load_keys(settings)]


def load_keys(settings: Settings) -> list[tuple[KeyChoice, SigningKey]]:
    """Each key of ``settings``, read and checked (ConfigError naming ``dkim_key_file``'s line: exit 78)."""
    from .dkim_keys import load_key

    loaded = []
    for choice in settings.keys:
        key = load_key(choice.path, choice.where)
        if choice.algorithm is not None and choice.algorithm != key.algorithm:
            raise ConfigError(f"{choice.where}: DKIM key file {choice.path} holds an {key.algorithm} key, but "
                              f"dkim_algorithm asks for {choice.algorithm}")
        loaded.append((choice, key))
    return loaded
