"""The queue commands: ``mailq``/``-bp`` (the listing is :mod:`.listing`), ``--remove``, ``-q``/``--flush``/``deliver``.

The flush command decides whether anything is due before it imports the delivery code (:mod:`.flush`), so that a
cron run over an empty or waiting queue stays cheap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from esmtp.errors import EX_NOINPUT, EX_OK, EX_TEMPFAIL, ConfigError
from esmtp.progname import name as program_name

from . import clock
from .entry import is_due
from .settings import Settings, queue_path, settings_for
from .store import QueueStore

if TYPE_CHECKING:
    from esmtp.config.model import Config
    from esmtp.options import Options


def run_command(options: Options, config: Config | None) -> int:
    """Run the queue command of ``options`` on the queue of ``config``; return the exit code."""
    if options.mode == "mailq":  # only the directory: a bad duration elsewhere must not stop the listing
        from .listing import list_json, list_text

        store = QueueStore(queue_path(config.options if config is not None else None), _owner())
        sys.stdout.write((list_json if options.json else list_text)(store, clock.now()))
        return EX_OK
    settings = settings_for(config)
    store = QueueStore(settings.path, _owner())
    if options.mode == "remove":
        return remove(store, options.queue_ids)
    return flush_command(store, settings, options, config)


def _owner() -> int | None:
    """The account whose entries alone a command of the system service sees (None: all, for root or a run of its
    own): :mod:`esmtp.submitter`."""
    from esmtp.submitter import current

    submitter = current.get()
    return None if submitter is None or submitter.is_root else submitter.uid


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
        now = clock.now()
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
