"""The queue's wall clock: ``time.time()``, moved forward by ``ESMTP_QUEUE_CLOCK_OFFSET`` seconds when that is set.

Test instrumentation, like ``ESMTP_RELAY_TEST_CRASH``: a test of the retry schedule moves the queue's time forward
instead of sleeping through the backoff. Every wall-clock reading of the queue (queueing, due times, expiry, the
listing, bounces) goes through :func:`now`, so that they agree with each other.
"""

from __future__ import annotations

import os
import time

#: The environment variable that moves the queue's clock (seconds, decimals allowed).
OFFSET_VARIABLE = "ESMTP_QUEUE_CLOCK_OFFSET"


def now() -> float:
    """Seconds since the epoch, as the queue sees them."""
    try:
        offset = float(os.environ.get(OFFSET_VARIABLE) or 0)
    except ValueError:
        offset = 0.0
    return time.time() + offset
