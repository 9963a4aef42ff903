"""Removes Bcc: (and Resent-Bcc:) so that blind copies stay blind."""

from __future__ import annotations

from esmtp import hookimpl
from esmtp.message import Message

#: Header fix-ups append in esmtp 1.2's order (Date, From, Message-ID, then Sender), whatever their names: see
#: esmtp.plugins.plugin_order. Bcc goes first of all, and is also tryfirst.
PLUGIN_ORDER = 10


@hookimpl(tryfirst=True)
def esmtp_fixup_headers(message: Message) -> None:
    """Remove Bcc and Resent-Bcc, with or without ``-t`` (esmtp 1.2 forwarded Bcc without ``-t``).

    ``tryfirst``: header rewriting plugins should never see, or copy, a Bcc list.
    """
    message.remove("bcc")
    message.remove("resent-bcc")
