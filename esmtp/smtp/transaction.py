"""One message's MAIL, RCPT and DATA commands, with the parameters that the server's extensions allow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from esmtp.errors import PermanentFailure
from esmtp.smtp.idn import ascii_form

if TYPE_CHECKING:
    import aiosmtplib

    from esmtp.message import Message
    from esmtp.trace import Trace
    from esmtp.types import Envelope


def xtext(value: str) -> str:
    """RFC 3461 xtext: ``+XX`` for ``+``, ``=`` and anything outside printable ASCII."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in value)


class Transaction:
    """MAIL, RCPT and DATA of one message, as written to the server (and, once written, waiting for replies)."""

    __slots__ = ("commands", "envelope", "recipients", "wire")

    def __init__(self, envelope: Envelope, recipients: list[str], commands: list[str]) -> None:
        self.envelope = envelope
        self.recipients = list(recipients)
        self.commands = commands
        self.wire = b"".join(command.encode("utf-8") + b"\r\n" for command in commands)

    def matches(self, envelope: Envelope, recipients: list[str]) -> bool:
        return envelope is self.envelope and recipients == self.recipients


def mail_params(smtp: aiosmtplib.SMTP, server: str, envelope: Envelope, message: Message, trace: Trace) -> list[str]:
    """MAIL FROM's parameters for what the server offers (SIZE, BODY, SMTPUTF8, RET, ENVID). Raises
    PermanentFailure for a message the server cannot take (too large; a non-ASCII local part without SMTPUTF8)."""
    params = []
    if smtp.supports_extension("size"):
        limit = smtp.esmtp_extensions.get("size", "").strip()
        if limit.isdigit() and 0 < int(limit) < message.size:  # "SIZE" alone or "SIZE 0": no limit announced
            raise PermanentFailure(
                f"the message is {message.size} bytes and {server} accepts at most {limit} (SIZE {limit}); "
                "nothing was sent"
            )
        params.append(f"SIZE={message.size}")
    body = envelope.body_type or ("8BITMIME" if message.eight_bit else None)
    if body and smtp.supports_extension("8bitmime"):
        params.append(f"BODY={body}")
    elif body == "8BITMIME":
        trace.info(f"{server} does not offer 8BITMIME; sending 8-bit data as is")
    addresses = [envelope.sender, *envelope.recipients]
    if not all(address.isascii() for address in addresses):
        if smtp.supports_extension("smtputf8"):
            params.append("SMTPUTF8")
        else:  # internationalised domains can go in their IDNA form; a non-ASCII local part cannot
            for address in addresses:
                if ascii_form(address) is None:
                    raise PermanentFailure(
                        f"{server} does not offer SMTPUTF8, needed for the address {address} (its local "
                        "part is not ASCII); nothing was sent"
                    )
    if smtp.supports_extension("dsn"):
        if envelope.ret:
            params.append(f"RET={envelope.ret}")
        if envelope.envid:
            params.append(f"ENVID={xtext(envelope.envid)}")
    elif envelope.ret or envelope.envid or envelope.notify:
        trace.info(f"{server} does not offer DSN; -N, -R and -V are not passed on")
    return params

def commands_for(smtp: aiosmtplib.SMTP, server: str, envelope: Envelope, message: Message, recipients: list[str],
                 trace: Trace) -> Transaction:
    """The commands of one message: MAIL with its parameters, a RCPT per recipient, DATA."""
    params = mail_params(smtp, server, envelope, message, trace)

    def wire(address: str) -> str:  # the IDNA form when the server cannot take UTF-8 (checked just above)
        return address if "SMTPUTF8" in params else ascii_form(address) or address

    mail = " ".join([f"MAIL FROM:<{wire(envelope.sender)}>", *params])
    notify = f" NOTIFY={envelope.notify}" if envelope.notify and smtp.supports_extension("dsn") else ""
    rcpts = [f"RCPT TO:<{wire(rcpt)}>{notify}" for rcpt in recipients]
    return Transaction(envelope, recipients, [mail, *rcpts, "DATA"])
