"""Built-in plugin 'queue': a durable mail queue with retry, expiry and bounces (see docs/queue.md).

``queue always`` stores every message and exits 0 once it is safely on disk; a detached background run then
delivers it. ``queue fallback`` delivers directly and stores the message only when delivery fails temporarily.
``mailq``/``-bp`` list the queue, ``-q``/``--flush``/``deliver`` deliver it now, ``--remove`` deletes entries.

Queueing a message must stay fast and must not import asyncio, ssl or the SMTP client: this module and
:mod:`queue_store` use only the standard library's light modules; :mod:`queue_flush` is imported for flushes only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.config import KeywordSpec
from esmtp.errors import EX_CANTCREAT, EX_NOINPUT, EX_OK, EX_TEMPFAIL, ConfigError, EsmtpError, LocalDeliveryError

from .queue_store import Entry, ErrorKind, QueueStore, Settings, is_due, new_id

if TYPE_CHECKING:
    from esmtp.config import Config
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.types import DeliveryResult, Envelope

RUNNER_LOCK = "runner.lock"
LOG = "flush.log"
#: flush.log is moved to flush.log.1 when it grows past this.
LOG_MAX = 1 << 20
_BACKGROUND = (
    "import sys; from esmtp_plugins.queue_flush import background_main; sys.exit(background_main(sys.argv[1:]))"
)


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


def settings_for(config: Config | None) -> Settings:
    return Settings.from_options(config.options if config is not None else None)


# ---- queueing ------------------------------------------------------------------------------------------------------


def _error_kind(error: EsmtpError) -> ErrorKind:
    if getattr(error, "code", None) or hasattr(error, "rejected"):
        return "reply"
    return "local" if isinstance(error, LocalDeliveryError) else "connect"


@hookimpl
def esmtp_queue_message(
    envelope: Envelope, message: Message, recipients: list[str], config: Config, error: EsmtpError | None
) -> str | None:
    """Store the message (``always``: every message; ``fallback``: after a temporary failure)."""
    settings = settings_for(config)
    if settings.mode == "disabled" or (error is None and settings.mode != "always"):
        return None
    store = QueueStore(settings.path)
    now = time.time()
    head = message.header_bytes()
    head_block = head + message.newline if head else b""
    entry = Entry(
        id=new_id(),
        sender=envelope.sender,
        recipients=list(recipients),
        identity=envelope.identity.address,
        created=now,
        size=0,
        header_size=len(head_block),
        newline=message.newline.decode("ascii"),
        eight_bit=message.eight_bit,
        full_name=envelope.full_name,
        notify=envelope.notify,
        ret=envelope.ret,
        envid=envelope.envid,
        body_type=envelope.body_type,
        from_headers=envelope.from_headers,
        given_sender=envelope.given_sender,
        next_retry=now,
    )
    if error is not None:
        entry.attempts = 1
        entry.last_attempt = now
        entry.last_error = " ".join(str(error).split())
        entry.last_error_kind = _error_kind(error)
        entry.next_retry = now + settings.backoff(1)
    try:
        store.enqueue(entry, [head_block, message.body_path])
    except OSError as failure:
        why = failure.strerror or str(failure)
        if error is not None:
            raise EsmtpError(f"{error}\nand the message could not be queued in {store.path}: {why}",
                             exit_code=EX_TEMPFAIL) from None
        raise EsmtpError(f"the message could not be queued in {store.path}: {why}; it was not sent",
                         exit_code=EX_CANTCREAT) from None
    if error is None:
        start_background_run(store, config)
    return entry.id


@hookimpl
def esmtp_after_deliver(results: list[DeliveryResult], config: Config) -> None:
    """``fallback``: a message just went out directly, so the smarthost is reachable: send what waits (as msmtpq)."""
    if "esmtp_plugins.queue_flush" in sys.modules:  # a flush is delivering: it is the one calling
        return
    if not any(r.agent == "smtp" and not r.detail.startswith("queued as") for r in results):
        return
    settings = settings_for(config)
    if settings.mode != "fallback":
        return
    store = QueueStore(settings.path)
    if store.ids():
        start_background_run(store, config)


def start_background_run(store: QueueStore, config: Config) -> int | None:
    """Start the detached delivery run unless one is active (it will see our entry); return its pid.

    The child gets the runner lock already taken (an inherited descriptor), runs in its own session with stdin
    from /dev/null and stdout/stderr appended to ``flush.log``. Failing to start it is not an error: the message
    is queued and the next flush sends it.
    """
    import fcntl

    lock_path = os.path.join(store.path, RUNNER_LOCK)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        log = os.path.join(store.path, LOG)
        try:
            if os.stat(log).st_size > LOG_MAX:
                os.replace(log, log + ".1")
        except OSError:
            pass
        os.set_inheritable(fd, True)
        argv = [sys.executable, "-c", _BACKGROUND, config.path or "", store.path, str(fd)]
        return os.posix_spawn(
            sys.executable, argv, os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except OSError:
        return None
    finally:
        os.close(fd)


# ---- commands ------------------------------------------------------------------------------------------------------


@hookimpl
def esmtp_queue_command(options: Options, config: Config | None) -> int:
    """``mailq``/``-bp``, ``-q``/``--flush``/``deliver`` and ``--remove``. Works on the queue directory even when
    queueing is disabled, so that mail queued earlier is never stranded."""
    settings = settings_for(config)
    store = QueueStore(settings.path)
    if options.mode == "mailq":
        sys.stdout.write(list_queue(store, time.time()))
        return EX_OK
    if options.mode == "remove":
        return _remove(store, options.queue_ids)
    return _flush(store, settings, options, config)


def _remove(store: QueueStore, ids: list[str]) -> int:
    code = EX_OK
    for entry_id in ids:
        outcome = store.remove(entry_id)
        if outcome == "removed":
            print(f"{entry_id}: removed")
        elif outcome == "busy":
            sys.stderr.write(f"esmtp: {entry_id}: being delivered right now; not removed\n")
            code = EX_TEMPFAIL
        else:
            sys.stderr.write(f"esmtp: no queue entry {entry_id}\n")
            code = code or EX_NOINPUT
    return code


def _flush(store: QueueStore, settings: Settings, options: Options, config: Config | None) -> int:
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

    from .queue_flush import flush

    hooks = Hooks(make_plugin_manager(config))
    trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    try:
        report = flush(store, settings, config, hooks, trace, selected=selected)
    finally:
        trace.close()
    for entry_id in report.missing:
        sys.stderr.write(f"esmtp: no queue entry {entry_id}\n")
    if options.verbose or (sys.stderr.isatty() and report.delivered + report.deferred + report.failed):
        sys.stderr.write(f"esmtp: queue: {report.summary()}\n")
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
