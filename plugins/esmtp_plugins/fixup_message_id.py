"""Adds a Message-ID: header when the message has none, unless ``message_id disabled``."""

from __future__ import annotations

from esmtp import hookimpl
from esmtp.message import Message
from esmtp.types import Envelope


@hookimpl
def esmtp_fixup_headers(envelope: Envelope, message: Message) -> None:
    """Add ``Message-ID: <unique@helo-or-hostname>`` if missing and the identity allows it.

    ``message_id disabled`` only stops generation; an existing Message-ID is kept (esmtp 1.2 did the opposite).
    """
    identity = envelope.identity
    if identity.message_id and not message.has("message-id"):
        import socket
        from email.utils import make_msgid

        message.add("Message-ID", make_msgid(domain=identity.helo or socket.gethostname()))
