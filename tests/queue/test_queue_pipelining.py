"""The flush pipelines each message's MAIL, RCPT and DATA with the final dot of the message before it (RFC 2920).

The scripted SMTP server of tests/support.py watches the wire: it answers a final dot only once it has seen what
follows it (or after a few seconds, when nothing follows), so it can tell whether the next commands came with the dot.
It also checks the exactly-once rule at the moment it matters: when a message's data arrives, the entry of the message
before it must already carry the delivered mark (or be gone), so a kill at any point can repeat at most the message in
flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import Connection, Reply, Runner, ScriptedServer
from test_queue import entries, qdir
from test_queue_crash import configure, fill

#: How long the server waits after a final dot for pipelined commands before it answers anyway.
FOLLOW_WAIT = 5.0


@dataclass
class Wire:
    """How the scripted server answers the final dots, and the exactly-once check it makes."""

    queue: Path
    expected: int
    #: Subject → reply to the final dot (default 250).
    dot_replies: dict[str, str] = field(default_factory=dict)
    #: Messages whose data arrived while the entry of the message before them was neither marked nor removed.
    unmarked: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    server: ScriptedServer | None = None

    def marked_or_gone(self, subject: str) -> bool:
        entry_id = self.ids.get(subject)
        if entry_id is None:
            return True
        try:
            head = (self.queue / f"{entry_id}.json").read_bytes()[:1]
        except FileNotFoundError:
            return True
        return head == b"D"

    def data_arrives(self, connection: Connection) -> None:
        accepted = [message for message in connection.messages if message.reply.startswith("250")]
        if accepted and not self.marked_or_gone(accepted[-1].subject):
            self.unmarked.append(accepted[-1].subject)

    def dot(self, connection: Connection, line: str) -> Reply:
        """The reply to a final dot, held until the next commands arrive (or a few seconds) unless it is the last."""
        assert self.server is not None
        more = len(self.server.messages) < self.expected
        subject = connection.messages[-1].subject
        return Reply(self.dot_replies.get(subject, "250 2.0.0 queued"), wait_for_next=FOLLOW_WAIT if more else 0)

    @property
    def subjects(self) -> list[str]:
        assert self.server is not None
        return [message.subject for message in self.server.messages]

    @property
    def connections(self) -> int:
        assert self.server is not None
        return len(self.server.connections)

    @property
    def accepted(self) -> int:
        assert self.server is not None
        return sum(message.reply.startswith("250") for message in self.server.messages)

    @property
    def pipelined(self) -> list[bool]:
        """For each message after the first on a connection: did its MAIL arrive before the reply to the dot?"""
        assert self.server is not None
        return [early for connection in self.server.connections
                for early in [command.early for command in connection.commands if command.verb == "MAIL"][1:]]


@pytest.fixture
def scripted(run: Runner) -> Iterator[tuple[Wire, int]]:
    wire = Wire(qdir(run), expected=0)
    with ScriptedServer({"dot": wire.dot}, on_data=wire.data_arrives) as server:
        wire.server = server
        yield wire, server.port


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
