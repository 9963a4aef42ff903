"""Built-in plugin 'queue': a durable mail queue with retry, expiry and bounces (see docs/queue.md).

``queue always`` stores every message and exits 0 once it is safely on disk; a detached background run then
delivers it. ``queue fallback`` delivers directly and stores the message only when delivery fails temporarily.
``mailq``/``-bp`` list the queue, ``-q``/``--flush``/``deliver`` deliver it now, ``--remove`` deletes entries.

This module holds the hook implementations only. The package, one job per module:

* :mod:`.settings`: the keywords' values and durations;
* :mod:`.store`: entries, claims and the queue directory (crash-safe state changes);
* :mod:`.commands`: ``mailq``, ``--remove`` and the flush command;
* :mod:`.listing`: the ``mailq`` text and its ``--json`` form;
* :mod:`.background`: the detached run started after queueing, and its log;
* :mod:`.flush`: the scheduler that delivers entries, and its reports;
* :mod:`.sessions`: entries grouped by connection, one SMTP session per group;
* :mod:`.message`: a queued message read back for sending;
* :mod:`.tidier`: the worker that removes delivered entries;
* :mod:`.bounce`: delivery status notifications.

Queueing a message must stay fast and must not import asyncio, ssl or the SMTP client: this module, settings,
store, commands and background use only the standard library's light modules; the delivery modules (flush,
sessions, message, tidier, bounce) are imported for flushes only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.errors import EX_CANTCREAT, EsmtpError
from esmtp.types import KeywordSpec

from . import clock
from .settings import settings_for

if TYPE_CHECKING:
    from esmtp.config.model import Config
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.types import DeliveryResult, Envelope

#: Imported by flushes only: while it is loaded, the process is a flush.
FLUSH_MODULE = f"{__name__}.flush"


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    """The queue's keywords (all global)."""
    return [
        KeywordSpec("queue", scope="global", choices=("disabled", "fallback", "always"),
                    help="disabled: deliver directly; fallback: queue when delivery fails temporarily; "
                         "always: queue every message and deliver in the background"),
        KeywordSpec("queue_dir", scope="global",
                    help="queue directory (default $XDG_STATE_HOME/esmtp/queue); ESMTP_QUEUE_DIR overrides it"),
        KeywordSpec("queue_max_age", scope="global", help="lifetime of a queued message before it bounces (5d)"),
        KeywordSpec("queue_retry", scope="global", help="first retry delay, doubled after each failure (5m)"),
        KeywordSpec("queue_retry_max", scope="global", help="longest retry delay (4h)"),
        KeywordSpec("queue_concurrency", scope="global", help="smarthosts delivered to at once by a flush (4)"),
        KeywordSpec("bounce", scope="global", choices=("enabled", "disabled"),
                    help="send a delivery status notification to the sender when a queued message fails"),
    ]


@hookimpl
def esmtp_queue_message(
    envelope: Envelope, message: Message, recipients: list[str], config: Config, error: EsmtpError | None
) -> str | None:
    """Store the message (``always``: every message; ``fallback``: after a temporary failure)."""
    settings = settings_for(config)
    if settings.mode == "disabled" or (error is None and settings.mode != "always"):
        return None
    from .entry import Entry, error_kind, new_id  # here: a message sent at once needs neither (about 2 ms)
    from .store import QueueStore

    store = QueueStore(settings.path)
    now = clock.now()
    head = message.header_bytes()
    head_block = head + message.newline if head else b""
    entry = Entry.from_envelope(
        envelope, recipients, id=new_id(), created=now, size=0, header_size=len(head_block),
        newline=message.newline.decode("ascii"), eight_bit=message.eight_bit, next_retry=now,
    )
    if error is not None:
        entry.attempts = 1
        entry.last_attempt = now
        entry.last_error = " ".join(str(error).split())
        entry.last_error_kind = error_kind(error)
        entry.next_retry = now + settings.backoff(1)
    try:
        store.enqueue(entry, [head_block, message.body_path])
    except OSError as failure:
        why = failure.strerror or str(failure)
        if error is not None:
            raise EsmtpError(f"{error}\nand the message could not be queued in {store.path}: {why}",
                             temporary=True) from None
        raise EsmtpError(f"the message could not be queued in {store.path}: {why}; it was not sent",
                         exit_code=EX_CANTCREAT) from None
    if error is None:
        from .background import start_background_run

        start_background_run(store, config)
    return entry.id


@hookimpl
def esmtp_after_deliver(results: list[DeliveryResult], config: Config) -> None:
    """``fallback``: a message just went out directly, so the smarthost is reachable: send what waits (as msmtpq)."""
    if FLUSH_MODULE in sys.modules:  # a flush is delivering: it is the one calling
        return
    if not any(r.agent == "smtp" and not r.detail.startswith("queued as") for r in results):
        return
    settings = settings_for(config)
    if settings.mode != "fallback":
        return
    from .store import QueueStore

    store = QueueStore(settings.path)
    if store.ids():
        from .background import start_background_run

        start_background_run(store, config)


@hookimpl
def esmtp_queue_command(options: Options, config: Config | None) -> int:
    """``mailq``/``-bp``, ``-q``/``--flush``/``deliver`` and ``--remove``. Works on the queue directory even when
    queueing is disabled, so that mail queued earlier is never stranded."""
    from .commands import run_command

    return run_command(options, config)


@hookimpl
def esmtp_check_config(config: Config) -> None:
    """``esmtp --check``: the durations and numbers of the queue keywords, as a queueing run would read them."""
    settings_for(config)
