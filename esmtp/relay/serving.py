"""What both resident processes share: the warm relay (:mod:`esmtp.relay.daemon`) and the system service
(:mod:`esmtp.relay.system`).

* the request frame the front end (:mod:`esmtp.front`) sends: a 4-byte length, NUL-separated fields and the
  caller's descriptors (SCM_RIGHTS), read with bounded sizes and waits (:func:`receive`);
* the caller's identity from the kernel (SO_PEERCRED: :func:`peer_credentials`), never from what it says;
* the caller's standard streams put in place of the process's for the request's thread (:func:`caller_streams`);
* the serving loop: one thread per connection, an orderly stop (:class:`Serving`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

#: The largest request frame (argv and the header fields): anything longer is refused unread.
MAX_REQUEST = 1 << 20
#: How long a caller may take to send its whole request.
REQUEST_WAIT = 30.0
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class BadRequest(Exception):
    """A request that does not follow the protocol (the reason is for the log and the caller's stderr)."""


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """The connected process's pid, uid and gid as the kernel recorded them at connect()."""
    pid, uid, gid = _CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    return pid, uid, gid


def receive(conn: socket.socket, max_fds: int = 3) -> tuple[list[bytes], list[int]]:
    """One request: a 4-byte length, the NUL-separated fields, and the descriptors that came with them.

    The descriptors are closed when the frame is refused. Raises :class:`BadRequest`
    for a frame that is cut short, longer than :data:`MAX_REQUEST`, or that came with more than ``max_fds``
    descriptors (the kernel closes those that did not fit); OSError (a time-out too) for a broken connection.
    """
    conn.settimeout(REQUEST_WAIT)
    # Close-on-exec: no command run for another request (an MDA) inherits them.
    data, ancillary, flags, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(max_fds * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, usable, 4)]
    try:
        if flags & socket.MSG_CTRUNC:
            raise BadRequest(f"more than {max_fds} descriptors came with the request")
        if len(data) < 4:
            raise BadRequest("the request is cut short")
        size = int.from_bytes(data[:4], "big")
        if size > MAX_REQUEST:
            raise BadRequest(f"the request is larger than {MAX_REQUEST} bytes")
        body = bytearray(data[4:])
        deadline = time.monotonic() + REQUEST_WAIT
        while len(body) < size:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            more = conn.recv(size - len(body))
            if not more:
                break
            body += more
        if len(body) != size:
            raise BadRequest("the request is cut short" if len(body) < size else "the request is longer than it says")
    except BaseException:
        close_all(fds)
        raise
    conn.settimeout(None)  # the run takes as long as delivery takes (the SMTP layer has its own time-outs)
    return bytes(body).split(b"\0"), fds


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# ---- the caller's standard streams, per request thread ---------------------------------------------------------------


class _Routed:
    """Stands in for ``sys.stdin``/``stdout``/``stderr``: the current request's stream, else the process's own."""

    def __init__(self, name: str, default: TextIO) -> None:
        self._name = name
        self._default = default

    def _current(self) -> TextIO:
        streams = _streams.get()
        return streams[self._name] if streams is not None else self._default

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._current(), attribute)


#: The request's streams: a context variable, so that the SMTP session's event loop thread sees the caller's too.
_streams: ContextVar[dict[str, TextIO] | None] = ContextVar("streams", default=None)


def install_routing() -> None:
    """Make ``sys.stdin``/``stdout``/``stderr`` the current request's (see :func:`caller_streams`)."""
    sys.stdin = _Routed("stdin", sys.stdin)
    sys.stdout = _Routed("stdout", sys.stdout)
    sys.stderr = _Routed("stderr", sys.stderr)


@contextlib.contextmanager
def caller_streams(out: int, err: int, spool: int | None) -> Iterator[None]:
    """The caller's stdout and stderr (and, for a message, its spool file as stdin) for this thread's run.

    The streams do not own the caller's descriptors (closefd=False): the handler closes those, on every path, also
    when a stream cannot be made (a directory as the message, say).
    """
    from esmtp.streams import reader_may_leave

    stdout = reader_may_leave(open(out, "w", encoding="utf-8", errors="strict", closefd=False))  # noqa: SIM115
    stderr = open(err, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    try:
        stdin = (open(spool, encoding="utf-8", closefd=False) if spool is not None  # noqa: SIM115
                 else open(os.devnull, encoding="utf-8"))  # noqa: SIM115
    except BaseException:
        stdout.close()
        stderr.close()
        raise
    token = _streams.set({"stdin": stdin, "stdout": stdout, "stderr": stderr})
    try:
        yield
    finally:
        _streams.reset(token)
        for stream in (stdout, stderr, stdin):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _reap_background_runs() -> None:
    """The queue's background runs, started by requests of this long-lived process, must not stay as zombies."""
    background = sys.modules.get("esmtp_plugins.queue.background")
    if background is not None:
        background.reap()


# ---- the serving loop ------------------------------------------------------------------------------------------------


class Serving:
    """Accepts connections on ``listener``, each served by :meth:`handle` in a thread of its own, until
    :meth:`should_stop` says so or :meth:`stop` is called; then stops accepting and waits for the requests it holds.

    ``path`` is the socket file to remove at the end (None: not ours, e.g. systemd's).
    """

    #: Seconds between two calls of :meth:`tick` while no connection comes.
    TICK = 1.0
    #: The longest wait for requests in progress at the end.
    FINISH_WAIT = 30.0

    def __init__(self, listener: socket.socket, path: str | None) -> None:
        self.listener = listener
        self.path = path
        self.active = 0
        self.last_request = time.monotonic()
        self.stopping = False
        self._lock = threading.Lock()
        try:
            self.inode = os.stat(path).st_ino if path is not None else -1
        except OSError:
            self.inode = -1

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection (in its own thread; the connection is closed afterwards)."""
        raise NotImplementedError

    def should_stop(self) -> bool:
        """Whether to stop now (called with the lock held, between connections)."""
        return False

    def tick(self) -> None:
        """Housekeeping, every :data:`TICK` seconds or so (quick: it runs in the accepting thread)."""

    def finish(self) -> None:
        """The last step, after the requests in progress have ended."""

    def stop(self) -> None:
        """Stop accepting (from a signal handler or another thread); :meth:`serve` then finishes and returns."""
        self.stopping = True

    def serve(self) -> int:
        self.listener.settimeout(self.TICK)
        last_tick = time.monotonic()
        while True:
            with self._lock:
                if self.stopping or self.should_stop():
                    break
            if time.monotonic() - last_tick >= self.TICK:  # also while connections keep coming
                self.tick()
                _reap_background_runs()
                last_tick = time.monotonic()
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            except OSError:
                if self.stopping:
                    break
                raise
            with self._lock:
                self.active += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        self._shut_down()
        return 0

    def _client(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handle(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self.active -= 1
                self.last_request = time.monotonic()

    def _shut_down(self) -> None:
        with contextlib.suppress(OSError):
            if self.path is not None and os.stat(self.path).st_ino == self.inode:  # still ours, not a successor's
                os.unlink(self.path)
        with self._lock:
            self.listener.close()
        deadline = time.monotonic() + self.FINISH_WAIT
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.finish()
