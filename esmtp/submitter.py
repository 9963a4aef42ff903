"""Who submitted a message to the system service (:mod:`esmtp.relay.system`), and what that changes in a run.

The service knows the submitting account from the kernel (SO_PEERCRED), never from what the caller says. For the
run of that request, :data:`current` holds it, and:

* the envelope sender without ``-f`` is the login at the mail domain (``qualifydomain``, else ``/etc/mailname``,
  else the host name); with ``allow_from_override off`` it is that address whatever the caller asked for;
* every message gets a ``Received:`` field naming the uid and the login, as Postfix's pickup does ("from userid
  33"), so that the relay's operator can trace abuse;
* ``%u`` in ``force reverse_path`` is the submitter's login (:func:`esmtp.envelope.login_name`);
* the queue lists and removes only the submitter's entries (root's: all of them).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esmtp.config.model import Config
    from esmtp.message import Message
    from esmtp.options import Options

#: Where the mail domain is read when no ``qualifydomain`` is set (Debian's convention); ESMTP_SYSTEM_MAILNAME moves it.
MAILNAME = "/etc/mailname"


@dataclass(frozen=True, slots=True)
class Submitter:
    """A local account that handed a message (or a queue command) to the system service."""

    uid: int
    #: The account's login (``uid<N>`` for a uid without a passwd entry).
    login: str

    @classmethod
    def of(cls, uid: int) -> Submitter:
        import pwd

        try:
            return cls(uid, pwd.getpwuid(uid).pw_name)
        except KeyError:
            return cls(uid, f"uid{uid}")

    @property
    def is_root(self) -> bool:
        return self.uid == 0


#: The submitter of the request this thread (and the SMTP session it drives) serves; None outside the service.
current: ContextVar[Submitter | None] = ContextVar("submitter", default=None)


def mail_domain(config: Config) -> str:
    """``qualifydomain`` of the default identity, else the first word of ``/etc/mailname``, else the host name."""
    if config.default.qualifydomain:
        return config.default.qualifydomain
    try:
        with open(os.environ.get("ESMTP_SYSTEM_MAILNAME") or MAILNAME, "rb") as handle:
            words = handle.read(1024).split()
        if words:
            return words[0].decode("ascii", "replace")
    except OSError:
        pass
    return os.uname().nodename


def allows_override(config: Config) -> bool:
    """``allow_from_override`` (msmtp's name, default on): whether a submitter may choose the envelope sender."""
    return config.options.get("allow_from_override", "on") == "on"


def apply(submitter: Submitter, options: Options, message: Message, config: Config) -> None:
    """The sender policy and the ``Received:`` field, before the envelope is built."""
    own = f"{submitter.login}@{mail_domain(config)}"
    if not allows_override(config):
        options.sender = own
        options.identity = None
    elif options.sender is None and not (options.read_recipients and _header_sender(message)):
        options.sender = own
    message.headers.insert(0, received_field(submitter, message.newline))


def _header_sender(message: Message) -> bool:
    return any(message.has(name) for name in ("from", "resent-from", "resent-sender"))


def received_field(submitter: Submitter, newline: bytes = b"\n") -> bytes:
    """``Received: by HOST (esmtp, from userid 33 (www-data)); DATE`` (RFC 5321 4.4's trace field, Postfix's
    wording for a local submission)."""
    from esmtp_plugins.fixup_date import rfc5322_date

    from esmtp import __version__

    login = "".join(char if char.isprintable() and char not in "()\\" else "?" for char in submitter.login)
    text = (f"Received: by {os.uname().nodename} (esmtp {__version__}, from userid {submitter.uid} ({login}));"
            f"{newline.decode('ascii')}\t{rfc5322_date()}")
    return text.encode("utf-8", "surrogateescape") + newline
