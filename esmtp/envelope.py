"""Building the envelope: recipients from the command line and (``-t``) the headers, the sender, the identity."""

from __future__ import annotations

import os

from esmtp.addresses import check_address, header_addresses
from esmtp.config.model import Config, Identity
from esmtp.errors import DataError
from esmtp.message import Message
from esmtp.options import Options
from esmtp.submitter import current
from esmtp.types import Envelope

_RECIPIENT_FIELDS = ("to", "cc", "bcc")


def recipients_from_headers(message: Message) -> list[str]:
    """``-t``: To, Cc and Bcc; or only Resent-To/Cc/Bcc when the message has been resent (RFC 5322 3.6.6)."""
    resent = tuple(f"resent-{name}" for name in _RECIPIENT_FIELDS)
    if any(message.has(name) for name in resent):
        return header_addresses(message, resent)
    return header_addresses(message, _RECIPIENT_FIELDS)


def _sender_fields(message: Message) -> tuple[str, ...]:
    """``-t``'s sender: of a resent message, Resent-Sender or else Resent-From (RFC 5322 3.6.6, the topmost, most
    recent block first); else From."""
    resent = tuple(f"resent-{name}" for name in _RECIPIENT_FIELDS)
    if any(message.has(name) for name in resent):
        return ("resent-sender",) if message.has("resent-sender") else ("resent-from", "from")
    return ("from",)


def login_name() -> str:
    """The user's login; in the system service, the submitter's (:mod:`esmtp.submitter`)."""
    import pwd

    submitter = current.get()
    if submitter is not None:
        return submitter.login

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = os.environ.get("LOGNAME") or os.environ.get("USER")
        if not name:
            raise DataError(f"could not determine the user name of uid {os.getuid()}") from None
        return name


def default_sender() -> str:
    """esmtp's last resort: login name at the host name."""
    return f"{login_name()}@{os.uname().nodename}"  # gethostname(), without importing socket


def expand_mask(mask: str) -> str:
    """``force reverse_path``/``force sender`` masks, as esmtp 1.2 expands them (smtp.c ``expand_mask``).

    ``%u`` is the login name and ``%%`` a percent sign; any other ``%x`` is dropped, both characters, and a ``%`` at
    the very end is dropped too.
    """
    out = []
    index = 0
    while index < len(mask):
        char = mask[index]
        if char != "%":
            out.append(char)
            index += 1
            continue
        nxt = mask[index + 1 : index + 2]
        if nxt == "u":
            out.append(login_name())
        elif nxt == "%":
            out.append("%")
        index += 2
    return "".join(out)


def build_envelope(options: Options, message: Message, config: Config) -> Envelope:
    """The envelope of this run, following esmtp 1.2's sender rules (see docs/differences.md for the changes)."""
    given = options.sender
    recipients: list[str] = []
    if options.read_recipients:
        recipients = recipients_from_headers(message)
        if given is None:
            senders = header_addresses(message, _sender_fields(message))
            given = senders[0] if senders else None
    recipients += options.recipients
    unique = list(dict.fromkeys(check_address(r, "recipient") for r in recipients))
    if not unique:
        raise DataError("No recipients found" if options.read_recipients else "Recipient names must be specified")
    from esmtp.config.identities import choose_identity

    identity: Identity = choose_identity(config, given, options.identity).identity
    if identity.force_reverse_path:
        sender = expand_mask(identity.force_reverse_path)
    elif given is not None:
        sender = given
    else:
        # A block named by a pattern (identity *@example.org) has no address to send from.
        named = identity.address if identity.address and not any(c in identity.address for c in "*?[") else None
        sender = named or default_sender()
    return Envelope(
        sender=check_address(sender, "sender"),
        recipients=unique,
        identity=identity,
        full_name=options.full_name,
        notify=options.notify,
        ret=options.ret,
        envid=options.envid,
        body_type=options.body_type,
        from_headers=options.read_recipients,
        given_sender=given,
        submitter=submitter.uid if (submitter := current.get()) is not None else None,
    )
