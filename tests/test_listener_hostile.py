"""``esmtp --listen`` against hostile clients: slowloris, huge lines, NUL bytes, SMTP smuggling, 1,000 idle
connections. Each test checks that the hostile client gets a clear reply or is cut off, that nothing it sent is
relayed as something else (checked on what the upstream received), and that an ordinary client is served meanwhile.
"""

from __future__ import annotations

import resource
import smtplib
import socket
import time

import pytest
from listener_support import Listener, listeners, start_listener
from support import Runner, SmtpServer
from test_listener import MESSAGE, client, configure

__all__ = ["listeners"]


def served_meanwhile(listener: Listener, server: SmtpServer, within: float = 5) -> None:
    """An ordinary client sends a message and gets its 250 promptly."""
    started = time.monotonic()
    before = len(server.sink.messages)
    with client(listener) as smtp:
        smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
    assert time.monotonic() - started < within
    assert len(server.sink.messages) == before + 1


def read_reply(sock: socket.socket, timeout: float = 30) -> bytes:
    """Bytes up to and including the last line of one reply (``NNN `` then CRLF)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        lines = data.split(b"\r\n")
        if len(lines) > 1 and lines[-2][3:4] == b" ":
            return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_slowloris_command_line_is_cut_off_at_the_idle_timeout(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_idle_timeout 2\n")
    listener = start_listener(run)
    listeners.append(listener)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as slow:
        assert read_reply(slow).startswith(b"220 ")
        started = time.monotonic()
        reply = b""
        slow.settimeout(0.3)
        for byte in b"EHLO slow.example.and.then.some.more.bytes":  # one byte every 0.3 s: never a whole line
            try:
                slow.sendall(bytes([byte]))
                reply += slow.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                break
            if reply:
                break
        served_meanwhile(listener, auth_server)
    assert reply.startswith(b"421 4.4.2 ") and b"Timeout" in reply, reply
    assert 1.5 < time.monotonic() - started < 6


def test_slowloris_data_is_cut_off_at_the_data_timeout_and_nothing_relayed(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server, "listen_idle_timeout 2\nlisten_data_timeout 3\n")
    listener = start_listener(run)
    listeners.append(listener)
    slow = client(listener)
    slow.ehlo("slow.example")
    slow.mail("app@example.org")
    slow.rcpt("bob@example.net")
    assert slow.docmd("DATA")[0] == 354
    started = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        for number in range(20):  # a line a second: each within the idle timeout, the whole beyond the DATA timeout
            slow.send(f"X-Line: {number}\r\n".encode())
            time.sleep(1)
    assert time.monotonic() - started < 8
    assert auth_server.sink.messages == []


def test_ten_megabyte_lines_are_refused_without_holding_them(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    before = listener.rss_kib()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:
        assert read_reply(sock).startswith(b"220 ")
        sock.sendall(b"EHLO " + b"a" * (10 << 20) + b"\r\n")
        assert read_reply(sock).startswith(b"500 5.5.2 Line too long")
        sock.sendall(b"EHLO app.example\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
        replies = b""
        while b"354 " not in replies:
            replies += read_reply(sock)
        sock.sendall(b"Subject: huge\r\n\r\n" + b"b" * (10 << 20) + b"\r\n.\r\n")
        assert read_reply(sock).startswith(b"500 5.5.2 Message has a line longer than 998")
        sock.sendall(b"NOOP\r\n")
        assert read_reply(sock).startswith(b"250 ")  # the session goes on
    assert listener.rss_kib() - before < 8 * 1024  # neither line was held in memory
    assert auth_server.sink.messages == []
    served_meanwhile(listener, auth_server)


def test_nul_bytes(run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    with client(listener) as smtp:
        smtp.ehlo("app.example")
        assert smtp.docmd("MAIL FROM:<app\0@example.org>")[0] == 501
        assert smtp.docmd("NO\0OP")[0] == 500
        assert smtp.mail("app@example.org")[0] == 250
        assert smtp.rcpt("bob@example.net")[0] == 250
        code, text = smtp.data(b"Subject: nul\0here\r\n\r\nbody\r\n")
        assert code == 554 and b"NUL" in text
    assert auth_server.sink.messages == []


@pytest.mark.parametrize("sequence", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r"],
                         ids=["LF.LF", "LF.CRLF", "CRLF.LF", "CR.CRLF", "CRLF.CR", "CR.CR"])
def test_smtp_smuggling_sequences_never_end_the_data(
        run: Runner, auth_server: SmtpServer, listeners: list[Listener], sequence: bytes) -> None:
    configure(run, auth_server)
    listener = start_listener(run)
    listeners.append(listener)
    smuggled = (b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
                b"From: ceo@example.org\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")
    data = b"Subject: carrier\r\n\r\ncarrier body" + sequence + smuggled + b".\r\n"
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:
        read_reply(sock)
        sock.sendall(b"EHLO app.example\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
        replies = b""
        while b"354 " not in replies:
            replies += read_reply(sock)
        sock.sendall(data)
        assert read_reply(sock).startswith(b"250 2.0.0 Ok")  # one message, answered once
        sock.sendall(b"QUIT\r\n")
        assert read_reply(sock).startswith(b"221 ")
    got = auth_server.sink.messages
    assert [(m.mail_from, m.rcpt_tos) for m in got] == [("app@example.org", ["bob@example.net"])]
    assert b"smuggled body" in got[0].data and b"carrier body" in got[0].data  # it stayed data, in the one message


def test_a_thousand_idle_connections(run: Runner, auth_server: SmtpServer, listeners: list[Listener]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2200:
        pytest.skip(f"the hard limit on open files is {hard}: too low to open 1,000 connections here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))
    configure(run, auth_server, "listen_max_connections 1100\nlisten_max_per_address 1100\n")
    listener = start_listener(run)
    listeners.append(listener)
    before = listener.rss_kib()
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", listener.port), timeout=30))
        for sock in idle[::50]:
            assert read_reply(sock).startswith(b"220 ")  # each one is greeted: none waits for another
        served_meanwhile(listener, auth_server)
        grown = listener.rss_kib() - before
        assert grown < 40 * 1024, f"{grown} KiB for 1,000 idle clients"
        with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as extra:
            assert read_reply(extra).startswith(b"220 ")
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    served_meanwhile(listener, auth_server)
