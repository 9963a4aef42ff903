"""The queue under stress: concurrent flushers, and kill -9 at named points and at random moments of enqueue and flush.

Invariants checked: nothing accepted (exit 0) is ever lost; a message is sent twice only when the kill landed
between the final dot and the removal of its entry (the documented window), so never more duplicates than kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from esmtp_plugins.queue.entry import Entry, new_id
from esmtp_plugins.queue.store import GARBAGE_AGE, QueueStore
from support import Runner, Sink, SmtpServer, _Controller, _Handler, entry_point, free_port
from test_queue import entries, qdir, subjects, wait_for_runner


class SlowHandler(_Handler):
    """Takes ``delay`` seconds before answering the final dot, like a real relay that scans the mail."""

    def __init__(self, sink: Sink, delay: float) -> None:
        super().__init__(sink)
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_server() -> Iterator[SmtpServer]:
    sink = Sink()
    controller = _Controller(sink, users=None)
    controller.handler = SlowHandler(sink, 0.003)
    controller.start()
    sink.clear()
    yield SmtpServer("127.0.0.1", controller.port, sink, controller)
    controller.stop()


def fill(run: Runner, count: int, recipients: tuple[str, ...] = ("bob@example.net",), prefix: str = "m") -> list[str]:
    """Queue ``count`` entries directly through the store (the format the plugin writes), quickly."""
    store = QueueStore(str(qdir(run)))
    ids = []
    for index in range(count):
        head = (f"From: alice@example.org\nTo: bob@example.net\nSubject: {prefix}{index}\n"
                f"Message-ID: <{prefix}{index}@test.example>\n\n").encode()
        entry = Entry(id=new_id(), sender="alice@example.org", recipients=list(recipients), identity=None,
                      created=time.time(), size=0, header_size=len(head))
        ids.append(store.enqueue(entry, [head, f"body {index}\n".encode()]).id)
    return ids


def flush_command(run: Runner, crash_at: str = "") -> subprocess.Popen[bytes]:
    env = run.env(ESMTP_QUEUE_CRASH_AT=crash_at) if crash_at else run.env()
    return subprocess.Popen([entry_point("esmtp"), "--flush"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def configure(run: Runner, port: int, extra: str = "") -> None:
    run.write_config(f"hostname 127.0.0.1:{port}\nqueue always\n{extra}")


# ---- concurrent flushers -------------------------------------------------------------------------------------------


def test_concurrent_flushers_never_send_the_same_message_twice(run: Runner, slow_server: SmtpServer) -> None:
    configure(run, slow_server.port)
    fill(run, 200)
    flushers = [flush_command(run) for _ in range(4)]
    for proc in flushers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert subjects(slow_server) == {f"m{i}": 1 for i in range(200)}
    assert slow_server.sink.connections >= 2  # they really ran at the same time
    assert entries(run) == []


def test_flusher_and_background_runs_share_the_work(run: Runner, slow_server: SmtpServer) -> None:
    configure(run, slow_server.port)
    fill(run, 100)
    flusher = flush_command(run)
    for index in range(5):  # each may start a background run, racing the flusher for the same entries
        assert run("bob@example.net", input=f"Subject: new{index}\n\nx\n".encode()).returncode == 0
    flusher.communicate(timeout=120)
    wait_for_runner(run)
    run("-q")
    expected = {f"m{i}": 1 for i in range(100)} | {f"new{i}": 1 for i in range(5)}
    assert subjects(slow_server) == expected


def test_progress_bar_on_a_terminal_only(run: Runner, smtp_server: SmtpServer) -> None:
    configure(run, smtp_server.port)
    fill(run, 30)
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run([entry_point("esmtp"), "--flush"], env=run.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=terminal, timeout=60)
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal has no writer left
            while chunk := os.read(controller, 65536):
                shown += chunk
    finally:
        os.close(controller)
    assert proc.returncode == 0 and proc.stdout == b""
    assert b"flushing [" in shown and b"30/30" in shown and b"30 delivered" in shown
    fill(run, 30, prefix="n")
    quiet = run("-q")  # stderr is a pipe: nothing at all
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""
    assert len(smtp_server.sink.messages) == 60


def test_refused_recipients_in_many_messages_do_not_stall_the_group(run: Runner, smtp_server: SmtpServer) -> None:
    """A refusal after a pipelined DATA forces a new connection; that is no reason to give up on the server."""
    configure(run, smtp_server.port)
    smtp_server.sink.rcpt_replies["bad@example.net"] = "550 5.1.1 no such user"
    fill(run, 6, recipients=("good@example.net", "bad@example.net"))
    result = run("-q")
    assert result.returncode == 69  # failures, but nothing deferred
    assert subjects(smtp_server) == {f"m{i}": 1 for i in range(6)}
    assert all(m.rcpt_tos == ["good@example.net"] for m in smtp_server.sink.messages)
    assert entries(run) == [] and len(entries(run, failed=True)) == 6


# ---- kill -9 while queueing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["enqueue-written", "enqueue-message-renamed", "enqueue-committed"])
def test_kill_during_enqueue(run: Runner, smtp_server: SmtpServer, point: str) -> None:
    configure(run, free_port())
    result = run("bob@example.net", input=b"Subject: killed\n\nx\n", env=run.env(ESMTP_QUEUE_CRASH_AT=point))
    assert result.returncode == -signal.SIGKILL  # the caller knows the message was not accepted...
    committed = point == "enqueue-committed"
    assert len(entries(run)) == (1 if committed else 0)  # ...unless it was safely stored all the same
    store = QueueStore(str(qdir(run)))
    old = time.time() - GARBAGE_AGE - 1
    for path in [*Path(store.tmp).iterdir(), *Path(store.path).glob("*.eml")]:
        os.utime(path, (old, old))
    configure(run, smtp_server.port)
    assert run("-q").returncode == 0
    assert subjects(smtp_server) == ({"killed": 1} if committed else {})
    assert [name for name in os.listdir(store.path) if name.endswith((".eml", ".json"))] == []
    assert list(Path(store.tmp).iterdir()) == []  # left-overs are collected


def test_kill_at_random_moments_of_enqueue(run: Runner, smtp_server: SmtpServer) -> None:
    configure(run, free_port())
    body = b"Subject: big\n\n" + b"0123456789abcdef\n" * 200_000  # 3.4 MB: the copy and fsync take a while
    accepted = killed = 0
    rng = random.Random(1)
    for _ in range(12):
        proc = subprocess.Popen([entry_point(), "bob@example.net"], env=run.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(body)
        proc.stdin.close()
        time.sleep(rng.uniform(0.0, 0.12))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        accepted += code == 0
        killed += code == -signal.SIGKILL
    wait_for_runner(run)
    queued = entries(run)
    store = QueueStore(str(qdir(run)))
    for entry in queued:  # every visible entry is complete
        assert os.path.getsize(store.eml(str(entry["id"]))) == entry["size"]
    assert len(queued) >= accepted
    configure(run, smtp_server.port)
    assert run("-q").returncode == 0
    assert len(smtp_server.sink.messages) == len(queued)
    assert all(m.data.endswith(b"0123456789abcdef\r\n") for m in smtp_server.sink.messages)
    assert killed > 0


# ---- kill -9 while flushing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "duplicates"),
    [("flush-before-send", 0), ("flush-after-send", 1), ("delivered-marked", 0), ("save-before-rename", 0)],
)
def test_kill_during_flush(run: Runner, smtp_server: SmtpServer, point: str, duplicates: int) -> None:
    configure(run, smtp_server.port, "queue_retry 0s\n")
    fill(run, 5)
    if point == "save-before-rename":  # a deferral is the state change that saves
        smtp_server.sink.data_reply = "451 4.3.0 later"
    proc = flush_command(run, point)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    smtp_server.sink.data_reply = None
    assert run("-q").returncode == 0
    counts = subjects(smtp_server)
    assert set(counts) == {f"m{i}" for i in range(5)}  # nothing lost
    assert sum(counts.values()) == 5 + duplicates  # a duplicate only in the window after the final dot
    assert entries(run) == []


def test_kill_after_a_permanent_failure_was_recorded(run: Runner, smtp_server: SmtpServer) -> None:
    configure(run, smtp_server.port, "bounce enabled\n")
    smtp_server.sink.rcpt_replies["bad@example.net"] = "550 5.1.1 no such user"
    fill(run, 1, recipients=("bad@example.net",))
    proc = flush_command(run, "fail-committed")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert run("-q").returncode == 0
    assert entries(run) == []
    assert len(entries(run, failed=True)) == 1
    bounces = [m for m in smtp_server.sink.messages if m.mail_from in ("", "<>")]
    assert len(bounces) == 1 and len(smtp_server.sink.messages) == 1


def test_kill_flushes_at_random_moments(run: Runner, slow_server: SmtpServer) -> None:
    configure(run, slow_server.port)
    fill(run, 300)
    rng = random.Random(7)
    kills = 0
    for _ in range(10):
        if not entries(run):
            break
        proc = flush_command(run)
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = run("-q")
    assert final.returncode == 0, final.stderr
    counts = subjects(slow_server)
    assert set(counts) == {f"m{i}" for i in range(300)}  # nothing lost
    duplicated = Counter({s: c - 1 for s, c in counts.items() if c > 1})
    assert sum(duplicated.values()) <= kills  # at most the one message in flight per kill
    assert entries(run) == []
    assert kills > 0
