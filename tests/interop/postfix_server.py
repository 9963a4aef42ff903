"""A real Postfix 3.x smtpd with Cyrus SASL and TLS on loopback, run from one directory, for interop tests.

Postfix runs entirely from ``directory`` (``postfix -c DIR/postfix start``): its own queue, data directory,
log file and listeners on free ephemeral 127.0.0.1 ports chosen at start. Nothing in /etc is configured.
Every accepted message, whatever the recipient domain, goes to one ``pipe`` transport (``bin/sink``) that
stores it as ``mail/<queue_id>.eml`` (bytes as Postfix delivers them) plus ``mail/<queue_id>.env``
(``key=value`` lines: queue_id, sender, sasl_method, sasl_username, client_address, size, one ``rcpt=`` line
per recipient). The ``.env`` file is renamed into place last, so its presence means the message is complete.

Needs root (the Postfix master starts as root; smtpd runs as ``postfix``, the sink as ``nobody``) and the
Debian packages from ``.ci/install-interop-deps.sh``. Pitfalls this module handles:

* Debian's Postfix reads the Cyrus SASL config from ``$config_directory/sasl/smtpd.conf`` and ignores
  ``cyrus_sasl_config_path``; elsewhere Cyrus silently falls back to /etc/sasldb2 ("generic failure").
* Postfix sleeps 300 ms at a time while main.cf's mtime is in the current second: the files are backdated.
* The directory and its parents must be traversable by the ``postfix`` and ``nobody`` users, so it is not
  under pytest's 0700 ``pytest-of-<user>`` (which any other pytest session resets to 0700) while it runs.
* In containers PID 1 may reap orphans slowly: a zombie counts as stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from interop_tls import TLSFiles, generate_tls_files

if TYPE_CHECKING:
    from email.message import EmailMessage

MASTER_EXE = Path("/usr/lib/postfix/sbin/master")
SASL_PLUGIN_GLOB = "/usr/lib/*/sasl2/libntlm.so"
INSTALL_HINT = "run .ci/install-interop-deps.sh as root"
CI_FAIL_NOTE = "CI=true: the interop tests must run in CI, so a skip is a failure"

# Postfix splits main.cf lists on whitespace and commas: the directory path must be plain.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]+$")


# --------------------------------------------------------------------------------------------- availability


def find_program(name: str) -> str | None:
    """Full path of ``name`` from PATH, or from /usr/sbin and /sbin, which a non-login root PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def unavailable_reason() -> str | None:
    """Why the interop server cannot run on this machine, or None when it can.

    ``ESMTP_INTEROP_SIMULATE_MISSING`` (any non-empty value) pretends the packages are missing, so that
    the skip-versus-fail behaviour can be checked on a machine that has them.
    """
    if os.environ.get("ESMTP_INTEROP_SIMULATE_MISSING"):
        return "Postfix is missing (simulated by ESMTP_INTEROP_SIMULATE_MISSING)"
    if os.geteuid() != 0:
        return "the interop tests need root (the Postfix master must start as root)"
    missing = [name for name in ("postfix", "saslpasswd2") if find_program(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed ({INSTALL_HINT})"
    if not MASTER_EXE.is_file():
        return f"{MASTER_EXE} not found ({INSTALL_HINT})"
    if not list(Path("/").glob(SASL_PLUGIN_GLOB.lstrip("/"))):
        return f"Cyrus SASL NTLM plugin ({SASL_PLUGIN_GLOB}) not installed ({INSTALL_HINT})"
    for user in ("postfix", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} does not exist ({INSTALL_HINT})"
    return None


def must_fail_instead_of_skip(environ: Mapping[str, str]) -> bool:
    """A missing interop server is a failure, not a skip, when the environment says it is CI (``CI=true``)."""
    return environ.get("CI", "").strip().lower() == "true"


# --------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Ports:
    """The 127.0.0.1 listeners. Relay needs AUTH (or a client certificate) unless noted."""

    smtp: int
    """Plain SMTP; STARTTLS offered; AUTH (PLAIN LOGIN CRAM-MD5 NTLM) offered but optional: loopback may relay."""
    notls: int
    """Plain SMTP without STARTTLS; AUTH offered (all four mechanisms) and required."""
    submission: int
    """STARTTLS required before anything (530 otherwise); AUTH offered only after it, and required."""
    smtps: int
    """Implicit TLS (wrapper mode); AUTH required."""
    submission_cc: int
    """STARTTLS required + a client certificate signed by the test CA required; the certificate authorizes relay."""
    smtps_cc: int
    """Implicit TLS + a client certificate signed by the test CA required; the certificate authorizes relay."""
    expired: int
    """Like ``smtp``, but the server certificate (test CA, right names) has expired."""
    wronghost: int
    """Like ``smtp``, but the server certificate (test CA, valid) names only ``wrong.example.invalid``."""
    rogue: int
    """Like ``smtp``, but the server certificate (right names, valid) is signed by the untrusted rogue CA."""

    def all(self) -> dict[str, int]:
        """Name → port for every listener."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DeliveredMessage:
    """One message as the sink received it from Postfix."""

    queue_id: str
    """Postfix queue id, as in the client's ``250 2.0.0 Ok: queued as <queue_id>``."""
    sender: str
    """Envelope sender (MAIL FROM); empty for the null sender ``<>``."""
    sasl_method: str
    """AUTH mechanism used (``PLAIN``, ``LOGIN``, ``CRAM-MD5``, ``NTLM``); empty when not authenticated."""
    sasl_username: str
    """Authenticated user as Cyrus reports it: ``<user>@<realm>``; empty when not authenticated."""
    client_address: str
    size: int
    recipients: tuple[str, ...]
    """Envelope recipients (RCPT TO), all in one delivery. Postfix does NOT keep their order: compare as sets."""
    eml: bytes
    """The message as delivered: a ``Received:`` header prepended, LF line endings, dot-unstuffed."""
    path: Path
    """The ``.eml`` file."""

    def message(self) -> EmailMessage:
        """The message parsed with the standard library (``email.policy.default``)."""
        from email import policy
        from email.message import EmailMessage
        from email.parser import BytesParser

        parsed = BytesParser(policy=policy.default).parsebytes(self.eml)
        assert isinstance(parsed, EmailMessage)
        return parsed


def parse_env(data: bytes) -> dict[str, list[str]]:
    """Parse the sink's ``key=value`` lines (keys may repeat, e.g. ``rcpt``)."""
    result: dict[str, list[str]] = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result.setdefault(key, []).append(value)
    return result


# --------------------------------------------------------------------------------------------- config files

_SINK = """#!/bin/sh
# Postfix pipe transport. argv: queue_id=.. sender=.. sasl_method=.. sasl_username=.. client_address=..
# size=.. rcpt=.. [rcpt=..]; stdin: the message. Writes <queue_id>.eml, then <queue_id>.env (renamed last).
umask 022
dir='{mail_dir}'
qid=${{1#queue_id=}}
base="$dir/$qid"; n=0
while [ -e "$base.env" ] || [ -e "$base.eml" ]; do n=$((n+1)); base="$dir/$qid.$n"; done
cat > "$base.eml.tmp" || exit 75
for a in "$@"; do printf '%s\\n' "$a"; done > "$base.env.tmp" || exit 75
mv "$base.eml.tmp" "$base.eml" && mv "$base.env.tmp" "$base.env" || exit 75
exit 0
"""

_SASL_CONF = """pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {sasldb}
mech_list: PLAIN LOGIN CRAM-MD5 NTLM
log_level: 3
"""

_MAIN_CF = """# generated by tests/interop/postfix_server.py
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
# no syslog in containers: Postfix's own log file (needs the postlog service in master.cf)
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}/log
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {myhostname}
mydomain = localhost
myorigin = $myhostname
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
biff = no
smtpd_peername_lookup = no
smtputf8_enable = yes
# every recipient of every domain (bounces too) goes to the sink, one delivery per message
default_transport = sink:catchall
relay_transport = sink:catchall
local_transport = sink:catchall
transport_maps = static:sink:catchall
sink_destination_recipient_limit = 1000
# keep the delivered message as close as possible to what the client sent
local_header_rewrite_clients =
always_add_missing_headers = no
disable_mime_output_conversion = yes
message_size_limit = 52428800
smtpd_banner = $myhostname ESMTP esmtp-interop
# fast failures: no error sleeps, no rate limits
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_auth_rate_limit = 0
# port "smtp": loopback may relay without AUTH
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {realm}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_tls_auth_only = no
broken_sasl_auth_clients = no
smtpd_tls_chain_files = {tls.server_key_pem}, {tls.server_cert_pem}
smtpd_tls_CAfile = {tls.ca_pem}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database =
smtpd_tls_received_header = no
"""

_MASTER_CF = """# generated by tests/interop/postfix_server.py: nothing chrooted, listeners on 127.0.0.1 only
# service               type  private unpriv chroot wakeup maxproc command
127.0.0.1:{p.smtp}      inet  n       -      n      -      -       smtpd
127.0.0.1:{p.notls}     inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/notls
  -o smtpd_tls_security_level=none
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{p.submission} inet n       -      n      -      -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{p.smtps}     inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{p.submission_cc} inet n    -      n      -      -       smtpd
  -o syslog_name=postfix/submission-cc
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_ask_ccert=yes
  -o smtpd_tls_req_ccert=yes
  -o smtpd_relay_restrictions=permit_tls_all_clientcerts,permit_sasl_authenticated,reject
127.0.0.1:{p.smtps_cc}  inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/smtps-cc
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_ask_ccert=yes
  -o smtpd_tls_req_ccert=yes
  -o smtpd_relay_restrictions=permit_tls_all_clientcerts,permit_sasl_authenticated,reject
127.0.0.1:{p.expired}   inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/expired
  -o smtpd_tls_chain_files={tls.server_key_pem},{tls.expired_cert_pem}
127.0.0.1:{p.wronghost} inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/wronghost
  -o smtpd_tls_chain_files={tls.server_key_pem},{tls.wronghost_cert_pem}
127.0.0.1:{p.rogue}     inet  n       -      n      -      -       smtpd
  -o syslog_name=postfix/rogue
  -o smtpd_tls_chain_files={tls.server_key_pem},{tls.rogue_cert_pem}
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
sink      unix  -       n       n       -       -       pipe
  flags= user=nobody null_sender= argv={d}/bin/sink queue_id=${{queue_id}} sender=${{sender}} sasl_method=${{sasl_method}} sasl_username=${{sasl_username}} client_address=${{client_address}} size=${{size}} rcpt=${{recipient}}
"""  # noqa: E501 -- master.cf wants the pipe argv on one logical line


# --------------------------------------------------------------------------------------------- processes


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago (the kernel picks them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ..."; comm may contain spaces and parentheses
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[3])


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state = _proc_state(int(entry.name))
            if state is not None and state[1] == sid:
                members.append(int(entry.name))
    return members


class PostfixStartError(RuntimeError):
    """Postfix did not come up; the message carries the tail of its log."""


class PostfixServer:
    """A Postfix instance living in ``directory``. Create, :meth:`start`, use, :meth:`stop`.

    Accounts (Cyrus sasldb, realm :attr:`realm`): :attr:`user`/:attr:`password` (ASCII) and
    :attr:`unicode_user`/:attr:`unicode_password` (UTF-8, with spaces). The server reports an authenticated
    user as ``<user>@<realm>`` (see :meth:`sasl_username`); logging in as ``<user>@<realm>`` works too.
    NTLM with the non-ASCII password fails against this server (Cyrus's NTLM plugin turns the password into
    "unicode" byte by byte instead of UTF-16LE): use the ASCII account for NTLM.
    """

    host = "127.0.0.1"
    """Address of every listener (IPv4 loopback only)."""
    hostname = "localhost"
    """Name that the good server certificate carries (``DNS:localhost``, besides ``IP:127.0.0.1``)."""
    myhostname = "interop.localhost"
    """Postfix's own name: the banner and the ``Received: ... by interop.localhost`` header."""
    realm = "interop"
    """Cyrus SASL realm (``smtpd_sasl_local_domain``)."""
    user = "testuser"
    password = "Test-Pass.123"
    unicode_user = "unicodeuser"
    unicode_password = "pä ss wörd"

    def __init__(self, directory: Path) -> None:
        """``directory`` must be reachable by the postfix and nobody users (see :func:`runtime_directory`)."""
        self._set_directory(directory.resolve())
        if not _SAFE_PATH.match(str(self.directory)):
            raise ValueError(f"Postfix needs a directory path of [A-Za-z0-9._/+-] only, got {self.directory}")
        self._tls: TLSFiles | None = None
        self._ports: Ports | None = None
        self._master_pid: int | None = None

    # ---------------------------------------------------------------- public attributes

    @property
    def tls(self) -> TLSFiles:
        """All certificate and key files (see :class:`interop_tls.TLSFiles`)."""
        if self._tls is None:
            raise RuntimeError("PostfixServer.start() has not run yet")
        return self._tls

    @property
    def ports(self) -> Ports:
        """The listeners' port numbers (chosen at start)."""
        if self._ports is None:
            raise RuntimeError("PostfixServer.start() has not run yet")
        return self._ports

    # Shortcuts for the TLS files used most.
    @property
    def ca_pem(self) -> Path:
        return self.tls.ca_pem

    @property
    def client_cert_pem(self) -> Path:
        return self.tls.client_cert_pem

    @property
    def client_key_pem(self) -> Path:
        return self.tls.client_key_pem

    @property
    def client_combined_pem(self) -> Path:
        return self.tls.client_combined_pem

    @property
    def client_combined_encrypted_pem(self) -> Path:
        return self.tls.client_combined_encrypted_pem

    @property
    def client_key_passphrase(self) -> str:
        return self.tls.client_key_passphrase

    @property
    def rogue_client_cert_pem(self) -> Path:
        return self.tls.rogue_client_cert_pem

    @property
    def rogue_client_key_pem(self) -> Path:
        return self.tls.rogue_client_key_pem

    @property
    def rogue_client_combined_pem(self) -> Path:
        return self.tls.rogue_client_combined_pem

    def sasl_username(self, user: str) -> str:
        """What the server records as ``sasl_username`` after ``user`` logged in."""
        return user if "@" in user else f"{user}@{self.realm}"

    # ---------------------------------------------------------------- start / stop

    def start(self, *, attempts: int = 3) -> None:
        """Write everything, start Postfix on fresh free ports, return when every port answers."""
        self._prepare()
        last_error: PostfixStartError | None = None
        for _ in range(attempts):
            self._ports = Ports(*free_loopback_ports(len(fields(Ports))))
            self._write_master_cf()
            try:
                self._start_master()
                self._wait_ready(timeout=15.0)
                return
            except PostfixStartError as exc:
                self.stop()
                last_error = exc
                # Another process took one of the ports between our probe and Postfix's bind: try again.
                if "Address already in use" not in str(exc):
                    break
        assert last_error is not None
        raise last_error

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the master and every process of its session (TERM, then KILL after ``timeout``)."""
        atexit.unregister(self.stop)
        pid = self._master_pid or self._read_master_pid()
        self._master_pid = None
        if pid is None:
            return
        members = _session_members(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # what "postfix stop" sends, without its 1-second polling
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = [m for m in members if _alive(m)]
            if not members:
                return
            time.sleep(0.02)
        for member in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)

    def running(self) -> bool:
        """Whether the Postfix master is up."""
        pid = self._read_master_pid()
        return pid is not None and _alive(pid)

    # ---------------------------------------------------------------- what the server received

    def messages(self) -> list[DeliveredMessage]:
        """Every delivered message not yet removed by :meth:`clear`, oldest first."""
        envs = sorted(self.mail_dir.glob("*.env"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        result = []
        for env_path in envs:
            env = parse_env(env_path.read_bytes())
            eml_path = env_path.with_suffix(".eml")

            def one(key: str, env: dict[str, list[str]] = env) -> str:
                return env.get(key, [""])[0]

            result.append(
                DeliveredMessage(
                    queue_id=one("queue_id"),
                    sender=one("sender"),
                    sasl_method=one("sasl_method"),
                    sasl_username=one("sasl_username"),
                    client_address=one("client_address"),
                    size=int(one("size") or 0),
                    recipients=tuple(env.get("rcpt", [])),
                    eml=eml_path.read_bytes(),
                    path=eml_path,
                )
            )
        return result

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> list[DeliveredMessage]:
        """Wait until at least ``n`` messages were delivered and return all of them (oldest first)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if len(got) >= n:
                return got
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {n} delivered message(s) within {timeout} s, got {len(got)}; "
                    f"Postfix log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def clear(self, drain_timeout: float = 5.0) -> None:
        """Let messages still in the queue be delivered, then delete every delivered message."""
        deadline = time.monotonic() + drain_timeout
        while not self.queue_is_idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        for path in self.mail_dir.iterdir():
            if path.suffix in (".eml", ".env"):
                path.unlink(missing_ok=True)

    def queue_is_idle(self) -> bool:
        """No message waiting in the incoming or active queue (deferred ones do not count)."""
        return not any(files for queue in ("incoming", "active") for _, _, files in os.walk(self.spool_dir / queue))

    def log_text(self) -> str:
        """Postfix's log file (smtpd, SASL, TLS, qmgr, pipe). Written asynchronously by postlogd."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait until the log matches the regular expression ``pattern``; return the first match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_text())
            if found:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"{pattern!r} not in the Postfix log within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)

    def move_to(self, destination: Path) -> None:
        """Move the stopped instance's directory (log, mail, config) to ``destination`` for post-mortems.

        The log and message readers follow; the TLS paths do not.
        """
        if self.running():
            raise RuntimeError("stop() Postfix before moving its directory")
        shutil.move(self.directory, destination)
        self._set_directory(destination.resolve())

    # ---------------------------------------------------------------- internals

    def _set_directory(self, directory: Path) -> None:
        self.directory = directory
        self.config_dir = directory / "postfix"
        self.mail_dir = directory / "mail"
        self.log_path = directory / "log" / "postfix.log"
        self.spool_dir = directory / "spool"

    def _prepare(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)  # postfix and nobody must traverse it
        for sub in ("postfix/sasl", "log", "bin", "mail", "data", "spool"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("postfix", "postfix/sasl", "log", "bin", "spool"):
            (d / sub).chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        postfix = pwd.getpwnam("postfix")
        os.chown(d / "spool", 0, 0)  # queue_directory: root-owned; post-install creates the rest
        os.chown(d / "data", postfix.pw_uid, postfix.pw_gid)
        (d / "data").chmod(0o700)
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        self.mail_dir.chmod(0o755)
        self._tls = generate_tls_files(d / "tls")

        sink = d / "bin" / "sink"
        sink.write_text(_SINK.format(mail_dir=self.mail_dir))
        sink.chmod(0o755)

        # sasldb2 keeps the plaintext password, which CRAM-MD5 and NTLM need.
        sasldb = d / "sasldb2"
        sasldb.unlink(missing_ok=True)
        for user, password in ((self.user, self.password), (self.unicode_user, self.unicode_password)):
            subprocess.run(
                [find_program("saslpasswd2") or "saslpasswd2", "-p", "-c", "-f", str(sasldb), "-u", self.realm, user],
                input=password.encode(),
                check=True,
                capture_output=True,
            )
        os.chown(sasldb, 0, postfix.pw_gid)
        sasldb.chmod(0o640)
        sasl_conf = self.config_dir / "sasl" / "smtpd.conf"
        sasl_conf.write_text(_SASL_CONF.format(sasldb=sasldb))
        sasl_conf.chmod(0o644)

        main_cf = self.config_dir / "main.cf"
        main_cf.write_text(_MAIN_CF.format(d=d, myhostname=self.myhostname, realm=self.realm, tls=self._tls))
        main_cf.chmod(0o644)
        self._backdate(main_cf)

    def _write_master_cf(self) -> None:
        master_cf = self.config_dir / "master.cf"
        master_cf.write_text(_MASTER_CF.format(d=self.directory, p=self.ports, tls=self.tls))
        master_cf.chmod(0o644)
        self._backdate(master_cf)

    @staticmethod
    def _backdate(path: Path) -> None:
        # Postfix re-reads, sleeping 300 ms at a time, a config file modified in the current second.
        past = time.time() - 10
        os.utime(path, (past, past))

    def _start_master(self) -> None:
        out = self.directory / "log" / "postfix-start.out"
        # Output goes to a file, not a pipe: the daemonized master could otherwise keep the pipe open.
        with out.open("wb") as fh:
            rc = subprocess.run(
                [find_program("postfix") or "postfix", "-c", str(self.config_dir), "start"],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
            ).returncode
        self._master_pid = self._read_master_pid()
        if self._master_pid is not None:
            atexit.register(self.stop)  # a last resort if the session ends without the fixture's teardown
        if rc != 0 or self._master_pid is None:
            raise PostfixStartError(
                f"postfix start failed (exit {rc}):\n{out.read_text('utf-8', 'replace')}\n{self.log_tail()}"
            )

    def _read_master_pid(self) -> int | None:
        try:
            pid = int((self.spool_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        # Guard against a stale pid file whose pid now belongs to another program.
        try:
            if Path(f"/proc/{pid}/exe").resolve() != MASTER_EXE:
                return None
        except OSError:
            return None
        return pid

    def _wait_ready(self, timeout: float) -> None:
        """Every listener accepts; the plain ones greet with 220 (a broken smtpd shows up as no banner)."""
        deadline = time.monotonic() + timeout
        implicit_tls = {self.ports.smtps, self.ports.smtps_cc}
        for name, port in self.ports.all().items():
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=2.0) as conn:
                        if port in implicit_tls:
                            break
                        banner = conn.recv(512)
                        conn.sendall(b"QUIT\r\n")
                        if banner.startswith(b"220"):
                            break
                        problem = f"no 220 banner on {name} port {port}: {banner!r}"
                except OSError as exc:
                    problem = f"{name} port {port}: {exc}"
                if not self.running():
                    raise PostfixStartError(f"the Postfix master died ({problem}):\n{self.log_tail()}")
                if time.monotonic() >= deadline:
                    raise PostfixStartError(f"not ready within {timeout} s ({problem}):\n{self.log_tail()}")
                time.sleep(0.02)


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def runtime_directory(prefix: str = "esmtp-interop-postfix-") -> Path:
    """A new mode-0755 directory that the ``postfix`` and ``nobody`` users can reach.

    Not under pytest's ``pytest-of-<user>``: pytest makes that 0700 and resets it to 0700 whenever another
    pytest session starts, which would cut the running Postfix off from its own files mid-run.
    """
    for base in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
        base = base.resolve()
        if base.is_dir() and _traversable_by_others(base) and _SAFE_PATH.match(str(base)):
            directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
            directory.chmod(0o755)
            return directory
    raise PermissionError("no temp directory that other users (postfix, nobody) may traverse; set TMPDIR")
