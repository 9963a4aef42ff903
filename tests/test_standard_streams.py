"""Every entry point with each standard stream closed, /dev/null, or a pipe closed at the other end (and stdout a
read-only pipe, as GNU mailutils' ``mail`` leaves it): a message that was delivered exits 0, once, never a false
failure that makes the user send again."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from relay_support import start_relay, stop_relays
from support import Runner, SmtpServer, entry_point

MESSAGE = b"From: a@example.org\nTo: b@example.net\nSubject: streams\n\nbody\n"
#: entry point → arguments; the first two send a message.
PROGRAMS = {"sendmail": ["b@example.net"], "esmtp": ["b@example.net"], "mailq": [], "newaliases": [], "deliver": []}


@contextmanager
def closed(fd: int) -> Iterator[tuple[int | None, Callable[[], None] | None]]:
    yield None, lambda: os.close(fd)


@contextmanager
def devnull(fd: int) -> Iterator[tuple[int | None, Callable[[], None] | None]]:
    yield subprocess.DEVNULL, None


@contextmanager
def broken_pipe(fd: int) -> Iterator[tuple[int | None, Callable[[], None] | None]]:
    """A pipe whose other end is already closed: EOF for stdin, EPIPE for stdout and stderr."""
    read_end, write_end = os.pipe()
    ours, theirs = (write_end, read_end) if fd == 0 else (read_end, write_end)
    os.close(ours)
    try:
        yield theirs, None
    finally:
        os.close(theirs)


@contextmanager
def read_only_pipe(fd: int) -> Iterator[tuple[int | None, Callable[[], None] | None]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, None
    finally:
        os.close(read_end)
        os.close(write_end)


STATES = {"closed": closed, "devnull": devnull, "broken-pipe": broken_pipe, "read-only-pipe": read_only_pipe}
CASES = [(fd, state) for fd in (0, 1, 2) for state in STATES if state != "read-only-pipe" or fd == 1]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize(("fd", "state"), CASES, ids=[f"{('stdin', 'stdout', 'stderr')[fd]}-{s}" for fd, s in CASES])
def test_unusable_standard_stream(run: Runner, smtp_server: SmtpServer, program: str, fd: int, state: str) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\n")
    streams: list[int | None] = [subprocess.PIPE, subprocess.PIPE, subprocess.PIPE]
    with STATES[state](fd) as (stream, preexec):
        streams[fd] = stream
        process = subprocess.Popen([entry_point(program), *PROGRAMS[program]], stdin=streams[0], stdout=streams[1],
                                   stderr=streams[2], env=run.env(), preexec_fn=preexec)
        _, stderr = process.communicate(MESSAGE if streams[0] == subprocess.PIPE else None, timeout=60)
    text = (stderr or b"").decode("utf-8", "replace")
    assert process.returncode == 0, text
    assert "Traceback" not in text and "internal error" not in text and "Exception ignored" not in text
    sends = PROGRAMS[program] != []
    assert len(smtp_server.sink.messages) == (1 if sends else 0)


def test_gnu_mailutils_way(run: Runner, smtp_server: SmtpServer) -> None:
    """mail(1) from GNU mailutils: stdin the message, stdout a read-only pipe, stderr closed."""
    run.write_config(f"hostname {smtp_server.hostport}\n")
    with read_only_pipe(1) as (stdout, _):
        process = subprocess.run([entry_point("sendmail"), "-oi", "-t"], input=MESSAGE, stdout=stdout,
                                 env=run.env(), preexec_fn=lambda: os.close(2), timeout=60)
    assert process.returncode == 0
    [received] = smtp_server.sink.messages
    assert received.rcpt_tos == ["b@example.net"]


@pytest.mark.parametrize("closed_fds", [(1,), (2,), (1, 2), (0, 1, 2)], ids=["stdout", "stderr", "both", "all"])
def test_closed_streams_through_the_warm_relay(tmp_path: Path, smtp_server: SmtpServer,
                                               closed_fds: tuple[int, ...]) -> None:
    """The front end hands the run to a resident process: closed descriptors still give the true exit code, and
    the spooled message never lands on a standard descriptor."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    run = Runner(home, {"ESMTP_RELAY_DAEMON": "1"})
    run.write_config(f"hostname {smtp_server.hostport}\n")
    start_relay(run)
    try:
        def close() -> None:
            for fd in closed_fds:
                os.close(fd)

        started = time.monotonic()
        process = subprocess.run([entry_point("sendmail"), "b@example.net"], input=None if 0 in closed_fds else MESSAGE,
                                 capture_output=False, env=run.env(), preexec_fn=close, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        stop_relays(run.runtime)
    assert process.returncode == 0
    assert elapsed < 15  # (with descriptor 0 closed, the socket or spool once landed there and the run hung 30 s)
    assert len(smtp_server.sink.messages) == 1


def test_reader_leaving_early_is_not_an_error(run: Runner) -> None:
    """``esmtp --check | head -1``: the reader closes the pipe after its first line. What is written after that goes
    nowhere, quietly, and the command's own exit code stands (no ``internal error: BrokenPipeError``)."""
    run.write_config("".join(f"\nidentity user{n}@example.org\nhostname 127.0.0.1:{1000 + n}\n" for n in range(3000)))
    process = subprocess.Popen([entry_point("esmtp"), "--check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=run.env())  # far more output than a pipe holds
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as head -1 does
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr
    assert first.startswith(b"ok ") and stderr == ""
