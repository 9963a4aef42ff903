"""The TCP connection to the server, on the network path the identity asks for: ``source_ip`` (the local address to
bind), ``ip_version`` (IPv4 or IPv6 only) and ``proxy_host``/``proxy_port`` (a SOCKS5 proxy, RFC 1928, which
resolves the server's name itself, as Tor needs).

The SOCKS5 client is written here rather than taken from python-socks: it is two fixed-size exchanges (no
authentication, one CONNECT), every read is bounded by its length and by the connect timeout, and it returns the
plain connected socket that aiosmtplib takes; a dependency would add an import and a release cycle for 60 lines.
Only the "no authentication" method is offered: a proxy that wants a user name refuses it with a clear error.

Failures are temporary (75), so a queue keeps the message: an address that cannot be bound may come back with its
interface, a proxy may come back; each error names the keyword and value that caused it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

from esmtp.errors import TemporaryFailure

if TYPE_CHECKING:
    from esmtp.config.model import Identity

#: msmtp's default proxy port, and SOCKS's.
SOCKS_PORT = 1080
#: RFC 1928 section 6: the reply codes.
SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


@dataclass(frozen=True, slots=True)
class NetworkPath:
    """How to reach the server: the local address, the address family, the proxy (None: direct)."""

    source_ip: str | None = None
    family: int = socket.AF_UNSPEC
    proxy: tuple[str, int] | None = None

    @classmethod
    def of(cls, identity: Identity) -> NetworkPath:
        options = identity.options
        version = options.get("ip_version")
        family = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(version or "", socket.AF_UNSPEC)
        proxy_host = options.get("proxy_host")
        proxy = (proxy_host, int(options.get("proxy_port") or SOCKS_PORT)) if proxy_host else None
        return cls(options.get("source_ip"), family, proxy)

    @property
    def direct(self) -> bool:
        return self.source_ip is None and self.family == socket.AF_UNSPEC and self.proxy is None

    def describe(self) -> str:
        """For ``-v``: the path in words (empty for a plain direct connection)."""
        parts = []
        if self.proxy is not None:
            parts.append(f"through the SOCKS5 proxy {_hostport(*self.proxy)}")
        if self.source_ip is not None:
            parts.append(f"from {self.source_ip}")
        if self.family != socket.AF_UNSPEC:
            parts.append("over IPv4 only" if self.family == socket.AF_INET else "over IPv6 only")
        return " ".join(parts)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_socket(host: str, port: int, timeout: float, path: NetworkPath | None = None) -> socket.socket:
    """A TCP connection to ``host``:``port`` on ``path`` within ``timeout`` seconds, the SOCKS5 exchange included.

    Errors as aiosmtplib says them (SMTPConnectError, SMTPConnectTimeoutError) for the server itself; a
    TemporaryFailure naming the keyword for ``source_ip`` and the proxy.
    """
    path = path or NetworkPath()
    target = path.proxy or (host, port)
    try:
        async with asyncio.timeout(timeout):
            sock = await _connect(*target, path)
            if path.proxy is None:
                return sock
            try:
                await _socks5(sock, host, port, path.proxy)
            except BaseException:
                sock.close()
                raise
            return sock
    except TimeoutError:
        if path.proxy is not None:
            raise TemporaryFailure(f"the SOCKS5 proxy {_hostport(*path.proxy)} (proxy_host) did not connect us to "
                                   f"{_hostport(host, port)} within {timeout:g} s (timed out)") from None
        raise aiosmtplib.SMTPConnectTimeoutError(f"Timed out connecting to {host} on port {port}") from None


async def _connect(host: str, port: int, path: NetworkPath) -> socket.socket:
    """A connection to each address of ``host`` in turn (of ``path``'s family, bound to its source address)."""
    loop = asyncio.get_running_loop()
    failure: OSError = OSError(f"no address for {host}")
    proxy = " (the SOCKS5 proxy, proxy_host)" if path.proxy is not None else ""
    try:
        addresses = await loop.getaddrinfo(host, port, family=path.family, type=socket.SOCK_STREAM)
    except OSError as error:
        if path.family != socket.AF_UNSPEC:
            version = "4" if path.family == socket.AF_INET else "6"
            failure = OSError(f"no IPv{version} address for {host}{proxy} (ip_version {version}): "
                              f"{error.strerror or error}")
        else:
            failure = error
        addresses = []
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            if path.source_ip is not None:
                _bind(sock, path.source_ip, family)
            await loop.sock_connect(sock, address)
        except BaseException as error:
            sock.close()
            if isinstance(error, TemporaryFailure) or not isinstance(error, OSError):
                raise
            failure = error
        else:
            return sock
    if path.proxy is not None:
        raise TemporaryFailure(f"cannot connect to the SOCKS5 proxy {_hostport(host, port)} (proxy_host): "
                               f"{_reason(failure)}")
    raise aiosmtplib.SMTPConnectError(f"Error connecting to {host} on port {port}: {failure}")


def _bind(sock: socket.socket, source_ip: str, family: int) -> None:
    try:
        sock.bind((source_ip, 0))
    except OSError as error:
        wanted = "IPv4" if family == socket.AF_INET else "IPv6"
        if isinstance(error, socket.gaierror) or error.errno in (97, 22):  # EAFNOSUPPORT, EINVAL: the other family
            why = f"it is not an {wanted} address, and the server's address is (set ip_version to match)"
        else:
            why = _reason(error)
        raise TemporaryFailure(f"cannot use source_ip {source_ip} for the outgoing connection: {why}") from None


async def _socks5(sock: socket.socket, host: str, port: int, proxy: tuple[str, int]) -> None:
    """RFC 1928: offer "no authentication", then CONNECT to ``host`` by name (the proxy resolves it)."""
    loop = asyncio.get_running_loop()
    where = f"the SOCKS5 proxy {_hostport(*proxy)} (proxy_host)"

    async def read(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = await loop.sock_recv(sock, count - len(data))
            if not chunk:
                raise TemporaryFailure(f"{where} closed the connection during the SOCKS5 exchange")
            data += chunk
        return data

    try:
        await loop.sock_sendall(sock, b"\x05\x01\x00")
        version, method = await read(2)
        if version != 5:
            raise TemporaryFailure(f"{where} is not a SOCKS5 proxy (it answered version {version})")
        if method != 0:
            raise TemporaryFailure(f"{where} refused a connection without authentication (SOCKS5 method reply "
                                   f"{method}): esmtp does not send a user name and password to a proxy")
        await loop.sock_sendall(sock, b"\x05\x01\x00" + _address(host, where) + port.to_bytes(2, "big"))
        version, reply, _, kind = await read(4)
        if version != 5:
            raise TemporaryFailure(f"{where} sent an invalid SOCKS5 reply (version {version})")
        if reply != 0:
            meaning = SOCKS_REPLIES.get(reply, "unknown reply")
            raise TemporaryFailure(f"{where} could not connect to {_hostport(host, port)}: SOCKS5 reply {reply}, "
                                   f"{meaning}")
        if kind == 1:
            await read(4 + 2)
        elif kind == 4:
            await read(16 + 2)
        elif kind == 3:
            await read((await read(1))[0] + 2)
        else:
            raise TemporaryFailure(f"{where} sent an invalid SOCKS5 reply (address type {kind})")
    except OSError as error:
        raise TemporaryFailure(f"{where}: {_reason(error)} during the SOCKS5 exchange") from None


def _reason(error: OSError) -> str:
    """The system's words for ``error`` (asyncio's own text for a refused connection names no reason)."""
    import os

    return os.strerror(error.errno) if error.errno else str(error)


def _address(host: str, where: str) -> bytes:
    """The request's address: an IP address as such, a name as a name (resolved by the proxy)."""
    for family, kind in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
        try:
            return bytes([kind]) + socket.inet_pton(family, host)
        except OSError:
            continue
    try:
        name = host.encode("idna")
    except UnicodeError:
        raise TemporaryFailure(f"{where}: the host name {host!r} cannot be sent to a SOCKS5 proxy") from None
    if not 0 < len(name) < 256:
        raise TemporaryFailure(f"{where}: the host name {host!r} is too long for SOCKS5")
    return bytes([3, len(name)]) + name
