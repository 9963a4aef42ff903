"""The test servers' ports: no probe-then-bind race (issue 25).

A port that a probe bound, closed and handed on can be taken by anyone before the server binds it (another test's
server in a parallel run, or the kernel's next ephemeral port), and a "dead" port can come alive. The servers bind
port 0 themselves; :func:`support.free_port` keeps its port bound, without listening, so it stays refused.
"""

from __future__ import annotations

import errno
import socket

import pytest
from support import free_port, start_server


def test_a_free_port_stays_taken_and_refused() -> None:
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError) as caught:
        other.bind(("127.0.0.1", port))  # nobody else can be given it...
    assert caught.value.errno == errno.EADDRINUSE
    with pytest.raises(ConnectionRefusedError):  # ...and nothing answers on it
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_servers_bind_port_zero_and_report_the_port_they_got() -> None:
    servers = [start_server() for _ in range(3)]
    try:
        assert len({server.port for server in servers}) == 3 and all(server.port for server in servers)
        for server in servers:
            with socket.create_connection((server.host, server.port), timeout=5) as conn:
                assert conn.recv(512).startswith(b"220 ")
    finally:
        for server in servers:
            server.controller.stop()
