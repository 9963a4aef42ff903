"""The flush pipelines each message's MAIL, RCPT and DATA with the final dot of the message before it (RFC 2920).

A small scripted SMTP server watches the wire: it answers a final dot only once it has seen what follows it (or after
a few seconds, when nothing follows), so it can tell whether the next commands came with the dot. It also checks the
exactly-once rule at the moment it matters: when a message's data arrives, the entry of the message before it must
already carry the delivered mark (or be gone), so a kill at any point can repeat at most the message in flight.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import Runner
from test_queue import entries, qdir
from test_queue_crash import configure, fill

#: How long the server waits after a final dot for pipelined commands before it answers anyway.
FOLLOW_WAIT = 5.0


@dataclass
class Wire:
    """What the scripted server saw, and how it should answer."""

    queue: Path
    expected: int
    #: Subject → reply to the final dot (default 250).
    dot_replies: dict[str, str] = field(default_factory=dict)
    #: Subject → reply to RCPT (default 250).
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)
    #: For each message after the first on a connection: did its MAIL arrive before the reply to the dot before it?
    pipelined: list[bool] = field(default_factory=list)
    #: Messages whose data arrived while the entry of the message before them was neither marked nor removed.
    unmarked: list[str] = field(default_factory=list)
    connections: int = 0
    accepted: int = 0
    ids: dict[str, str] = field(default_factory=dict)

    def marked_or_gone(self, subject: str) -> bool:
        entry_id = self.ids.get(subject)
        if entry_id is None:
            return True
        try:
            head = (self.queue / f"{entry_id}.json").read_bytes()[:1]
        except FileNotFoundError:
            return True
        return head == b"D"


async def _session(wire: Wire, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    wire.connections += 1
    writer.write(b"220 scripted ESMTP\r\n")
    early: bytes | None = None  # a command read ahead while deciding whether to answer a dot
    previous: str | None = None  # the subject of the last message accepted on this connection
    rcpt_ok = False
    while True:
        line, early = (early, None) if early is not None else (await reader.readline(), None)
        if not line:
            break
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"MAIL":
            rcpt_ok = False
            writer.write(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            writer.write(b"250 2.1.5 ok\r\n")
            rcpt_ok = True
        elif verb == b"DATA":
            if not rcpt_ok:
                writer.write(b"554 5.5.1 no valid recipients\r\n")
                continue
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            data = bytearray()
            first = True
            while (chunk := await reader.readline()) not in (b".\r\n", b""):
                if first and previous is not None and not wire.marked_or_gone(previous):
                    wire.unmarked.append(previous)
                first = False
                data += chunk
            match = re.search(rb"\r\nSubject: ([^\r\n]*)", b"\r\n" + bytes(data))
            subject = match.group(1).decode() if match else "?"
            wire.subjects.append(subject)
            if len(wire.subjects) < wire.expected:
                try:
                    early = await asyncio.wait_for(reader.readline(), FOLLOW_WAIT)
                except TimeoutError:
                    early = None
                if early is not None:
                    wire.pipelined.append(early[:4].upper() == b"MAIL")
            reply = wire.dot_replies.get(subject, "250 2.0.0 queued")
            writer.write(reply.encode() + b"\r\n")
            if reply.startswith("250"):
                wire.accepted += 1
                previous = subject
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


@pytest.fixture
def scripted(run: Runner) -> Iterator[tuple[Wire, int]]:
    wire = Wire(qdir(run), expected=0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        server = await asyncio.start_server(lambda r, w: _session(wire, r, w), "127.0.0.1", 0)
        holder["server"] = server
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    yield wire, int(holder["port"])  # type: ignore[call-overload]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def prepare(run: Runner, wire: Wire, count: int) -> None:
    ids = fill(run, count)
    wire.expected = count
    wire.ids = {f"m{i}": entry_id for i, entry_id in enumerate(ids)}


def test_next_message_commands_ride_with_the_final_dot(run: Runner, scripted: tuple[Wire, int]) -> None:
    wire, port = scripted
    configure(run, port)
    prepare(run, wire, 8)
    result = run("-q")
    assert result.returncode == 0, result.stderr
    assert wire.subjects == [f"m{i}" for i in range(8)] and wire.connections == 1
    assert wire.pipelined == [True] * 7  # every MAIL after the first came with the dot before it
    assert wire.unmarked == []  # and no message's data went out before the one before it was marked delivered
    assert entries(run) == []


def test_a_message_refused_at_the_dot_does_not_disturb_the_next(run: Runner, scripted: tuple[Wire, int]) -> None:
    wire, port = scripted
    configure(run, port)
    prepare(run, wire, 4)
    wire.dot_replies["m1"] = "554 5.7.1 content rejected"
    wire.dot_replies["m2"] = "451 4.3.0 try again"
    result = run("-q")
    assert result.returncode == 69  # m1 failed
    assert "554 5.7.1 content rejected" in result.stderr
    assert wire.subjects == ["m0", "m1", "m2", "m3"] and wire.connections == 1 and wire.accepted == 2
    assert wire.unmarked == []
    [deferred] = entries(run)
    assert deferred["id"] == wire.ids["m2"] and "451 4.3.0 try again" in str(deferred["last_error"])
    [failed] = entries(run, failed=True)
    assert failed["id"] == wire.ids["m1"]
