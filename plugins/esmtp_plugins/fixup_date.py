"""Adds a Date: header (RFC 5322, local time zone) when the message has none."""

from __future__ import annotations

from esmtp import hookimpl
from esmtp.message import Message


@hookimpl
def esmtp_fixup_headers(message: Message) -> None:
    """Add ``Date:`` if missing. Local delivery gets it too (esmtp 1.2 left cron mail without a Date)."""
    if not message.has("date"):
        from email.utils import formatdate

        message.add("Date", formatdate(localtime=True))
