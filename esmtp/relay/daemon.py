"""The warm relay's resident process: runs ``sendmail``/``mailq`` commands handed over by :mod:`esmtp.front`.

One process per user and configuration (and environment: see ``front.fingerprint``), listening on a Unix socket in
a 0700 directory, serving only its own uid (SO_PEERCRED). It keeps what every run would otherwise pay for: the
interpreter, asyncio and aiosmtplib, the parsed configuration and the plugins (reloaded when the file's inode, mtime,
ctime or size changes), and an authenticated SMTP connection per identity (:mod:`esmtp.smtp.kept`). Each request
runs :func:`esmtp.cli.main` in a thread of its own, with the caller's stdout, stderr and spooled standard input in
place of the process's, so the caller sees what a run of its own would give. It exits after ``relay_daemon_idle``
seconds without a request. Started by the front end (or by systemd socket activation: contrib/).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from esmtp.crashpoints import crashpoint
from esmtp.errors import EsmtpError
from esmtp.front import PROTOCOL, fingerprint, socket_call
from esmtp.relay.serving import (
    BadRequest,
    Serving,
    caller_streams,
    close_all,
    install_routing,
    peer_credentials,
    receive,
)

if TYPE_CHECKING:
    from esmtp.config.model import Config
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.smtp.kept import KeptSessions

DEFAULT_IDLE = 300.0


#: Held while a request has moved its streams and directory onto the process's (for commands it runs: MDA, hooks).
_process_wide = threading.Lock()


# ---- configuration, cached and reloaded on change --------------------------------------------------------------------


def _signature(paths: list[str]) -> tuple[tuple[int, ...] | None, ...]:
    found: list[tuple[int, ...] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            found.append(None)
            continue
        # ctime too: an in-place edit of the same size with the old mtime put back changes nothing else.
        found.append((info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_mode, info.st_uid))
    return tuple(found)


class Configs:
    """The parsed configuration and loaded plugins for each ``-C`` value; loaded again when a file changes."""

    def __init__(self, sessions: KeptSessions) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._cache: dict[str | None, tuple[tuple[Any, ...], Config | None, Hooks]] = {}

    @staticmethod
    def _candidates(config_file: str | None) -> list[str]:
        if config_file is not None:
            return [config_file]
        from esmtp.cli import system_config

        home = os.environ.get("HOME")
        return ([os.path.join(home, ".esmtprc")] if home else []) + [system_config()]

    def load(self, options: Options, *, need_config: bool, tolerant: bool = False) -> tuple[Config | None, Hooks]:
        """:func:`esmtp.cli._load`, from the cache while the file is unchanged: the same errors, and with
        ``tolerant`` (mailq) the same warning and a run without the configuration, so that a broken file gives the
        same answers here as in a run of its own."""
        from esmtp.errors import ConfigError, ConfigNotFound

        try:
            return self._load(options, need_config=need_config)
        except ConfigError as error:
            if not tolerant or isinstance(error, ConfigNotFound):
                raise
            from esmtp.cli import ignore_broken
            from esmtp.plugins import load_hooks

            ignore_broken(error)
            return None, load_hooks(None)

    def _load(self, options: Options, *, need_config: bool) -> tuple[Config | None, Hooks]:
        from esmtp.cli import system_config
        from esmtp.config.files import load_config

        key = options.config_file
        signature = _signature(self._candidates(key))
        with self._lock:
            cached = self._cache.get(key)
            if cached is None or cached[0] != signature:
                if cached is not None:
                    self.sessions.reset()  # identities are new objects: their kept sessions go
                config, hooks = self._fresh(key)
                cached = self._cache[key] = (signature, config, hooks)
        _, config, hooks = cached
        if config is None and need_config:
            load_config(key, system_path=system_config())  # raises the ConfigNotFound a run of its own reports
        return config, hooks

    @staticmethod
    def _fresh(key: str | None) -> tuple[Config | None, Hooks]:
        from esmtp.cli import system_config
        from esmtp.config.files import load_config
        from esmtp.errors import ConfigNotFound
        from esmtp.plugins import load_hooks, resolve_config

        config: Config | None
        try:
            config = load_config(key, system_path=system_config())
        except ConfigNotFound:
            config = None
        hooks = load_hooks(config)
        if hooks.loader is not None:
            hooks.loader.load_all()  # now, not lazily from concurrent request threads
        if config is not None:
            resolve_config(config, hooks)
        return config, hooks

    def setting(self, config_file: str | None) -> tuple[bool, float]:
        """Whether the configuration lets the relay run (``relay_daemon``, ``ESMTP_RELAY_DAEMON``), and its idle
        time. A configuration that cannot be read leaves the answer to the front end's own scan of the file (so that
        removing ``relay_daemon auto`` from a broken file still ends the process, as it would a run of its own)."""
        from esmtp.front import config_setting
        from esmtp.options import Options

        forced = os.environ.get("ESMTP_RELAY_DAEMON")
        try:
            config, _ = self.load(Options(config_file=config_file), need_config=False)
        except (EsmtpError, OSError):
            return forced == "1" or (forced != "0" and config_setting(config_file) == "auto"), DEFAULT_IDLE
        options = config.options if config is not None else {}
        enabled = forced == "1" or (forced != "0" and options.get("relay_daemon") == "auto")
        return enabled, float(options.get("relay_daemon_idle") or DEFAULT_IDLE)


# ---- the server ------------------------------------------------------------------------------------------------------


class RelayServer(Serving):
    """Serves its own user's requests until idle (``relay_daemon_idle``), each in its own thread."""

    def __init__(self, listener: socket.socket, path: str, adopt_environment: bool) -> None:
        from esmtp.smtp.kept import KeepPolicy, KeptSessions

        #: Socket activation: the socket file is systemd's, not ours to remove.
        super().__init__(listener, None if adopt_environment else path)
        self.adopt_environment = adopt_environment
        self.sessions = KeptSessions(KeepPolicy(bracketed=False))
        self.configs = Configs(self.sessions)
        self.idle = DEFAULT_IDLE

    def should_stop(self) -> bool:
        return self.active == 0 and time.monotonic() - self.last_request > self.idle

    def tick(self) -> None:
        self.sessions.sweep()

    def finish(self) -> None:
        self.sessions.close()

    def handle(self, conn: socket.socket) -> None:
        if peer_credentials(conn)[1] != os.getuid():
            return  # never serve another user (root's process serves only root)
        try:
            fields, fds = receive(conn)
        except BadRequest:
            return
        try:
            conn.sendall(self._answer(fields, fds))
        finally:
            close_all(fds)

    def _answer(self, fields: list[bytes], fds: list[int]) -> bytes:
        if len(fields) < 4 or fields[0] != PROTOCOL or len(fds) not in (2, 3):
            return b"local\n"
        cwd, theirs = (field.decode("utf-8", "surrogateescape") for field in fields[1:3])
        argv = [field.decode("utf-8", "surrogateescape") for field in fields[3:]]
        if self.adopt_environment:
            _adopt(theirs)
            self.adopt_environment = False
        config_file = _config_file(argv, cwd)
        if theirs != fingerprint(config_file):
            return b"local\n"  # another environment: a run of its own gives what the caller expects
        enabled, self.idle = self.configs.setting(config_file)
        if not enabled:
            self.stopping = True
            return b"local\n"
        crashpoint("handover")
        code = self._run(argv, cwd, fds)
        crashpoint("reply")
        return f"{code}\n".encode()

    def _run(self, argv: list[str], cwd: str, fds: list[int]) -> int:
        """Run the command with the caller's streams: stdout, stderr and (for a message) the spool file."""
        from esmtp.cli import main as run_command

        with caller_streams(fds[0], fds[1], fds[2] if len(fds) == 3 else None):
            exclusive = self._runs_commands(argv, cwd)
            if exclusive:
                _process_wide.acquire()
                saved = _redirect_process(fds[0], fds[1], cwd)
            try:
                return run_command(argv, load=self.configs.load, sessions=self.sessions, cwd=cwd)
            finally:
                if exclusive:
                    _restore_process(saved)
                    _process_wide.release()

    def _runs_commands(self, argv: list[str], cwd: str) -> bool:
        """Whether the configuration names commands (MDA, pre/postconnect) that inherit stdout, stderr and the
        working directory: such runs move the caller's onto the process for their duration, one at a time."""
        from esmtp.options import Options

        try:
            config, _ = self.configs.load(Options(config_file=_config_file(argv, cwd)), need_config=False)
        except (EsmtpError, OSError):
            return False
        if config is None:
            return False
        return bool(config.mda or config.force_mda
                    or any(identity.preconnect or identity.postconnect for identity in config.identities))


def _redirect_process(out: int, err: int, cwd: str) -> tuple[int, int, int]:
    saved = (os.dup(1), os.dup(2), os.open(".", os.O_RDONLY))
    os.dup2(out, 1)
    os.dup2(err, 2)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    return saved


def _restore_process(saved: tuple[int, int, int]) -> None:
    out, err, directory = saved
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.fchdir(directory)
    for fd in saved:
        os.close(fd)


def _config_file(argv: list[str], cwd: str) -> str | None:
    from esmtp.front import scan_argv

    scanned = scan_argv(argv)
    config = scanned[1] if scanned is not None else None
    return os.path.join(cwd, config) if config else config


def _adopt(theirs: str) -> None:
    """Socket activation: take the first caller's environment (systemd's is not the user's shell's): the variables
    of :data:`esmtp.front.FINGERPRINT_VARS`, and every ``ESMTP_`` variable, which the fingerprint holds too (those
    the caller does not have go)."""
    from esmtp.front import FINGERPRINT_VARS

    theirs_esmtp = set()
    for part in theirs.split("\x1f"):
        name, _, value = part.partition("=")
        if name in FINGERPRINT_VARS:
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        elif name.startswith("ESMTP_"):
            theirs_esmtp.add(name)
            os.environ[name] = value
    for name in [name for name in os.environ if name.startswith("ESMTP_")]:
        if name not in theirs_esmtp and name not in FINGERPRINT_VARS:
            del os.environ[name]


# ---- start-up --------------------------------------------------------------------------------------------------------


def _listen(path: str) -> tuple[socket.socket, bool]:
    """The listening socket: systemd's (socket activation), else ours at ``path`` (a stale file is replaced)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) >= 1:
        return socket.socket(fileno=3), True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # we hold the lock: a file here is a dead process's
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        socket_call(listener.bind, path)  # (through a short name when the path is longer than sun_path takes)
    finally:
        os.umask(old_mask)
    listener.listen(128)
    return listener, False


def sweep_spool_files(directory: str | None = None) -> None:
    """Remove the message spool files (``esmtp-PID-*.body``, :func:`esmtp.message.read_message`) that processes of
    ours left in ``$TMPDIR`` when they were killed (SIGKILL runs no clean-up): only regular files of this uid whose
    process is gone. A resident process runs this as it starts, so one killed in the middle of DATA leaves nothing
    for long."""
    import re

    directory = directory or os.environ.get("TMPDIR") or "/tmp"
    name = re.compile(r"esmtp-(\d+)-[0-9a-f]{12}\.body")
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            found = name.fullmatch(entry.name)
            if found is None or int(found.group(1)) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if info.st_uid != os.getuid() or (info.st_mode & 0o170000) != 0o100000:
                    continue
                if _gone(int(found.group(1))):
                    os.unlink(entry.path)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie that nobody has reaped yet included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # another user's process with that pid: not ours to judge
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def main(args: list[str]) -> int:
    """``python -c ... SOCKET_PATH [CONFIG]``: serve until idle. Exits at once if another process already serves the
    path. ``CONFIG`` is the ``-C`` file of the callers it serves (absolute), whose ``relay_daemon_idle`` applies from
    the start: a process started for one message and never used again must not wait the default."""
    if len(args) not in (1, 2):
        sys.stderr.write("usage: relay_daemon SOCKET_PATH [CONFIG]\n")
        return 64
    path = args[0]
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another front end started it first
    listener, activated = _listen(path)  # listening now: front ends wait in the backlog while the rest loads
    with contextlib.suppress(OSError):
        os.unlink(path + ".starting")
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    install_routing()
    sweep_spool_files()
    from esmtp.smtp import session as smtp  # noqa: F401  (what every message needs, loaded once)

    server = RelayServer(listener, path, adopt_environment=activated)
    if not activated:  # systemd's environment is not yet the callers': their first request sets the idle time
        server.idle = server.configs.setting(args[1] if len(args) == 2 else None)[1]
    return server.serve()
