"""Hostile and broken servers: every wait is bounded, every buffer too, and every error names the server.

Each case scripts the one test server (:class:`support.ScriptedServer`) to misbehave in one precise way; the installed
``sendmail`` runs against it as a subprocess, and the test checks the exit code, the message and that it ended in
bounded time. The fault matrix (every stage with a 4xx, a 5xx, a drop and silence) is in test_fault_matrix.py.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from support import SILENCE, Reply, Result, Runner, StartScripted

MESSAGE = b"From: a@example.org\nSubject: hostile\n\nbody\n"


def _timed(run: Runner, *args: str, limit: float, input: bytes = MESSAGE) -> tuple[float, Result]:
    started = time.monotonic()
    result = run(*args, input=input, timeout=limit + 30)
    return time.monotonic() - started, result


# ---- finding 1: the reply buffer is bounded ----------------------------------------------------------------------


def test_endless_reply_is_refused_at_the_bound(run: Runner, scripted_server: StartScripted) -> None:
    # 4 MiB without a line end (unless the client hangs up first), then nothing.
    server = scripted_server({"MAIL": Reply("250-" + "x" * (4 << 20), then=SILENCE)})
    run.write_config(f"hostname {server.hostport}\ntimeout 20\n")
    elapsed, result = _timed(run, "b@example.net", limit=20)
    assert result.returncode == 75, result.stderr
    assert f"{server.hostport} sent an invalid reply: Response too long" in result.stderr
    assert elapsed < 15


@pytest.mark.parametrize("stage", ["EHLO", "MAIL"])
def test_malformed_reply_names_the_server(run: Runner, scripted_server: StartScripted, stage: str) -> None:
    server = scripted_server({stage: "hello, I am not SMTP"})
    run.write_config(f"hostname {server.hostport}\ntimeout 5\n")
    result = run("b@example.net", input=MESSAGE, timeout=30)
    assert result.returncode == 75, result.stderr
    assert f"{server.hostport} sent an invalid reply: Malformed SMTP response line: hello, I am not SMTP" in (
        result.stderr)
    assert "internal error" not in result.stderr


# ---- finding 2: an explicit timeout bounds the wait for the final reply ------------------------------------------


def test_silent_final_dot_is_bounded_by_timeout(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"dot": SILENCE})
    run.write_config(f"hostname {server.hostport}\ntimeout 2\n")
    elapsed, result = _timed(run, "b@example.net", limit=10)
    assert result.returncode == 75, result.stderr
    assert f"{server.hostport}: timed out" in result.stderr
    assert elapsed < 10


# ---- finding 7: STARTTLS against an implicit-TLS port ------------------------------------------------------------


def test_starttls_against_port_465_says_use_smtps(run: Runner, scripted_server: StartScripted) -> None:
    # A server speaking implicit TLS waits for our TLS hello and never greets in clear text. Port 465 is needed for
    # the pattern: a loopback address of its own keeps it free of other tests.
    host = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"
    try:
        server = scripted_server({"greeting": SILENCE}, host=host, port=465)
    except OSError as error:
        pytest.skip(f"cannot listen on {host}:465: {error}")
    run.write_config(f"hostname {server.hostport}\nstarttls required\n")
    elapsed, result = _timed(run, "b@example.net", limit=15)
    assert result.returncode == 69, result.stderr
    assert f"{host}:465 sent no greeting within 5 s" in result.stderr
    assert "add 'smtps enabled'" in result.stderr
    assert elapsed < 15


def test_silence_without_tls_elsewhere_waits_out_the_greeting(run: Runner, scripted_server: StartScripted) -> None:
    """Silent for 5 s on a port other than 465, and no TLS handshake on a probe either: not the implicit-TLS pattern,
    so the greeting's wait runs to its end and the failure stays temporary."""
    server = scripted_server({"greeting": SILENCE})
    run.write_config(f"hostname {server.hostport}\ntimeout 7\n")
    elapsed, result = _timed(run, "b@example.net", limit=20)
    assert result.returncode == 75, result.stderr
    assert f"{server.hostport} sent no greeting within 7 s (timed out)" in result.stderr
    assert 6.5 < elapsed < 20


def test_silent_greeting_elsewhere_is_temporary(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"greeting": SILENCE})
    run.write_config(f"hostname {server.hostport}\ntimeout 1\n")
    elapsed, result = _timed(run, "b@example.net", limit=10)
    assert result.returncode == 75, result.stderr
    assert f"{server.hostport} sent no greeting within 1 s (timed out)" in result.stderr
    assert elapsed < 10


# ---- finding 4: no lone CR on the wire (SMTP smuggling) ----------------------------------------------------------


def test_smuggled_end_of_data_never_reaches_the_server(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server()
    run.write_config(f"hostname {server.hostport}\n")
    body = b"From: a@example.org\n\nhi\r.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\n"
    result = run("b@example.net", input=body, timeout=30)
    assert result.returncode == 0, result.stderr
    [message] = server.messages  # one message: nothing after the smuggled dot was read as a command
    data = message.data  # as it arrived: dot-stuffed, CRLF line ends
    assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")  # no lone CR, so no <CR>.<CR><LF>
    assert b"hi\r\n..\r\nMAIL FROM:<evil@example.org>\r\n" in data  # dot-stuffed: still message text
    assert [c.split(":")[0] for c in server.commands if c.startswith(("MAIL", "RCPT"))] == ["MAIL FROM", "RCPT TO"]
    assert "RCPT TO:<victim@example.net>" not in server.commands


# ---- finding 5: SIZE is checked before the data goes out ---------------------------------------------------------


def test_message_over_the_advertised_size_is_refused_locally(run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server(extensions=("PIPELINING", "SIZE 1000"))
    run.write_config(f"hostname {server.hostport}\n")
    result = run("b@example.net", input=MESSAGE + b"x" * 2000 + b"\n", timeout=30)
    assert result.returncode == 69, result.stderr
    # (the size counts the Date and Message-ID fields added on the way)
    assert re.search(rf"the message is 2\d\d\d bytes and {server.hostport} accepts at most 1000 \(SIZE 1000\)",
                     result.stderr)
    assert not any(command.startswith(("MAIL", "DATA")) for command in server.commands)

    result = run("b@example.net", input=MESSAGE, timeout=30)  # under the limit: sent
    assert result.returncode == 0, result.stderr
    assert len(server.messages) == 1


#: What a hostile server (or a -bs client) may try to put on the user's terminal: colour, a bell, a carriage return
#: that hides what came before it, a title-setting OSC.
_TERMINAL = "\x1b[31mred\x07 \x1b]0;owned\x07 hidden\r no such user"


def test_control_characters_from_the_server_are_escaped_in_everything_printed(
        run: Runner, scripted_server: StartScripted, tmp_path: Path) -> None:
    server = scripted_server({"RCPT": Reply(f"550 5.1.1 {_TERMINAL}")})
    run.write_config(f"hostname {server.hostport}\n")
    transcript = tmp_path / "transcript"
    result = run("-v", "-X", str(transcript), "bob@example.net", input=MESSAGE)
    assert result.returncode == 67
    for shown in (result.stderr, transcript.read_text()):
        assert not any(char in shown for char in "\x1b\x07\r"), shown
    assert "\\x1b[31mred\\x07" in result.stderr and "hidden\\r no such user" in result.stderr
    assert "S: 550 5.1.1 \\x1b[31mred" in result.stderr  # the -v server line too


def test_control_characters_in_the_greeting_and_extensions_are_escaped_by_serverinfo(
        run: Runner, scripted_server: StartScripted) -> None:
    server = scripted_server({"greeting": Reply(f"220 {_TERMINAL}")}, extensions=("PIPELINING", f"X-{_TERMINAL}"))
    run.write_config(f"hostname {server.hostport}\n")
    result = run("--serverinfo", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert not any(char in result.stdout for char in "\x1b\x07\r"), result.stdout
    assert "\\x1b[31mred" in result.stdout
