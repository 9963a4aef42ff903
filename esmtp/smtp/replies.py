"""What a server's replies, and a connection that broke, mean: esmtp's errors, naming the server and its reply."""

from __future__ import annotations

import asyncio

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from esmtp.errors import DeliveryError, PermanentFailure, RecipientsRejected, TemporaryFailure


def failure(server: str, what: str, response: SMTPResponse) -> DeliveryError:
    """The error for ``response``, a refusal of ``what`` by ``server``: 4xx temporary, 5xx permanent."""
    if response.code < 100:  # no SMTP reply at all (aiosmtplib's -1): garbage, or a reply over the size bound
        return TemporaryFailure(f"{server} sent an invalid reply: {response.message}")
    reply = f"{response.code} {response.message}".strip()
    text = f"{server} {what}: {reply}"
    if 400 <= response.code < 500:
        return TemporaryFailure(text, code=response.code, reply=reply)
    return PermanentFailure(text, code=response.code, reply=reply)


def rejected(server: str, rejected: dict[str, str]) -> RecipientsRejected:
    """Some recipients refused (``rejected``: each one's reply): nothing was sent to anybody."""
    lines = "\n".join(f"  {rcpt}: {reply}" for rcpt, reply in rejected.items())
    return RecipientsRejected(
        f"{server} refused {len(rejected)} recipient(s); the message was not sent to anybody:\n{lines}",
        rejected=rejected,
    )


def describe(error: BaseException) -> str:
    """A broken connection or a time-out, in words."""
    if isinstance(error, asyncio.TimeoutError | aiosmtplib.SMTPTimeoutError):
        return f"timed out ({error})" if str(error) else "timed out"
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return f"the server closed the connection ({error})"
    return str(error) or type(error).__name__
