"""The listener's clients: password hashes (``esmtp --hash-password``), the ``listen_auth_file`` and sender policy.

A hash is the standard library's scrypt in a self-describing string, ``$scrypt$n=16384,r=8,p=1$SALT$HASH`` (salt
and hash in base64 without padding), so that stronger parameters can be chosen later without breaking old lines.
The file has one ``user:hash`` line per user, optionally followed by ``:`` and the senders that user may give in
MAIL FROM (addresses or ``*`` patterns, separated by commas: ``app:$scrypt$...:app@example.com,*@app.example.com``).

scrypt costs about 16 MiB and tens of milliseconds per check, on purpose: checks run one at a time (a flood of
wrong passwords cannot take the memory or the CPU), and a password that was right once is remembered as an HMAC
under a key that lives only in this process, so a client that logs in on every connection pays scrypt once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import threading
from dataclasses import dataclass, field

from esmtp.errors import ConfigError

#: scrypt's cost: N = 2**14, r = 8, p = 1 (16 MiB), the parameters RFC 7914 and OWASP name for interactive logins.
N, R, P = 1 << 14, 8, 1
_PREFIX = "$scrypt$"
#: Users in one file, and the length of a line: a file is configuration, not a database.
MAX_USERS = 10000
_MAX_LINE = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str) -> str:
    """The ``$scrypt$...`` string for ``password`` with a new random salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"{_PREFIX}n={N},r={R},p={P}${_b64(salt)}${_b64(digest)}"


@dataclass(frozen=True, slots=True)
class Scrypt:
    """A parsed hash."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Scrypt:
        """Raises ValueError saying what is wrong with ``text``."""
        if not text.startswith(_PREFIX):
            raise ValueError("the hash does not start with $scrypt$ (make one with: esmtp --hash-password)")
        parts = text[len(_PREFIX) :].split("$")
        if len(parts) != 3:
            raise ValueError("the hash is not $scrypt$n=...,r=...,p=...$salt$hash")
        try:
            params = dict(item.split("=", 1) for item in parts[0].split(","))
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            salt, digest = _unb64(parts[1]), _unb64(parts[2])
        except (ValueError, KeyError):
            raise ValueError("the hash's parameters, salt or value cannot be read") from None
        if n < 2 or n & (n - 1) or n > 1 << 20 or not 1 <= r <= 32 or not 1 <= p <= 16 or not salt or len(digest) < 16:
            raise ValueError("the hash's parameters are out of range (n a power of 2 up to 2**20, r <= 32, p <= 16)")
        return cls(n, r, p, salt, digest)

    def matches(self, password: str) -> bool:
        computed = hashlib.scrypt(password.encode("utf-8", "surrogateescape"), salt=self.salt, n=self.n, r=self.r,
                                  p=self.p, dklen=len(self.digest), maxmem=256 * self.n * self.r + (1 << 20))
        return hmac.compare_digest(computed, self.digest)


@dataclass(frozen=True, slots=True)
class Client:
    """One user of the auth file."""

    name: str
    secret: Scrypt = field(repr=False)
    #: Lower-case addresses and ``*`` patterns the user may give in MAIL FROM; empty: any.
    senders: tuple[str, ...] = ()

    def may_send_as(self, address: str) -> bool:
        """Whether MAIL FROM:<address> is allowed (``<>`` is written ``<>`` in the list)."""
        if not self.senders:
            return True
        from fnmatch import fnmatchcase

        wanted = address.lower() or "<>"
        return any(fnmatchcase(wanted, pattern) for pattern in self.senders)


class ClientFile:
    """The users of ``listen_auth_file``, and the password check."""

    def __init__(self, clients: dict[str, Client]) -> None:
        self.clients = clients
        self._lock = threading.Lock()
        self._key = os.urandom(32)
        self._good: set[tuple[str, bytes]] = set()

    @classmethod
    def load(cls, path: str) -> ClientFile:
        """Read the file; ConfigError names the line of a problem (never a hash's text)."""
        try:
            info = os.stat(path)
            if stat.S_IMODE(info.st_mode) & 0o002:
                raise ConfigError(f"listen_auth_file {path} is writable by everyone: fix it with chmod o-w {path}")
            with open(path, "rb") as handle:
                data = handle.read(MAX_USERS * _MAX_LINE)
        except OSError as error:
            raise ConfigError(f"listen_auth_file: cannot read {path}: {error.strerror or error}") from None
        clients: dict[str, Client] = {}
        for lineno, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            name, _, rest = line.partition(":")
            hashed, _, senders = rest.partition(":")
            name = name.strip()
            if not name or not hashed or any(not c.isprintable() or c.isspace() for c in name):
                raise ConfigError(f"{where}: expected user:hash (the hash from esmtp --hash-password)")
            if name in clients:
                raise ConfigError(f"{where}: user {name!r} is listed twice")
            try:
                secret = Scrypt.parse(hashed.strip())
            except ValueError as error:
                raise ConfigError(f"{where}: user {name!r}: {error}") from None
            patterns = tuple(word.strip().lower() for word in senders.split(",") if word.strip())
            clients[name] = Client(name, secret, patterns)
            if len(clients) > MAX_USERS:
                raise ConfigError(f"{path}: more than {MAX_USERS} users")
        return cls(clients)

    def verify(self, name: str, password: str) -> Client | None:
        """The user, if ``password`` is theirs. Blocks (scrypt): call it from a worker thread."""
        client = self.clients.get(name)
        mark = (name, hmac.new(self._key, password.encode("utf-8", "surrogateescape"), "sha256").digest())
        with self._lock:  # one scrypt at a time: bounded memory and CPU, whatever the number of clients
            if client is None:
                Scrypt(N, R, P, b"\0" * 16, b"\0" * 32).matches(password)  # the same time for an unknown user
                return None
            if mark in self._good:
                return client
            if not client.secret.matches(password):
                return None
            self._good.add(mark)
            return client


def hash_command() -> int:
    """``esmtp --hash-password``: read a password from standard input (one line), print its hash."""
    import sys

    if sys.stdin is None:
        raise ConfigError("--hash-password reads the password from standard input, which is closed")
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the two passwords differ; nothing was printed")
    else:
        password = sys.stdin.buffer.readline(_MAX_LINE + 1).decode("utf-8", "surrogateescape").rstrip("\r\n")
    if not password:
        raise ConfigError("--hash-password: the password is empty")
    print(hash_password(password))
    return 0
