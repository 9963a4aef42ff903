"""Built-in plugin 'dkim': signs outgoing mail with DKIM (RFC 6376; Ed25519 by RFC 8463), at the moment it is sent.

Off until the identity (or the global section) has ``dkim_selector`` and ``dkim_key_file``. The signature is made in
``esmtp_sign_message``, the one hook that runs after every rewrite and fixup and right before the message goes out
on every path: a direct send, ``-bs``, the warm relay, and each try of a queued message (so ``t=`` is the sending
time, not the queueing time). ``trylast`` and a high ``PLUGIN_ORDER``: another plugin on that hook runs first.

The keywords, their defaults and the DNS record are in docs/dkim.md. This module holds the hook implementations and
the cheap test of whether an identity signs (every send asks; most do not sign, and import nothing more). The work
is in :mod:`.dkim_settings` (the keywords), :mod:`.dkim_sign` (the field), :mod:`.dkim_canon` (canonicalization and
the streamed body hash), :mod:`.dkim_keys` (reading keys) and :mod:`.dkim_keygen` (``esmtp --dkim-keygen``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.types import KeywordSpec

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.trace import Trace
    from esmtp.types import Envelope

#: Last on ``esmtp_sign_message`` (with ``trylast``): whatever another plugin changes there is signed too.
PLUGIN_ORDER = 1000

KEYWORDS = ("dkim_domain", "dkim_selector", "dkim_key_file", "dkim_algorithm", "dkim_headers",
            "dkim_canonicalization", "dkim_from_mismatch")


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    return [
        KeywordSpec("dkim_selector", help="DKIM: the selector (s=); with dkim_key_file, turns signing on"),
        KeywordSpec("dkim_key_file", help="DKIM: the private key (PEM, mode 0600); two, comma-separated, with two "
                                          "selectors"),
        KeywordSpec("dkim_domain", help="DKIM: the signing domain (d=); default the From: domain"),
        KeywordSpec("dkim_algorithm", help="DKIM: rsa-sha256, ed25519-sha256, or both (two signatures); default the "
                                           "key's"),
        KeywordSpec("dkim_headers", help="DKIM: colon-separated fields to sign (default From, To, Cc, Subject, "
                                         "Date, Message-ID...); From is oversigned"),
        KeywordSpec("dkim_canonicalization", help="DKIM: header/body canonicalization, simple or relaxed "
                                                  "(default relaxed/relaxed)"),
        KeywordSpec("dkim_from_mismatch", choices=("sign", "skip"),
                    help="DKIM: when the From: domain is not dkim_domain's: sign (warn in -v) or skip signing"),
    ]


@hookimpl(trylast=True)
def esmtp_sign_message(envelope: Envelope, message: Message, config: Config, trace: Trace) -> None:
    """Sign the message as it will be sent, when its identity has DKIM settings."""
    glob = config.identities[0] if config.identities else envelope.identity
    if not (_signs_here(envelope.identity) or _signs_here(glob)):
        return  # the common case, decided without importing the rest of the plugin
    from .dkim_settings import settings_for, signatures_for

    settings = settings_for(envelope.identity, config)
    if settings is None:
        return
    signatures = signatures_for(settings, message, trace)
    if not signatures:
        return
    from .dkim_sign import sign

    removed = sign(message, signatures)
    for signature in signatures:
        trace.info(f"dkim: signed with d={signature.domain} s={signature.selector} ({signature.key.algorithm}, "
                   f"c={signature.header_canon}/{signature.body_canon})")
    if removed:
        trace.info(f"dkim: replaced {removed} signature(s) of an earlier try")


@hookimpl
def esmtp_check_config(config: Config) -> None:
    """``esmtp --check``: per identity that signs, the DNS name to publish and whether each key parses."""
    if not _signs(config):
        return
    from .dkim_keys import full_check, public_record
    from .dkim_settings import domain_ascii, load_keys, settings_for

    for identity in config.identities:
        settings = settings_for(identity, config)
        if settings is None or (identity.address is None and identity is not config.default
                                and not _signs_here(identity)):
            continue
        label = identity.address or "(global section)"
        domain = settings.domain
        if domain is None and identity.address is not None and "@" in identity.address:
            domain = domain_ascii(identity.address.rpartition("@")[2])
        for choice, key in load_keys(settings):
            full_check(choice.path)
            name = f"{choice.selector}._domainkey.{domain or '<the From: domain>'}"
            print(f"dkim {label}: {key.algorithm} ({key.bits}-bit key in {choice.path}: ok); publish TXT at {name}:")
            print(f"     {public_record(key)}")


def _signs_here(identity: Identity) -> bool:
    return any(key in identity.options for key in KEYWORDS)


def _signs(config: Config) -> bool:
    return any(_signs_here(identity) for identity in config.identities)


@hookimpl
def esmtp_command(options: Options) -> int | None:
    """``esmtp --dkim-keygen --selector S --domain D [--algorithm A] [--output FILE]``."""
    if options.mode != "dkim-keygen":
        return None
    from .dkim_keygen import keygen

    return keygen(options)
