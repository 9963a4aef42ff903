"""The queue commands: ``mailq``/``-bp`` (the listing), ``--remove``, and ``-q``/``--flush``/``deliver``.

The flush command decides whether anything is due before it imports the delivery code (:mod:`.flush`), so that a
cron run over an empty or waiting queue stays cheap.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from esmtp.errors import EX_NOINPUT, EX_OK, EX_TEMPFAIL, ConfigError
from esmtp.progname import name as program_name

from .entry import Entry, is_due
from .settings import Settings, settings_for
from .store import QueueStore

if TYPE_CHECKING:
    from esmtp.config import Config
    from esmtp.options import Options


def run_command(options: Options, config: Config | None) -> int:
    """Run the queue command of ``options`` on the queue of ``config``; return the exit code."""
    settings = settings_for(config)
    store = QueueStore(settings.path)
    if options.mode == "mailq":
        sys.stdout.write(list_queue(store, time.time()))
        return EX_OK
    if options.mode == "remove":
        return remove(store, options.queue_ids)
    return flush_command(store, settings, options, config)


def remove(store: QueueStore, ids: list[str]) -> int:
    """``--remove``: delete the entries (queued or failed) that no flush is delivering right now."""
    code = EX_OK
    for entry_id in ids:
        outcome = store.remove(entry_id)
        if outcome == "removed":
            print(f"{entry_id}: removed")
        elif outcome == "busy":
            sys.stderr.write(f"{program_name()}: {entry_id}: being delivered right now; not removed\n")
            code = EX_TEMPFAIL
        else:
            sys.stderr.write(f"{program_name()}: no queue entry {entry_id}\n")
            code = code or EX_NOINPUT
    return code


def flush_command(store: QueueStore, settings: Settings, options: Options, config: Config | None) -> int:
    """``-q``/``--flush``/``deliver``: deliver the due entries (or the ones named) in the foreground."""
    selected = list(options.queue_ids) or None
    if selected is None:
        now = time.time()
        delivered: list[str] = []
        if not any(is_due(entry, now) for entry in store.scan(delivered=delivered)) and not delivered:
            store.collect_garbage()  # crash left-overs of enqueues that never completed
            return EX_OK  # nothing due: do not pay for the SMTP machinery (a cron run is then cheap)
    if config is None:
        raise ConfigError("no configuration file was found, so the queue cannot be delivered")
    from esmtp.plugins import Hooks, make_plugin_manager
    from esmtp.trace import Trace

    from .flush import flush

    hooks = Hooks(make_plugin_manager(config))
    trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    try:
        report = flush(store, settings, config, hooks, trace, selected=selected)
    finally:
        trace.close()
    for entry_id in report.missing:
        sys.stderr.write(f"{program_name()}: no queue entry {entry_id}\n")
    if options.verbose or (sys.stderr.isatty() and report.delivered + report.deferred + report.failed):
        sys.stderr.write(f"{program_name()}: queue: {report.summary()}\n")
    return report.exit_code


# ---- mailq ---------------------------------------------------------------------------------------------------------

def _size(size: int) -> str:
    for unit in ("", "K", "M"):
        if size < 1024 or unit == "M":
            return f"{size}{unit}" if not unit else f"{size:.1f}{unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def _describe(entry: Entry, now: float, *, failed: bool) -> list[str]:
    sender = f"<{entry.sender}>"
    lines = [f"{entry.id}  {_size(entry.size):>6}  {_span(now - entry.created):>4} old  from {sender}"]
    if entry.recipients:
        lines.append(f"    to: {', '.join(entry.recipients)}")
    if entry.delivered:
        lines.append(f"    delivered: {', '.join(entry.delivered)}")
    if failed:
        for recipient, reason in entry.failed.items():
            lines.append(f"    failed: {recipient}: {reason}")
        return lines
    if entry.attempts:
        wait = entry.next_retry - now
        when = "next flush" if entry.last_error_kind == "connect" or wait <= 0 else f"in {_span(wait)}"
        lines.append(f"    attempts: {entry.attempts}, next retry: {when}")
        lines.append(f"    last error: {entry.last_error}")
    else:
        lines.append("    not tried yet")
    return lines


def list_queue(store: QueueStore, now: float) -> str:
    """The ``mailq`` text: queued entries (id, size, age, sender, recipients, attempts, retry, error), then the
    failed area. Prints "Mail queue is empty" as esmtp 1.2 did when nothing is queued."""
    out: list[str] = []
    unreadable: list[str] = []
    entries = list(store.scan(unreadable=unreadable))
    total = sum(entry.size for entry in entries)
    if entries:
        for entry in entries:
            out += _describe(entry, now, failed=False)
        plural = "s" if len(entries) != 1 else ""
        out.append(f"-- {len(entries)} message{plural}, {_size(total)}, in {store.path}")
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
