"""``rate_limit N/minute|hour|day``: at most N messages per identity in any window of that length.

The count is shared by every process of the user (a send, the warm relay, a queue flush, ``-bs``, a system service
running as the same user): it lives in a file, ``$XDG_STATE_HOME/esmtp/rate/<identity>`` (else
``~/.local/state/esmtp/rate/``), one send time per line, read and rewritten under an exclusive ``flock`` — process
memory would let two processes each send N. A message takes its slot before the connection is opened (so two
processes can never both take the last one) and gives it back when nothing of it reached the server (a connection
that failed, a refused sender): only what the server may have accepted counts.

Over the limit a send is a temporary failure (:class:`RateLimited`, 75) naming the limit and when a slot frees; with
the queue the message waits there, and the flush defers each entry until then.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from esmtp.errors import TemporaryFailure

if TYPE_CHECKING:
    from esmtp.config.model import Identity

PERIODS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
#: The largest N: the file holds one line per message of the window.
MAX_COUNT = 100_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    count: int
    period: float
    text: str


class RateLimited(TemporaryFailure):
    """Over the identity's ``rate_limit``; ``retry_after`` seconds until a slot frees."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_rate_limit(value: str) -> RateLimit:
    """``N/minute``, ``N/hour`` or ``N/day``. Raises ValueError saying what is wrong."""
    count, slash, unit = value.partition("/")
    if not slash or unit not in PERIODS or not (count.isascii() and count.isdigit()):
        raise ValueError(f"'rate_limit' takes N/minute, N/hour or N/day (such as 100/hour), not '{value}'")
    number = int(count)
    if not 1 <= number <= MAX_COUNT:
        raise ValueError(f"'rate_limit' takes a number of messages from 1 to {MAX_COUNT}, not {count}")
    return RateLimit(number, PERIODS[unit], value)


def limit_of(identity: Identity) -> RateLimit | None:
    value = identity.options.get("rate_limit")
    return None if value is None else parse_rate_limit(value)


def _directory() -> str:
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG rule: a relative value is invalid and ignored
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "esmtp", "rate")


def counter_path(identity: Identity) -> str:
    """The identity's counter file: named after its address (or ``global``), anything unusual escaped."""
    name = identity.address or "global"
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "@.+-_") else f"%{ord(c):02X}" for c in name)
    return os.path.join(_directory(), safe)


def _locked(path: str) -> int:
    import fcntl

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read(fd: int, now: float, period: float) -> list[float]:
    """The send times of the window (later ones too: a clock set back does not free slots); bad lines ignored."""
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    times = []
    for line in data.split(b"\n"):
        try:
            stamp = float(line)
        except ValueError:
            continue
        if stamp > now - period:
            times.append(stamp)
    return times


def _write(fd: int, times: list[float]) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, "".join(f"{stamp:.6f}\n" for stamp in times).encode())


def take(identity: Identity, now: float | None = None) -> float | None:
    """Take a slot of the identity's ``rate_limit`` for one message; return its stamp (for :func:`give_back`), or
    None when the identity has no limit. Raises RateLimited when the window is full."""
    limit = limit_of(identity)
    if limit is None:
        return None
    path = counter_path(identity)
    try:
        fd = _locked(path)
    except OSError as error:
        raise TemporaryFailure(f"rate_limit {limit.text}: cannot use the counter {path}: "
                               f"{error.strerror or error}") from None
    try:
        now = time.time() if now is None else now
        times = _read(fd, now, limit.period)
        if len(times) >= limit.count:
            free = max(1.0, min(times) + limit.period - now)
            who = identity.address or "the global section"
            raise RateLimited(
                f"rate_limit {limit.text} of {who} reached ({len(times)} messages in the last "
                f"{_unit(limit.period)}); the next one may go in {_duration(free)}", free)
        times.append(now)
        _write(fd, times)
        return now
    finally:
        os.close(fd)


def give_back(identity: Identity, stamp: float | None) -> None:
    """Return the slot taken at ``stamp``: nothing of the message reached the server. Errors are ignored (the slot
    then stays taken, which only delays a later message)."""
    limit = limit_of(identity)
    if stamp is None or limit is None:
        return
    try:
        fd = _locked(counter_path(identity))
    except OSError:
        return
    try:
        times = _read(fd, time.time(), limit.period)
        for index, value in enumerate(times):
            if abs(value - stamp) < 1e-6:
                del times[index]
                break
        _write(fd, times)
    except OSError:
        pass
    finally:
        os.close(fd)


def take_slot(identity: Identity) -> float | None:
    """:func:`take` for callers that must not import this module for identities without a limit (most)."""
    return take(identity) if "rate_limit" in identity.options else None


def _unit(period: float) -> str:
    return next(name for name, seconds in PERIODS.items() if seconds == period)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
