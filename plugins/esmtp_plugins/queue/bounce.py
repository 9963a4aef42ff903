"""Bounce messages: an RFC 3464 delivery status notification for an entry that failed permanently or expired.

A bounce is sent from the null sender (``MAIL FROM:<>``) to the original sender and is queued like any message, with
``bounce_of`` set. A bounce is never bounced to its sender; when ``admin_address`` is set, a bounce that cannot be
delivered is reported there once (a double bounce, as Postfix's to the postmaster), else it ends in the failed area.
"""

from __future__ import annotations

import re
import socket
from email.utils import formatdate, make_msgid

from . import clock
from .entry import Entry, new_id

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
#: A server reply in a reason such as "mx.example:587: 550 5.1.1 no such user".
_REPLY = re.compile(r"(?:^|: )([245])\d\d(?=[ -]|$)")
#: Prefix of ``Entry.failed`` reasons for recipients whose lifetime ran out.
EXPIRED = "expired: "


def wants_bounce(entry: Entry) -> bool:
    """Whether a failure of ``entry`` may be reported to its sender (never for bounces or the null sender)."""
    if entry.bounce_of is not None or not entry.sender:
        return False
    return entry.notify is None or "FAILURE" in entry.notify.split(",")


def wants_double_bounce(entry: Entry, admin: str | None) -> bool:
    """Whether ``entry``, a bounce that failed, is reported to ``admin`` (``admin_address``): once, never for a
    double bounce itself."""
    return bool(admin) and entry.bounce_of is not None and not entry.double


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(reason: str) -> tuple[str, str]:
    """(Status, Diagnostic-Code) for one recipient's failure reason."""
    if reason.startswith(EXPIRED):
        return "4.4.7", f"X-esmtp; {_one_line(reason)}"
    reply = _one_line(reason)
    found = _STATUS.search(reply)
    code = _REPLY.search(reply)
    if code:
        status = found.group(1) if found else f"{code.group(1)}.0.0"
        return status, f"smtp; {reply[code.start(1):]}"
    return (found.group(1) if found else "5.0.0"), f"X-esmtp; {reply}"


def make_bounce(entry: Entry, original_path: str, original_headers: bytes, *, hostname: str | None = None,
                now: float | None = None, to: str | None = None) -> tuple[Entry, list[bytes | str]]:
    """Build the bounce for ``entry``: the new queue entry and its message as parts for :meth:`QueueStore.enqueue`.
    ``to``: a double bounce's recipient (``admin_address``) instead of the entry's sender.

    The original message is returned whole (``original_path``) when the sender asked for ``RET=FULL``; otherwise
    only its header block (``original_headers``).
    """
    host = hostname or socket.gethostname()
    now = clock.now() if now is None else now
    boundary = f"{new_id()}/{host}"
    full = entry.ret == "FULL"
    report = [f"Reporting-MTA: dns; {host}", f"X-Esmtp-Queue-ID: {entry.id}"]
    if entry.envid:
        report.append(f"Original-Envelope-Id: {_one_line(entry.envid)}")
    report.append(f"Arrival-Date: {formatdate(entry.created, localtime=True)}")
    explained = []
    for recipient, reason in entry.failed.items():
        status, diagnostic = _status(reason)
        report += [
            "",
            f"Final-Recipient: rfc822; {recipient}",
            "Action: failed",
            f"Status: {status}",
            f"Diagnostic-Code: {diagnostic}",
        ]
        if entry.last_attempt:
            report.append(f"Last-Attempt-Date: {formatdate(entry.last_attempt, localtime=True)}")
        explained.append(f"<{recipient}>: {_one_line(reason)}")
    delivered = "".join(f"\n  <{r}>" for r in entry.delivered)
    text = (
        f"This is the mail queue of esmtp on {host}.\n\n"
        "Your message could not be delivered to the recipients below. This is a permanent error: the message will\n"
        "not be tried again.\n\n" + "\n".join(explained) + "\n"
        + (f"\nIt was delivered to:{delivered}\n" if delivered else "")
    )
    head = "\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{to or entry.sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {formatdate(now, localtime=True)}",
        f"Message-ID: {make_msgid(domain=host)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="{boundary}"',
    ]) + "\n\n"
    body = (
        "This is a MIME-encapsulated message.\n\n"
        f"--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: 8bit\n\n{text}\n"
        f"--{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        + "\n".join(report) + "\n\n"
        + f"--{boundary}\n"
        + ("Content-Description: Undelivered message\nContent-Type: message/rfc822\n\n" if full else
           "Content-Description: Undelivered message headers\nContent-Type: text/rfc822-headers\n\n")
    )
    encoded_head = head.encode("utf-8", "surrogateescape")
    prefix = encoded_head + body.encode("utf-8", "surrogateescape")
    returned: bytes | str = original_path if full else original_headers
    trailer = f"\n--{boundary}--\n".encode()
    eight_bit = not prefix.isascii() or (entry.eight_bit if full else not original_headers.isascii())
    bounce = Entry(
        id=new_id(),
        sender="",
        recipients=[to or entry.sender],
        identity=entry.identity,
        created=now,
        size=0,
        header_size=len(encoded_head),
        newline="\n",
        eight_bit=eight_bit,
        notify="NEVER",
        bounce_of=entry.id,
        double=to is not None,
        submitter=None if to else entry.submitter,  # a double bounce is for the operator
    )
    return bounce, [prefix, returned, trailer]
