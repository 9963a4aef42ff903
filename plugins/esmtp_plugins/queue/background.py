"""The background run: started, detached, after a message is queued, to deliver it (and whatever else is due);
what it prints goes to ``flush.log`` in the queue directory.

Starting it costs the process that queued the message one ``posix_spawn``; the run itself imports the delivery
code (:mod:`.flush`) in the child.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from typing import TYPE_CHECKING

from esmtp.errors import EX_SOFTWARE, EsmtpError

from . import clock
from .entry import Delivered, Entry
from .settings import Settings
from .store import QueueStore

if TYPE_CHECKING:
    from esmtp.config.model import Config

    from .flush import Flusher

RUNNER_LOCK = "runner.lock"
LOG = "flush.log"
#: flush.log is moved to flush.log.1 when it grows past this.
LOG_MAX = 1 << 20
#: The background run waits this long for more mail (a burst from one script shares the connection).
LINGER = 0.5
_POLL = 0.2
_BACKGROUND = (
    "import sys; from esmtp_plugins.queue.background import background_main; sys.exit(background_main(sys.argv[1:]))"
)


def start_background_run(store: QueueStore, config: Config) -> int | None:
    """Start the detached delivery run unless one is active (it will see our entry); return its pid.

    The child gets the runner lock already taken (an inherited descriptor), runs in its own session with stdin
    from /dev/null and stdout/stderr appended to ``flush.log``. Failing to start it is not an error: the message
    is queued and the next flush sends it.
    """
    try:
        fd = try_lock(os.path.join(store.path, RUNNER_LOCK))
    except OSError:
        return None
    if fd is None:
        return None
    try:
        log = os.path.join(store.path, LOG)
        try:
            if os.stat(log).st_size > LOG_MAX:
                os.replace(log, log + ".1")
        except OSError:
            pass
        os.set_inheritable(fd, True)
        argv = [sys.executable, "-c", _BACKGROUND, config.path or "", store.path, str(fd)]
        pid = os.posix_spawn(
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
    started.append(pid)
    return pid


#: The background runs this process started. A one-message run exits at once (init reaps them); a long-lived one
#: (the warm relay, the system service) calls :func:`reap` now and then, so that they do not stay as zombies.
started: list[int] = []


def reap() -> None:
    """Collect the exit status of the background runs that have ended (never waits)."""
    for pid in list(started):
        try:
            ended, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            ended = pid
        if ended:
            started.remove(pid)


def try_lock(path: str) -> int | None:
    """Take the runner lock without waiting; the fd holds it (None: another run holds it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _background(flusher: Flusher, lock_fd: int) -> None:
    """Deliver what is due, wait ``LINGER`` for more, release the runner lock, and look once more.

    Whoever queues a message either gets the runner lock (and starts a run) or finds it held; in the second case
    the holder's look after releasing sees the new entry. So no new entry is left waiting for the next flush.
    """
    import asyncio

    store = flusher.store
    store.recover([])
    seen: set[str] = set()
    fd: int | None = lock_fd
    try:
        while fd is not None:
            idle_since = time.monotonic()
            while True:
                now = clock.now()
                batch = [e for e in _new_entries(store, seen) if flusher.wanted(e, now)]
                seen.update(e.id for e in batch)
                if batch:
                    await flusher.deliver(batch)
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= LINGER:
                    break
                else:
                    await asyncio.sleep(_POLL)
            await flusher.close()
            os.close(fd)
            fd = None
            if any(e.attempts == 0 for e in _new_entries(store, seen)):
                fd = try_lock(os.path.join(store.path, RUNNER_LOCK))
    finally:
        await flusher.close()
        if fd is not None:
            os.close(fd)


def _new_entries(store: QueueStore, seen: set[str]) -> list[Entry]:
    entries = []
    for entry_id in store.ids():
        if entry_id in seen:
            continue
        try:
            entry = store.load(entry_id)
        except (Delivered, OSError, ValueError, TypeError):
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def background_main(argv: list[str]) -> int:
    """The detached run started after a message is queued: ``CONFIG-PATH QUEUE-DIR LOCK-FD`` (the lock is held).

    Its output goes to ``flush.log`` in the queue directory, never to the terminal of whoever queued the mail.
    """
    config_path, queue_dir, lock_fd = argv
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    # Line by line: whoever waits for the runner lock to be released finds every line in the log by then.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        import asyncio

        from esmtp.config.files import load_config
        from esmtp.plugins import Hooks, make_plugin_manager, resolve_config
        from esmtp.trace import Trace

        from .flush import Flusher

        config = load_config(config_path or None)
        hooks = Hooks(make_plugin_manager(config))
        resolve_config(config, hooks)
        settings = Settings.from_options(config.options)
        store = QueueStore(queue_dir)
        flusher = Flusher(store, settings, config, hooks, Trace(), errors=sys.stdout)
        flusher.start()
        try:
            asyncio.run(_background(flusher, int(lock_fd)))
        finally:
            flusher.finish()
    except EsmtpError as error:
        print(f"{stamp} [{os.getpid()}] background run failed: {error}", flush=True)
        return error.exit_code
    except Exception as error:  # noqa: BLE001  (the log is the only place anybody will see it)
        print(f"{stamp} [{os.getpid()}] background run failed: {type(error).__name__}: {error}", flush=True)
        return EX_SOFTWARE
    report = flusher.report
    if report.delivered or report.deferred or report.failed:
        print(f"{stamp} [{os.getpid()}] {report.summary()}", flush=True)
    return report.exit_code
