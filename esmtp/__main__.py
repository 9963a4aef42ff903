"""``python -m esmtp``: the ``esmtp`` command (argv[0] would otherwise be this file's path, which names no mode)."""

import sys

from . import streams
from .cli import main

streams.repair()
code = main(["esmtp", *sys.argv[1:]])
streams.settle()
raise SystemExit(code)
