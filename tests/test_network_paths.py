"""Network paths (issue 23): ``source_ip``, ``ip_version`` and a SOCKS5 proxy (``proxy_host``/``proxy_port``) through a
real SOCKS server from Debian (microsocks, installed by .ci/install-routing-deps.sh), started on loopback here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import Runner, ScriptedServer, SmtpServer, free_port, port_for_a_program

MESSAGE = b"From: me@example.org\nSubject: path\n\nbody\n"
MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"
StartProxy = Callable[..., int]


@pytest.fixture
def socks_proxy() -> Iterator[StartProxy]:
    """Start microsocks on 127.0.0.1 (extra arguments: ``-u``/``-P``...); returns its port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        if not shutil.which(MICROSOCKS):
            pytest.skip("microsocks is not installed: run .ci/install-routing-deps.sh")
        port = port_for_a_program()
        proc = subprocess.Popen([MICROSOCKS, "-i", "127.0.0.1", "-p", str(port), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.02)
        raise AssertionError("microsocks did not start listening")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=5)


def test_source_ip_binds_the_connection(run: Runner, scripted_server: type[ScriptedServer]) -> None:
    server = scripted_server()
    run.write_config(f"hostname {server.hostport}\nsource_ip 127.0.0.2\n")
    result = run("-v", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert server.connections[0].peer == "127.0.0.2"
    assert "from 127.0.0.2" in result.stdout + result.stderr


def test_a_source_ip_that_cannot_be_bound_is_temporary_and_named(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nsource_ip 192.0.2.77\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert "cannot use source_ip 192.0.2.77 for the outgoing connection: Cannot assign requested address" \
        in result.stderr
    assert smtp_server.sink.messages == []


def test_source_ip_must_be_an_address(run: Runner) -> None:
    path = run.write_config("hostname h\nsource_ip eth0\n")
    result = run("--check", "-C", str(path), program="esmtp")
    assert result.returncode == 78
    assert f"{path}:2: 'source_ip' takes an IPv4 or IPv6 address" in result.stderr


def test_ip_version_6_finds_no_ipv6_address_for_an_ipv4_server(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nip_version 6\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert "no IPv6 address for 127.0.0.1 (ip_version 6)" in result.stderr


def test_ip_version_4_connects_over_ipv4(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname localhost:{smtp_server.port}\nip_version 4\n")
    result = run("-v", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert "over IPv4 only" in result.stdout + result.stderr
    assert len(smtp_server.sink.messages) == 1


def test_mail_goes_through_a_real_socks5_proxy(run: Runner, smtp_server: SmtpServer,
                                              socks_proxy: StartProxy) -> None:
    port = socks_proxy()
    run.write_config(f"hostname localhost:{smtp_server.port}\nproxy_host 127.0.0.1\nproxy_port {port}\n")
    result = run("-v", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert f"through the SOCKS5 proxy 127.0.0.1:{port}" in result.stdout + result.stderr
    assert [m.rcpt_tos for m in smtp_server.sink.messages] == [["bob@example.net"]]


def test_the_proxy_refusing_the_connection_is_75_with_its_reply_code(run: Runner, socks_proxy: StartProxy) -> None:
    port = socks_proxy()
    closed = free_port()
    run.write_config(f"hostname 127.0.0.1:{closed}\nproxy_host 127.0.0.1\nproxy_port {port}\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert (f"the SOCKS5 proxy 127.0.0.1:{port} (proxy_host) could not connect to 127.0.0.1:{closed}: SOCKS5 reply "
            "5, connection refused") in result.stderr


def test_a_proxy_that_wants_a_password_is_75_and_says_so(run: Runner, smtp_server: SmtpServer,
                                                         socks_proxy: StartProxy) -> None:
    port = socks_proxy("-u", "user", "-P", "pw")
    run.write_config(f"hostname {smtp_server.hostport}\nproxy_host 127.0.0.1\nproxy_port {port}\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert (f"the SOCKS5 proxy 127.0.0.1:{port} (proxy_host) refused a connection without authentication (SOCKS5 "
            "method reply 255): esmtp does not send a user name and password to a proxy") in result.stderr
    assert smtp_server.sink.messages == []


def test_a_proxy_that_is_down_is_75_naming_it(run: Runner) -> None:
    port = free_port()
    run.write_config(f"hostname smtp.example.org:587\nproxy_host 127.0.0.1\nproxy_port {port}\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 75
    assert f"cannot connect to the SOCKS5 proxy 127.0.0.1:{port} (proxy_host): Connection refused" in result.stderr


def test_the_proxy_resolves_the_server_name(run: Runner) -> None:
    """The CONNECT request carries the name itself (address type 3): the proxy resolves it, as Tor needs.
    A listener stands in for the proxy to read the request, which microsocks does not show."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(3))
            conn.sendall(b"\x05\x00")
            seen.append(conn.recv(300))
            conn.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")  # not allowed by ruleset

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    run.write_config(f"hostname onion-address.example:2525\nproxy_host 127.0.0.1\nproxy_port {port}\n")
    result = run("bob@example.net", input=MESSAGE)
    thread.join(5)
    listener.close()
    assert seen == [b"\x05\x01\x00", b"\x05\x01\x00\x03\x15onion-address.example\x09\xdd"]
    assert result.returncode == 75
    assert "SOCKS5 reply 2, connection not allowed by ruleset" in result.stderr
