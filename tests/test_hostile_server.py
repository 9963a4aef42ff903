"""Hostile and broken servers: every wait is bounded, every buffer too, and every error names the server.

Each server here is a raw socket in a thread that misbehaves in one precise way; the installed ``sendmail`` runs
against it as a subprocess, and the test checks the exit code, the message and that it ended in bounded time.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import Result, Runner

MESSAGE = b"From: a@example.org\nSubject: hostile\n\nbody\n"
EHLO_REPLY = b"250-hostile.test\r\n250 PIPELINING\r\n"
Script = Callable[[socket.socket], None]


def _lines(conn: socket.socket) -> Iterator[bytes]:
    """The command lines the client sends, until it closes."""
    reader = conn.makefile("rb")
    while line := reader.readline():
        yield line.rstrip(b"\r\n")


@pytest.fixture
def hostile() -> Iterator[Callable[..., int]]:
    """Start a server running ``script`` on each connection; return its port."""
    listeners: list[socket.socket] = []

    def start(script: Script, host: str = "127.0.0.1", port: int = 0) -> int:
        listener = socket.create_server((host, port))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    script(conn)

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


def _until(conn: socket.socket, verb: bytes, answers: dict[bytes, bytes]) -> None:
    """Greet, answer each command from ``answers`` (default 250), and return once ``verb`` has arrived."""
    conn.sendall(b"220 hostile.test ESMTP\r\n")
    for line in _lines(conn):
        command = line.split(b" ", 1)[0].upper()
        if command == verb:
            return
        conn.sendall(answers.get(command, b"250 ok\r\n"))


def _silence(conn: socket.socket, seconds: float = 30) -> None:
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        pass


def _timed(run: Runner, *args: str, limit: float) -> tuple[float, Result]:
    started = time.monotonic()
    result = run(*args, input=MESSAGE, timeout=limit + 30)
    return time.monotonic() - started, result


# ---- finding 1: the reply buffer is bounded ----------------------------------------------------------------------


def test_endless_reply_is_refused_at_the_bound(run: Runner, hostile: Callable[..., int]) -> None:
    def script(conn: socket.socket) -> None:
        _until(conn, b"MAIL", {b"EHLO": EHLO_REPLY})
        conn.sendall(b"250-")
        block = b"x" * 65536
        for _ in range(64):  # 4 MiB without a line end, unless the client hangs up first
            conn.sendall(block)
        _silence(conn)

    port = hostile(script)
    run.write_config(f"hostname 127.0.0.1:{port}\ntimeout 20\n")
    elapsed, result = _timed(run, "b@example.net", limit=20)
    assert result.returncode == 75, result.stderr
    assert f"127.0.0.1:{port} sent an invalid reply: Response too long" in result.stderr
    assert elapsed < 15


@pytest.mark.parametrize("stage", [b"EHLO", b"MAIL"])
def test_malformed_reply_names_the_server(run: Runner, hostile: Callable[..., int], stage: bytes) -> None:
    def script(conn: socket.socket) -> None:
        _until(conn, stage, {b"EHLO": EHLO_REPLY})
        conn.sendall(b"hello, I am not SMTP\r\n")
        _silence(conn, 10)

    port = hostile(script)
    run.write_config(f"hostname 127.0.0.1:{port}\ntimeout 5\n")
    result = run("b@example.net", input=MESSAGE, timeout=30)
    assert result.returncode == 75, result.stderr
    assert f"127.0.0.1:{port} sent an invalid reply: Malformed SMTP response line: hello, I am not SMTP" in (
        result.stderr
    )
    assert "internal error" not in result.stderr


# ---- finding 2: an explicit timeout bounds the wait for the final reply ------------------------------------------


def test_silent_final_dot_is_bounded_by_timeout(run: Runner, hostile: Callable[..., int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 hostile.test ESMTP\r\n")
        in_data = False
        for line in _lines(conn):
            if in_data:
                if line == b".":
                    _silence(conn)  # never answers the final dot
                    return
                continue
            command = line.split(b" ", 1)[0].upper()
            if command == b"DATA":
                in_data = True
                conn.sendall(b"354 go ahead\r\n")
            else:
                conn.sendall(EHLO_REPLY if command == b"EHLO" else b"250 ok\r\n")

    port = hostile(script)
    run.write_config(f"hostname 127.0.0.1:{port}\ntimeout 2\n")
    elapsed, result = _timed(run, "b@example.net", limit=10)
    assert result.returncode == 75, result.stderr
    assert f"127.0.0.1:{port}: timed out" in result.stderr
    assert elapsed < 10


# ---- finding 7: STARTTLS against an implicit-TLS port ------------------------------------------------------------


def test_starttls_against_port_465_says_use_smtps(run: Runner, hostile: Callable[..., int]) -> None:
    # A server speaking implicit TLS waits for our TLS hello and never greets in clear text. Port 465 is needed for
    # the pattern: a loopback address of its own keeps it free of other tests.
    host = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"
    try:
        hostile(_silence, host=host, port=465)
    except OSError as error:
        pytest.skip(f"cannot listen on {host}:465: {error}")
    run.write_config(f"hostname {host}:465\nstarttls required\n")
    elapsed, result = _timed(run, "b@example.net", limit=15)
    assert result.returncode == 69, result.stderr
    assert f"{host}:465 sent no greeting within 5 s" in result.stderr
    assert "add 'smtps enabled'" in result.stderr
    assert elapsed < 15


def test_silent_greeting_elsewhere_is_temporary(run: Runner, hostile: Callable[..., int]) -> None:
    port = hostile(_silence)
    run.write_config(f"hostname 127.0.0.1:{port}\ntimeout 1\n")
    elapsed, result = _timed(run, "b@example.net", limit=10)
    assert result.returncode == 75, result.stderr
    assert f"127.0.0.1:{port} sent no greeting within 1 s (timed out)" in result.stderr
    assert elapsed < 10


# ---- finding 4: no lone CR on the wire (SMTP smuggling) ----------------------------------------------------------


def test_smuggled_end_of_data_never_reaches_the_server(run: Runner, hostile: Callable[..., int]) -> None:
    received: list[bytes] = []

    def script(conn: socket.socket) -> None:
        _until(conn, b"DATA", {b"EHLO": EHLO_REPLY})
        conn.sendall(b"354 go ahead\r\n")
        data = b""
        while not data.endswith(b"\r\n.\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        received.append(data)
        conn.sendall(b"250 2.0.0 queued\r\n")
        for _ in _lines(conn):  # QUIT
            conn.sendall(b"221 bye\r\n")

    port = hostile(script)
    run.write_config(f"hostname 127.0.0.1:{port}\n")
    body = b"From: a@example.org\n\nhi\r.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\n"
    result = run("b@example.net", input=body, timeout=30)
    assert result.returncode == 0, result.stderr
    [data] = received
    assert b"\r." not in data.replace(b"\r\n", b"")  # no lone CR, so no <CR>.<CR><LF> for a lenient server
    assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")
    assert b"hi\r\n..\r\nMAIL FROM:<evil@example.org>\r\n" in data  # dot-stuffed: still message text


# ---- finding 5: SIZE is checked before the data goes out ---------------------------------------------------------


def test_message_over_the_advertised_size_is_refused_locally(run: Runner, hostile: Callable[..., int]) -> None:
    commands: list[bytes] = []

    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 hostile.test ESMTP\r\n")
        for line in _lines(conn):
            commands.append(line)
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-hostile.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
            elif line == b".":
                conn.sendall(b"250 2.0.0 queued\r\n")
            else:
                conn.sendall(b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n")

    port = hostile(script)
    run.write_config(f"hostname 127.0.0.1:{port}\n")
    big = MESSAGE + b"x" * 2000 + b"\n"
    result = run("b@example.net", input=big, timeout=30)
    assert result.returncode == 69, result.stderr
    # (the size counts the Date and Message-ID fields added on the way)
    assert re.search(rf"the message is 2\d\d\d bytes and 127.0.0.1:{port} accepts at most 1000 \(SIZE 1000\)",
                     result.stderr)
    assert not any(command.upper().startswith((b"MAIL", b"DATA")) for command in commands)

    commands.clear()

    result = run("b@example.net", input=MESSAGE, timeout=30)  # under the limit: sent
    assert result.returncode == 0, result.stderr
    assert b"DATA" in commands
