"""The program name that prefixes every message: the name this process was called as (sendmail, mailq, esmtp...).

``cli.main`` sets it from ``argv[0]``; code that runs without it (the queue's background run) says "esmtp". A context
variable, not a module global: the warm relay runs the requests of several callers at once, each in a thread (and
event loop) of its own, and each caller must see the name it called.
"""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar

_name: ContextVar[str] = ContextVar("progname", default="")


def set_name(argv0: str) -> None:
    """Name the current run (this thread, and the tasks it starts) after ``argv0``."""
    _name.set(os.path.basename(argv0))


def name() -> str:
    """The basename of ``argv[0]`` as the command was called, or "esmtp" (also for ``python -c``)."""
    value = _name.get()
    return value if value and not value.startswith("-") else "esmtp"


#: Control characters (C0 but tab and line feed, DEL, C1) and how they are shown: never raw on a terminal.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\t\n"}
_CONTROL[0x0D] = "\\r"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\r``...): a server's reply or a ``-bs``
    caller's words must not colour, retitle or rewrite the user's terminal, or hide what came before a CR."""
    return text.translate(_CONTROL)


def warn(text: str) -> None:
    """Write ``<program>: text`` to standard error (control characters escaped: :func:`printable`)."""
    sys.stderr.write(f"{name()}: {printable(text)}\n")
