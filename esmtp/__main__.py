"""``python -m esmtp``: the ``esmtp`` command (argv[0] would otherwise be this file's path, which names no mode)."""

import sys

from .cli import main

raise SystemExit(main(["esmtp", *sys.argv[1:]]))
