"""Adds a Message-ID: header when the message has none, unless ``message_id disabled``."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.config.model import helo_name

if TYPE_CHECKING:
    from esmtp.message import Message
    from esmtp.types import Envelope


def new_message_id(domain: str) -> str:
    """``<time.pid.random@domain>``: unique like ``email.utils.make_msgid``, without importing ``email``/``random``."""
    return f"<{time.time_ns()}.{os.getpid()}.{os.urandom(8).hex()}@{domain}>"


#: Header fix-ups append in esmtp 1.2's order (Date, From, Message-ID, then Sender), whatever their names: see
#: esmtp.plugins.plugin_order.
PLUGIN_ORDER = 40


@hookimpl
def esmtp_fixup_headers(envelope: Envelope, message: Message) -> None:
    """Add ``Message-ID: <unique@helo-or-hostname>`` if missing and the identity allows it.

    ``message_id disabled`` only stops generation; an existing Message-ID is kept (esmtp 1.2 did the opposite).
    """
    identity = envelope.identity
    if identity.message_id and not message.has("message-id"):
        name = os.uname().nodename if identity.helo is None else helo_name(identity.helo, envelope.sender)
        message.add("Message-ID", new_message_id(name))
