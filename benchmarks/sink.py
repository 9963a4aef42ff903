"""A loopback SMTP sink with AUTH PLAIN/LOGIN, run in its own process, that counts what it sees and keeps nothing.

It speaks just enough ESMTP for every subject (EHLO/HELO, AUTH PLAIN with or without an initial response, AUTH LOGIN,
MAIL, RCPT, DATA, RSET, NOOP, QUIT, PIPELINING) and **requires AUTH before MAIL** (530 otherwise), so a subject that
silently skips authentication fails instead of looking fast. Any user name and password are accepted.

By default the sockets are left as Linux leaves them (Nagle on, delayed ACKs), as any ordinary server would; with
``--quickack`` every accepted socket gets ``TCP_NODELAY`` and ``TCP_QUICKACK`` (re-armed after each read, because the
kernel clears it), so clients that write a message in many small segments are ACKed at once.

Message data is scanned for the end-of-data marker and discarded, so a 100 MB message costs the sink no memory.

Start: ``python benchmarks/sink.py [--quickack]``. It prints one JSON line ``{"port": P, "control": C}``. The control
port speaks one-line commands: ``stats`` (a JSON line of counters), ``reset`` (zero them, answer ``ok``) and ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import socket
import sys
import time
from typing import Any

EHLO_LINES = ["PIPELINING", "8BITMIME", "SIZE 0", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN"]


class Stats:
    """Counters shared by all sessions."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.auths = 0
        self.messages = 0
        self.recipients = 0
        self.data_bytes = 0
        self.max_message_bytes = 0
        self.rsets = 0
        self.rejected = 0

    def as_dict(self) -> dict[str, float]:
        """The counters, plus the sink's own CPU seconds (to show it is not the bottleneck)."""
        return {**vars(self), "cpu_s": round(time.process_time(), 4)}


class SmtpSink(asyncio.Protocol):
    """One SMTP session; replies are batched per read so pipelined commands get one write."""

    def __init__(self, stats: Stats, quickack: bool) -> None:
        self.stats = stats
        self.quickack = quickack
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None
        self.buf = b""
        self.in_data = False
        self.tail = b""
        self.msg_bytes = 0
        self.authed = False
        self.has_mail = False
        self.auth_state: str | None = None  # "plain" | "login-user" | "login-pass" while an AUTH exchange runs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.sock = transport.get_extra_info("socket")
        if self.quickack and self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        transport.write(b"220 sink.bench ESMTP benchmark sink\r\n")

    def data_received(self, data: bytes) -> None:
        if self.quickack and self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        out: list[bytes] = []
        if self.in_data:
            data = self._consume_data(data, out)
        self.buf += data
        while not self.in_data:
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > 65536:  # a line that long is not SMTP
                    out.append(b"500 5.5.2 line too long\r\n")
                    self.buf = b""
                break
            line, self.buf = self.buf[:end], self.buf[end + 2 :]
            if self._command(line, out):
                break
            if self.in_data and self.buf:
                rest, self.buf = self.buf, b""
                self.buf = self._consume_data(rest, out)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _consume_data(self, data: bytes, out: list[bytes]) -> bytes:
        """Scan DATA bytes for CRLF.CRLF; return what follows the end marker (pipelined commands), else b""."""
        # The marker may straddle two reads: look at the seam first, then inside ``data`` (no copy of big chunks).
        seam = self.tail + data[:4]
        at = seam.find(b"\r\n.\r\n")
        if at >= 0:
            consumed = at + 5 - len(self.tail)  # bytes of ``data`` up to and including the marker
        else:
            at = data.find(b"\r\n.\r\n")
            if at < 0:
                self.msg_bytes += len(data)
                self.tail = (self.tail + data)[-4:] if len(data) < 4 else data[-4:]
                return b""
            consumed = at + 5
        self.msg_bytes += max(consumed - 5, 0)
        self.in_data = False
        self.has_mail = False
        self.stats.messages += 1
        self.stats.data_bytes += self.msg_bytes
        self.stats.max_message_bytes = max(self.stats.max_message_bytes, self.msg_bytes)
        out.append(b"250 2.0.0 Ok: queued\r\n")
        return data[consumed:]

    def _command(self, line: bytes, out: list[bytes]) -> bool:
        """Handle one command line; return True when the connection is closing."""
        if self.auth_state is not None:
            self._auth_continue(line, out)
            return False
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            lines = ["sink.bench", *EHLO_LINES]
            out.append("".join(f"250-{x}\r\n" for x in lines[:-1]).encode() + f"250 {lines[-1]}\r\n".encode())
        elif verb == b"HELO":
            out.append(b"250 sink.bench\r\n")
        elif verb == b"AUTH":
            self._auth_start(arg, out)
        elif verb == b"MAIL":
            if not self.authed:
                self.stats.rejected += 1
                out.append(b"530 5.7.0 Authentication required\r\n")
            else:
                self.has_mail = True
                out.append(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            if self.has_mail:
                self.stats.recipients += 1
                out.append(b"250 2.1.5 Ok\r\n")
            else:
                out.append(b"503 5.5.1 need MAIL first\r\n")
        elif verb == b"DATA":
            if self.has_mail:
                self.in_data = True
                self.tail = b"\r\n"  # the CRLF that ended DATA: an empty message is just ".\r\n"
                self.msg_bytes = 0
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            else:
                out.append(b"503 5.5.1 need MAIL and RCPT first\r\n")
        elif verb == b"RSET":
            self.stats.rsets += 1
            self.has_mail = False
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb == b"NOOP":
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            out.append(b"221 2.0.0 Bye\r\n")
            if self.transport is not None:
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
            return True
        else:
            out.append(b"502 5.5.2 command not implemented\r\n")
        return False

    def _auth_start(self, arg: bytes, out: list[bytes]) -> None:
        mech, _, initial = arg.strip().partition(b" ")
        mech = mech.upper()
        if mech == b"PLAIN":
            if initial and initial != b"=":
                self._auth_ok(out)
            else:
                self.auth_state = "plain"
                out.append(b"334 \r\n")
        elif mech == b"LOGIN":
            if initial:
                self.auth_state = "login-pass"
                out.append(b"334 " + base64.b64encode(b"Password:") + b"\r\n")
            else:
                self.auth_state = "login-user"
                out.append(b"334 " + base64.b64encode(b"Username:") + b"\r\n")
        else:
            out.append(b"504 5.5.4 mechanism not supported\r\n")

    def _auth_continue(self, line: bytes, out: list[bytes]) -> None:
        if line == b"*":
            self.auth_state = None
            out.append(b"501 5.7.0 authentication cancelled\r\n")
        elif self.auth_state == "login-user":
            self.auth_state = "login-pass"
            out.append(b"334 " + base64.b64encode(b"Password:") + b"\r\n")
        else:
            self._auth_ok(out)

    def _auth_ok(self, out: list[bytes]) -> None:
        self.auth_state = None
        self.authed = True
        self.stats.auths += 1
        out.append(b"235 2.7.0 Authentication successful\r\n")


async def _control(stats: Stats, stop: asyncio.Event, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    while line := (await reader.readline()).strip():
        if line == b"stats":
            writer.write(json.dumps(stats.as_dict()).encode() + b"\n")
        elif line == b"reset":
            stats.reset()
            writer.write(b"ok\n")
        elif line == b"quit":
            writer.write(b"ok\n")
            await writer.drain()
            writer.close()
            stop.set()
            return
        else:
            writer.write(b"error\n")
        await writer.drain()
    writer.close()


async def serve(port: int, quickack: bool) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop = asyncio.Event()
    server = await loop.create_server(lambda: SmtpSink(stats, quickack), "127.0.0.1", port, backlog=1024)
    control = await asyncio.start_server(lambda r, w: _control(stats, stop, r, w), "127.0.0.1", 0)
    smtp_port = server.sockets[0].getsockname()[1]
    control_port = control.sockets[0].getsockname()[1]
    print(json.dumps({"port": smtp_port, "control": control_port, "quickack": quickack}), flush=True)
    await stop.wait()
    server.close()
    control.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="SMTP port (default: any free port)")
    parser.add_argument("--quickack", action="store_true", help="TCP_NODELAY + TCP_QUICKACK: ACK every segment at once")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.quickack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
