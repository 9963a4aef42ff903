"""Pieces of the flush: a stored message read back, the report's exit codes, connection grouping."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from esmtp_plugins.queue.entry import Entry, new_id
from esmtp_plugins.queue.flush import Report
from esmtp_plugins.queue.message import QueuedMessage, split_fields
from esmtp_plugins.queue.store import QueueStore
from support import SmtpServer, StartScripted

from esmtp.config.model import Identity
from esmtp.smtp.kept import connection_key
from esmtp.smtp.session import SmtpSession
from esmtp.trace import Trace
from esmtp.types import Envelope

HEAD = b"From: a@example.org\r\nX-Folded: one\r\n\ttwo\r\nSubject: hi\r\n\r\n"
BODY = b"line\r\n.\r\nend\r\n"



def no_secret(*args: object) -> None:
    """A secret source that has none (the identities here do not authenticate)."""
    return None

def stored(tmp_path: Path) -> tuple[QueueStore, Entry]:
    store = QueueStore(str(tmp_path / "q"))
    entry = Entry(id=new_id(), sender="a@example.org", recipients=["b@example.net"], identity=None,
                  created=time.time(), size=0, header_size=len(HEAD), newline="\r\n")
    store.enqueue(entry, [HEAD, BODY])
    return store, entry


def test_split_fields_keeps_continuations() -> None:
    assert split_fields(b"A: 1\nB: 2\n 3\n\tfour\nC: 5\n") == [b"A: 1\n", b"B: 2\n 3\n\tfour\n", b"C: 5\n"]
    assert split_fields(b"") == []


def test_queued_message_streams_the_stored_bytes(tmp_path: Path) -> None:
    store, entry = stored(tmp_path)
    fd = os.open(store.eml(entry.id), os.O_RDONLY)
    try:
        message = QueuedMessage(fd, entry, store.eml(entry.id))
        assert message.headers == [b"From: a@example.org\r\n", b"X-Folded: one\r\n\ttwo\r\n", b"Subject: hi\r\n"]
        assert message.get("x-folded") == "one\ttwo"
        assert message.size == len(HEAD + BODY)
        assert b"".join(message.chunks(chunk_size=5)) == HEAD + BODY
        message.add("X-Seen", "yes")  # a plugin that changes the headers gets them sent
        assert b"".join(message.chunks()) == HEAD[:-2] + b"X-Seen: yes\r\n\r\n" + BODY
        message.close()
        assert os.path.exists(store.eml(entry.id))  # the queue owns the file
    finally:
        os.close(fd)


def test_report_exit_codes() -> None:
    assert Report().exit_code == 0
    assert Report(delivered=3).exit_code == 0
    assert Report(deferred=1).exit_code == 75
    assert Report(deferred=1, failed=1).exit_code == 69
    assert Report(missing=["x"]).exit_code == 66
    assert "2 delivered" in Report(delivered=2).summary()


def test_identities_that_share_a_login_share_a_connection() -> None:
    one = Identity("a@example.org", hostname="mx:587", username="u", password="p")
    two = Identity("b@example.org", hostname="mx:587", username="u", password="p")
    other = Identity("c@example.org", hostname="mx:587", username="v", password="p")
    assert connection_key(one) == connection_key(two) != connection_key(other)


def test_session_is_open_follows_the_connection(tmp_path: Path, smtp_server: SmtpServer) -> None:
    """The flush reuses a group's session while ``is_open``: False before open and after close."""
    identity = Identity("a@example.org", hostname=smtp_server.hostport)
    store, entry = stored(tmp_path)
    fd = os.open(store.eml(entry.id), os.O_RDONLY)
    message = QueuedMessage(fd, entry, store.eml(entry.id))

    async def scenario() -> list[bool]:
        session = SmtpSession(identity, {}, Trace(), no_secret)
        states = [session.is_open]
        await session.open()
        states.append(session.is_open)
        await session.send(Envelope("a@example.org", ["b@example.net"], identity), message, ["b@example.net"])
        states.append(session.is_open)
        await session.close()
        states.append(session.is_open)
        return states

    try:
        assert asyncio.run(scenario()) == [False, True, True, False]
    finally:
        os.close(fd)
    [got] = smtp_server.sink.messages
    assert got.data == HEAD + BODY


def test_session_is_not_open_once_the_server_hung_up(scripted_server: StartScripted) -> None:
    """A session whose server hung up (a 421 and close, an idle timeout) is not reused: the flush opens a new one."""
    server = scripted_server()

    async def scenario() -> tuple[bool, bool]:
        session = SmtpSession(Identity("a@example.org", hostname=server.hostport), {}, Trace(), no_secret)
        await session.open()
        opened = session.is_open
        server.hang_up()
        for _ in range(200):
            if not session.is_open:
                break
            await asyncio.sleep(0.01)
        hung_up = session.is_open
        await session.close()
        return opened, hung_up

    assert asyncio.run(scenario()) == (True, False)
