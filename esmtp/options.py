"""The sendmail-compatible command line: argv in, one typed :class:`Options` out. Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import UsageError

Mode = Literal["deliver", "mailq", "newaliases", "flush", "remove", "version", "help"]


@dataclass(slots=True)
class Options:
    """What the command line asked for."""

    mode: Mode = "deliver"
    #: Recipient addresses from the command line, in order, each already split from address lists.
    recipients: list[str] = field(default_factory=list)
    #: ``-f``/``-r``; "" means the null sender ``<>``.
    sender: str | None = None
    #: ``-F``: the full name used in a generated From:.
    full_name: str | None = None
    #: ``-t``: read recipients from the headers.
    read_recipients: bool = False
    #: ``-N``: "NEVER" or a comma-separated subset of SUCCESS,FAILURE,DELAY, upper case, fixed order.
    notify: str | None = None
    #: ``-R``: "FULL" or "HDRS".
    ret: str | None = None
    #: ``-V``: the DSN envelope id.
    envid: str | None = None
    #: ``-B``: "7BIT" or "8BITMIME".
    body_type: str | None = None
    #: ``-C``: configuration file.
    config_file: str | None = None
    #: ``-v`` count.
    verbose: int = 0
    #: ``-X``: protocol transcript file (appended to).
    transcript: str | None = None
    #: ``-q`` selection (``-qI<id>``, ``--flush ID``) or ``--remove ID`` arguments: queue entry ids.
    queue_ids: list[str] = field(default_factory=list)
    #: Flags accepted for compatibility and ignored, as given (for ``-v`` output).
    ignored: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """Parse a full argv (``argv[0]``'s basename selects sendmail, mailq, newaliases or deliver behaviour)."""
    raise NotImplementedError
