"""``force sender``: sets the Sender: header from the identity's mask (``%u`` is the login name), as esmtp 1.2 did."""

from __future__ import annotations

from esmtp import hookimpl
from esmtp.message import Message
from esmtp.types import Envelope

#: Header fix-ups append in esmtp 1.2's order (Date, From, Message-ID, then Sender), whatever their names: see
#: esmtp.plugins.plugin_order.
PLUGIN_ORDER = 50


@hookimpl
def esmtp_fixup_headers(envelope: Envelope, message: Message) -> None:
    """Replace the first Sender: in place (dropping any others) or append one, when ``force sender`` is set.

    The value is the expanded mask, written as is (esmtp 1.2 wrote it raw too). Runs after the Date/From/Message-ID
    fixups (its PLUGIN_ORDER), so an appended Sender: comes last, as in esmtp 1.2.
    """
    mask = envelope.identity.force_sender
    if mask:
        from esmtp.envelope import expand_mask

        message.replace("Sender", expand_mask(mask))
