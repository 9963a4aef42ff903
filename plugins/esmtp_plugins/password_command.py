"""``password_command "CMD"`` (alias ``passwordeval``, as in msmtp): the secret is the first line CMD prints.

CMD runs through ``/bin/sh -c`` only when a secret is needed (the server offered AUTH and a mechanism was chosen),
once per process and identity (a queue flush reuses it), bounded by the identity's ``timeout``. Its output is never
logged. Failures: a command that cannot start (or that the shell cannot find) is a configuration error (78, naming
the file and line); a non-zero exit or a time-out is temporary (75: a locked agent or keyring), quoting its stderr.
Only the first line of its output is kept (and the start of its stderr), and its answer is taken as soon as it has
exited: a child it left in the background, holding the pipe, is not waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.errors import ConfigError, EsmtpError, TemporaryFailure
from esmtp.password_sources import PasswordSource
from esmtp.types import KeywordSpec

from .credentials import COMMAND_KEYWORDS, where

if TYPE_CHECKING:
    import subprocess

    from esmtp.config.model import Identity
    from esmtp.trace import Trace
    from esmtp.types import SaslMechanism

DEFAULT_TIMEOUT = 60.0
#: The shell's exit codes for "found but not executable" and "not found" (POSIX 2.8.2).
_NOT_STARTED = {126: "could not be executed", 127: "was not found"}
_STDERR_LIMIT = 500
#: What is kept of each of the command's outputs (stdout: up to its first line end); the rest is read and dropped.
_OUTPUT_LIMIT = 1 << 20
#: How often a command that is still running is looked at (its exit closes no pipe that a child still holds).
_POLL = 0.02

#: Secrets already fetched in this process (a queue flush sends many messages per identity), by the command that
#: printed them and the identity object they were fetched for. An identity object belongs to one loading of the
#: configuration (the warm relay loads the file again when it changes), so a secret never outlives the file that
#: named its command, and an edited command is run afresh. The entry keeps its identity alive, so its ``id`` cannot
#: be reused while the entry exists; a few generations at most are kept.
_fetched: dict[tuple[int, str], tuple[Identity, str]] = {}
_KEEP = 64


def _kill_tree(pid: int) -> None:
    """Kill the shell ``pid`` and everything it started. The command stays in the caller's process group (so that a
    pinentry can still prompt on the terminal), so its descendants are found through /proc before the shell dies and
    they are handed to init."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    with open(f"/proc/{entry.name}/stat", "rb") as stat:
                        ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry.name))
    doomed, pending = [], [pid]
    while pending:
        current = pending.pop()
        doomed.append(current)
        pending.extend(children.get(current, ()))
    for victim in doomed:
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)


def _collect(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, bool]:
    """The command's first line of stdout and the start of its stderr, each bounded (the rest is read and dropped,
    so that the command never blocks on a full pipe), and whether it exited before ``deadline``.

    Done as soon as the command (the shell) has exited: what it wrote is in the pipes by then, and a child it left in
    the background may hold them open for as long as it likes.
    """
    import selectors
    import subprocess

    assert proc.stdout is not None and proc.stderr is not None
    kept = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            exited = proc.poll() is not None
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready = selector.select(0 if exited else min(left, _POLL))
            if exited and not ready:
                break  # everything the command wrote has been read
            for key, _ in ready:
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = kept[key.fd]
                if len(buffer) < _OUTPUT_LIMIT and (key.fd != proc.stdout.fileno() or b"\n" not in buffer):
                    buffer += chunk[: _OUTPUT_LIMIT - len(buffer)]
        if proc.poll() is None and not selector.get_map():  # both pipes closed: the shell is on its way out
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
    return bytes(kept[proc.stdout.fileno()]), bytes(kept[proc.stderr.fileno()]), proc.poll() is not None


def run_secret_command(command: str, *, keyword: str, location: str, timeout: float) -> str:
    """Run ``command`` through /bin/sh and return the first line of its output, CR/LF stripped.

    Errors name ``keyword`` and ``location`` (file:line) and quote stderr, never stdout.
    """
    import subprocess

    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as error:
        raise ConfigError(f"{location}: {keyword} could not be started: {error.strerror or error}") from None
    with proc:
        stdout, stderr_bytes, exited = _collect(proc, time.monotonic() + timeout)
        if not exited:
            _kill_tree(proc.pid)
            proc.wait()
            raise TemporaryFailure(
                f"{location}: {keyword} did not finish within {timeout:g} s (see 'timeout')"
            ) from None
    stderr = stderr_bytes.decode("utf-8", "replace").strip()
    said = f": {stderr[:_STDERR_LIMIT]}" if stderr else " (it wrote nothing to stderr)"
    if proc.returncode in _NOT_STARTED:
        raise ConfigError(f"{location}: {keyword} {_NOT_STARTED[proc.returncode]} (exit {proc.returncode}){said}")
    if proc.returncode != 0:
        status = f"exit status {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        raise TemporaryFailure(f"{location}: {keyword} failed with {status}{said}")
    first = stdout.split(b"\n", 1)[0].rstrip(b"\r\n")
    if not first:
        raise TemporaryFailure(f"{location}: {keyword} printed no secret (its first line of output is empty)")
    return first.decode("utf-8", "surrogateescape")


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    """``password_command`` and its msmtp spelling ``passwordeval``; neither goes with ``password`` or the other."""
    return [
        KeywordSpec(keyword, secret=True, conflicts=("password", *COMMAND_KEYWORDS),
                    help="a shell command whose first line of output is the password or token")
        for keyword in COMMAND_KEYWORDS
    ]


@hookimpl
def esmtp_secret(identity: Identity, mechanism: SaslMechanism, trace: Trace) -> str | None:
    """The command's output, when the identity has ``password_command``/``passwordeval`` (run once per identity)."""
    keyword = next((name for name in COMMAND_KEYWORDS if name in identity.options), None)
    if keyword is None:
        return None
    command = identity.options[keyword]
    key = (id(identity), command)
    cached = _fetched.get(key)
    if cached is not None and cached[0] is identity:
        return cached[1]
    location = where(identity, keyword)
    trace.info(f"running {keyword} ({location}) for the {mechanism.name} secret")
    timeout = float(identity.options.get("timeout") or DEFAULT_TIMEOUT)
    secret = run_secret_command(command, keyword=keyword, location=location, timeout=timeout)
    while len(_fetched) >= _KEEP:
        del _fetched[next(iter(_fetched))]
    _fetched[key] = (identity, secret)
    return secret


@hookimpl
def esmtp_password_source(identity: Identity) -> PasswordSource | None:
    """``--pretend``/``--check``: the command that would supply the secret; only ``--check --secrets`` runs it (its
    output is thrown away)."""
    keyword = next((name for name in COMMAND_KEYWORDS if name in identity.options), None)
    if keyword is None:
        return None
    command, location = identity.options[keyword], where(identity, keyword)

    def check(secrets: bool) -> str:
        if not secrets:
            return ""
        try:
            run_secret_command(command, keyword=keyword, location=location,
                               timeout=float(identity.options.get("timeout") or DEFAULT_TIMEOUT))
        except EsmtpError as error:
            return str(error)
        return ""

    return PasswordSource(keyword, f"{keyword} `{command}` ({location})", check)
