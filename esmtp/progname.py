"""The program name that prefixes every message: the name this process was called as (sendmail, mailq, esmtp...).

``cli.main`` sets it from ``argv[0]``; code that runs without it (the queue's background run) says "esmtp".
"""

from __future__ import annotations

import os
import sys

_name = ""


def set_name(argv0: str) -> None:
    global _name
    _name = os.path.basename(argv0)


def name() -> str:
    """The basename of ``argv[0]`` as the command was called, or "esmtp" (also for ``python -c``)."""
    return _name if _name and not _name.startswith("-") else "esmtp"


def warn(text: str) -> None:
    """Write ``<program>: text`` to standard error."""
    sys.stderr.write(f"{name()}: {text}\n")
