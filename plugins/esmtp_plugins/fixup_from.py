"""Adds a From: header, built from the envelope sender and ``-F``, when the message has none."""

from __future__ import annotations

from esmtp import hookimpl
from esmtp.message import Message
from esmtp.types import Envelope

#: Header fix-ups append in esmtp 1.2's order (Date, From, Message-ID, then Sender), whatever their names: see
#: esmtp.plugins.plugin_order.
PLUGIN_ORDER = 30


@hookimpl
def esmtp_fixup_headers(envelope: Envelope, message: Message) -> None:
    """Add ``From: "Full Name" <sender>`` if missing (the name from ``-F``; esmtp 1.2 ignored ``-F``)."""
    if message.has("from"):
        return
    # With 'force reverse_path' the envelope sender is the forced one; the From: shows who asked (-f), as esmtp 1.2.
    address = envelope.sender
    if envelope.identity.force_reverse_path and envelope.given_sender:
        address = envelope.given_sender
    if not address:
        from esmtp.envelope import default_sender

        address = default_sender()
    if not envelope.full_name:
        message.add("From", address)
        return
    from email.utils import formataddr  # quoting and RFC 2047 encoding of the name

    message.add("From", formataddr((envelope.full_name, address), charset="utf-8"))
