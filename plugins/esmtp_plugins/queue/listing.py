"""``mailq``/``-bp``: the queue for people (sizes with units, the next try as a time) or, with ``--json``, for scripts.

The text keeps esmtp 1.2's "Mail queue is empty". The JSON document is one object: ``queue_dir``, ``entries``
(queued, oldest first), ``failed`` (the failed area) and ``unreadable`` (ids whose envelope could not be read); each
entry holds its id, sizes in bytes, times as ISO 8601 and Unix seconds, sender, recipients and delivery state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .entry import Entry
    from .store import QueueStore


def size_text(size: int) -> str:
    """Bytes with a unit: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def span_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def _clock(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp))


def next_try(entry: Entry, now: float) -> float | None:
    """When the entry is tried next: None for "at the next flush" (due now, or its server was out of reach, which
    every flush tries again)."""
    if entry.last_error_kind == "connect" or entry.next_retry <= now:
        return None
    return entry.next_retry


def _describe(entry: Entry, now: float, *, failed: bool) -> list[str]:
    lines = [f"{entry.id}  {size_text(entry.size):>9}  queued {_clock(entry.created)} ({span_text(now - entry.created)}"
             f" ago)  from <{entry.sender}>"]
    if entry.recipients:
        lines.append(f"    to: {', '.join(entry.recipients)}")
    if entry.delivered:
        lines.append(f"    delivered: {', '.join(entry.delivered)}")
    if failed:
        lines += [f"    failed: {recipient}: {reason}" for recipient, reason in entry.failed.items()]
        return lines
    if entry.attempts:
        when = next_try(entry, now)
        shown = "at the next flush" if when is None else f"{_clock(when)} (in {span_text(when - now)})"
        lines.append(f"    attempts: {entry.attempts}, last {_clock(entry.last_attempt or entry.created)}, "
                     f"next try: {shown}")
        lines.append(f"    last error: {entry.last_error}")
    else:
        lines.append("    not tried yet: at the next flush")
    return lines


def list_text(store: QueueStore, now: float) -> str:
    """The ``mailq`` text: queued entries, a total, then the failed area."""
    out: list[str] = []
    unreadable: list[str] = []
    entries = list(store.scan(unreadable=unreadable))
    if entries:
        for entry in entries:
            out += _describe(entry, now, failed=False)
        plural = "s" if len(entries) != 1 else ""
        total = sum(entry.size for entry in entries)
        out.append(f"-- {len(entries)} message{plural}, {size_text(total)}, in {store.path}")
    else:
        out.append("Mail queue is empty")
    if unreadable:
        out.append(f"-- entries that could not be read (see {store.path}): {', '.join(unreadable)}")
    failed = list(store.scan(failed=True))
    if failed:
        out.append("")
        out.append(f"Failed permanently (kept in {store.failed_dir}; esmtp --remove ID deletes one):")
        for entry in failed:
            out += _describe(entry, now, failed=True)
    return "\n".join(out) + "\n"


def _record(entry: Entry, now: float) -> dict[str, Any]:
    when = next_try(entry, now)
    return {
        "id": entry.id, "size": entry.size, "created": _iso(entry.created), "created_unix": entry.created,
        "sender": entry.sender, "recipients": list(entry.recipients), "delivered": list(entry.delivered),
        "failed": dict(entry.failed), "identity": entry.identity, "attempts": entry.attempts,
        "last_attempt": _iso(entry.last_attempt), "last_error": entry.last_error,
        "next_try": _iso(when) if when is not None else "next flush", "next_try_unix": when,
        "bounce_of": entry.bounce_of,
    }


def list_json(store: QueueStore, now: float) -> str:
    """``mailq --json``: the queue as one JSON document (see the module docstring)."""
    import json

    unreadable: list[str] = []
    queued = [_record(entry, now) for entry in store.scan(unreadable=unreadable)]
    failed = [_record(entry, now) for entry in store.scan(failed=True)]
    document = {"queue_dir": store.path, "entries": queued, "failed": failed, "unreadable": unreadable}
    return json.dumps(document, indent=2) + "\n"
