"""Recognising an implicit-TLS server that we greet in clear text, on any port.

A server that speaks TLS from the first byte (RFC 8314; port 465 by convention, but 2465, 4650... exist) waits for our
TLS hello while we wait for its greeting. Without a word from either side the send would wait out the greeting's
time and exit 75, and the caller would retry forever. The pattern: silence for ``IMPLICIT_TLS_SILENCE`` seconds after
connecting, then a TLS handshake that succeeds on a probe (a second connection that sends nothing but the hello).
Then the configuration needs ``smtps enabled``: a permanent failure (69) with that advice.

``ssl`` is imported only for the probe, which only a silent server costs.
"""

from __future__ import annotations

import asyncio
import socket


async def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has something to read (its greeting, or the end of the connection) within ``timeout``
    seconds; nothing is read."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        async with asyncio.timeout(timeout):
            await ready
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(sock.fileno())
    return True


async def answers_tls(host: str, port: int, timeout: float) -> bool:
    """Whether ``host``:``port`` completes a TLS handshake at once (implicit TLS), within ``timeout`` seconds.

    The certificate is not checked: the question is only whether the server speaks TLS, and nothing is sent.
    """
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (TimeoutError, OSError):  # (ssl.SSLError is an OSError)
        return False
    writer.close()
    return True


def advice(server: str, silence: float, *, probed: bool) -> str:
    """The message of the permanent failure: what was seen, and the fix."""
    seen = f"sent no greeting within {silence:g} s" + (" and answers a TLS handshake" if probed else "")
    return (f"{server} {seen}: it expects TLS from the first byte (implicit TLS), so add 'smtps enabled' to the "
            "configuration (or use port 587 with 'starttls required'); nothing was sent")
