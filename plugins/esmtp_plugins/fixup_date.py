"""Adds a Date: header (RFC 5322, local time zone) when the message has none."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from esmtp import hookimpl

if TYPE_CHECKING:
    from esmtp.message import Message


def rfc5322_date(now: float | None = None) -> str:
    """``Wed, 25 Nov 2026 14:50:00 +0100`` in the local time zone, as ``email.utils.formatdate(localtime=True)``.

    Written with ``time`` alone: importing ``email.utils`` (socket, datetime, random, urllib) would cost every
    enqueue several milliseconds. Python never sets LC_TIME from the environment, so the names are English.
    """
    local = time.localtime(now)
    offset = local.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return time.strftime("%a, %d %b %Y %H:%M:%S ", local) + f"{sign}{hours:02d}{minutes:02d}"


#: Header fix-ups append in esmtp 1.2's order (Date, From, Message-ID, then Sender), whatever their names: see
#: esmtp.plugins.plugin_order.
PLUGIN_ORDER = 20


@hookimpl
def esmtp_fixup_headers(message: Message) -> None:
    """Add ``Date:`` if missing. Local delivery gets it too (esmtp 1.2 left cron mail without a Date)."""
    if not message.has("date"):
        message.add("Date", rfc5322_date())
