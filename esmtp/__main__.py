"""``python -m esmtp``: the ``esmtp`` command (argv[0] would otherwise be this file's path, which names no mode)."""

import sys

from esmtp import streams
from esmtp.cli import main

streams.repair()
code = main(["esmtp", *sys.argv[1:]])
streams.settle()
raise SystemExit(code)
