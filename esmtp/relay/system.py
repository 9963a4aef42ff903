"""The system service (``esmtp --system-daemon``): one relay configuration and one queue for every local account.

Started as root (by systemd, or in the foreground as a container's main process), it binds the submission socket
(``/run/esmtp/submit.sock``, mode 0666 in a 0755 directory; or takes systemd's), then drops to the system user
``esmtp`` for good: no supplementary groups, the user's gid and uid, and a check that root cannot be regained. From
then on it reads ``/etc/esmtprc`` (``root:esmtp``, mode 0640) through its group, and owns the system spool (the queue
and the maildrop).

Each local user's front end (:mod:`esmtp.front`) hands it a run as it would to the warm relay: argv, the spooled
message and its own stdout and stderr (:mod:`esmtp.relay.serving`). The kernel names the user (SO_PEERCRED); the run
is :func:`esmtp.cli.main` with the system's configuration and plugins, never the user's environment, ``-C`` file or
commands, and with the submitter known (:mod:`esmtp.submitter`: the sender policy, the ``Received:`` field, the
queue seen per user). While the service is down, front ends leave messages in the maildrop (a sticky, setgid,
write-only directory); the service takes them in at start and every :data:`INTAKE_EVERY` seconds, treating every
file there as hostile (:func:`Maildrop.take`). SIGTERM or SIGINT: it stops accepting, finishes what it holds, exits.

All paths move with environment variables (:class:`Paths`): see docs/system.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from esmtp.errors import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOHOST,
    EX_NOPERM,
    EX_NOUSER,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    ConfigError,
    EsmtpError,
    UsageError,
)
from esmtp.front import MAILDROP_MAGIC, SYSTEM_PROTOCOL, SYSTEM_SOCKET, message_limit, system_maildrop, system_path
from esmtp.relay.serving import (
    MAX_REQUEST,
    BadRequest,
    Serving,
    caller_streams,
    close_all,
    install_routing,
    peer_credentials,
    receive,
)

if TYPE_CHECKING:
    import pwd

    from esmtp.config.model import Config
    from esmtp.options import Options
    from esmtp.plugins import Hooks

#: Seconds between two looks at the maildrop while the service runs.
INTAKE_EVERY = 5.0
#: A maildrop file that is not complete yet is left alone this long (its writer may still be at it).
MAILDROP_GRACE = 600.0
#: Requests one account may have in progress at once, and all accounts together (a caller that never reads its
#: stderr holds a thread). Beyond that the service answers "busy": a message then goes to the maildrop.
PER_USER = 16
IN_PROGRESS = 128
#: Exit codes that say the message itself cannot be sent (its command line, its data, its addresses): a maildrop
#: file that ends so is moved aside. Any other failure (temporary, the configuration, a refused login) is the
#: system's, and the file stays in the maildrop for the next intake.
MESSAGE_ERRORS = (EX_USAGE, EX_DATAERR, EX_NOUSER, EX_NOHOST, EX_UNAVAILABLE)
#: The commands of the command line the service runs; the others are run by the user's own front end.
MODES = ("deliver", "mailq", "flush", "remove")


@dataclass(frozen=True, slots=True)
class Paths:
    """The system paths and the system user, each movable by an environment variable (for tests and packagers)."""

    socket: str
    config: str
    spool: str
    maildrop: str
    user: str

    @classmethod
    def from_environment(cls) -> Paths:
        spool = system_path("ESMTP_SYSTEM_SPOOL", "/var/spool/esmtp")
        return cls(
            socket=system_path("ESMTP_SYSTEM_SOCKET", SYSTEM_SOCKET),
            config=system_path("ESMTP_SYSTEM_CONFIG", "/etc/esmtprc"),
            spool=spool,
            maildrop=system_maildrop(),
            user=system_path("ESMTP_SYSTEM_USER", "esmtp"),
        )

    @property
    def queue(self) -> str:
        return os.path.join(self.spool, "queue")

    @property
    def failed(self) -> str:
        """Maildrop files that could not be sent and were not queued: kept here, never lost."""
        return os.path.join(self.spool, "maildrop-failed")

    @property
    def tmp(self) -> str:
        return os.path.join(self.spool, "tmp")

    def directories(self) -> list[tuple[str, int, bool]]:
        """``(path, mode, owned by the system user)`` of each directory, in creation order."""
        return [(os.path.dirname(self.socket), 0o755, False), (self.spool, 0o711, True), (self.queue, 0o700, True),
                (self.tmp, 0o700, True), (self.failed, 0o700, True), (self.maildrop, 0o3733, True)]


def log(text: str) -> None:
    """A line for the service's log (its stderr: the journal under systemd)."""
    with contextlib.suppress(OSError):
        os.write(2, f"esmtp-system: {text}\n".encode("utf-8", "backslashreplace"))


# ---- the configuration ---------------------------------------------------------------------------------------------


def check_config_file(path: str, config: Config | None = None) -> None:
    """Refuse a system configuration that a local user could change, or read when it holds a secret.

    Raises ConfigError naming the file, its owner or mode, and the fix.
    """
    fix = f"fix it with: chown root:esmtp {path} && chmod 0640 {path}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: write the relay's settings there (see docs/system.md), "
                          f"then {fix}") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} must be a regular file")
    if info.st_uid != 0:
        raise ConfigError(f"{path} must be owned by root (it is owned by uid {info.st_uid}): {fix}")
    if mode & 0o022:
        raise ConfigError(f"{path} may be changed by users other than root (mode {mode:04o}): {fix}")
    if config is not None and mode & 0o004 and _holds_secret(config):
        raise ConfigError(f"{path} holds a secret but every local user can read it (mode {mode:04o}): {fix}")


def _holds_secret(config: Config) -> bool:
    from esmtp.config.model import CORE_KEYWORDS

    secret = {spec.name for spec in CORE_KEYWORDS if spec.secret}
    return any(identity.password is not None or any(name in secret or "secret" in name or "token" in name
                                                     for name in identity.options)
               for identity in config.identities)


# ---- privileges ----------------------------------------------------------------------------------------------------


def drop_privileges(account: pwd.struct_passwd) -> None:
    """Become the system user for good: no supplementary groups, its gid, its uid; then check that root is gone."""
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    for regain in (os.setuid, os.setgid, os.seteuid, os.setegid):
        try:
            regain(0)
        except PermissionError:
            continue
        raise SystemExit("esmtp-system: could still become root after dropping privileges; stopping")
    if 0 in os.getresuid() or 0 in os.getresgid() or os.getgroups():
        raise SystemExit("esmtp-system: privileges were not dropped completely; stopping")


def _sanitised_environment(paths: Paths) -> None:
    """The service's own environment: the settings it was given, none of a user's, and its own places."""
    kept = {name: value for name, value in os.environ.items()
            if name.startswith("ESMTP_SYSTEM_") or name in ("TZ", "LANG", "LC_ALL", "ESMTP_DEBUG")}
    os.environ.clear()
    os.environ.update(kept)
    os.environ.update({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": paths.spool,
                       "TMPDIR": paths.tmp, "ESMTP_QUEUE_DIR": paths.queue, "ESMTP_RELAY_DAEMON": "0"})


# ---- the service ---------------------------------------------------------------------------------------------------


class SystemServer(Serving):
    """Serves every local user's submissions and queue commands; takes in the maildrop."""

    def __init__(self, listener: socket.socket, path: str | None, paths: Paths) -> None:
        from esmtp.relay.daemon import Configs
        from esmtp.smtp.kept import KeepPolicy, KeptSessions

        super().__init__(listener, path)
        self.paths = paths
        #: One kept, logged-in connection per identity, shared by every account's messages.
        self.sessions = KeptSessions(KeepPolicy())
        self.configs = Configs(self.sessions)
        self.maildrop = Maildrop(self)
        self._per_user: dict[int, int] = {}
        self._intake_lock = threading.Lock()
        self._last_intake = 0.0

    # ---- what every run needs ----

    def load(self, options: Options, *, need_config: bool, tolerant: bool = False) -> tuple[Config | None, Hooks]:
        """The system configuration, checked (:func:`check_config_file`) at every use, whatever the request asked
        for: the service always needs it, so ``need_config`` and ``tolerant`` (the signature of
        :func:`esmtp.cli._load`) change nothing."""
        from esmtp.options import Options

        config, hooks = self.configs.load(Options(config_file=self.paths.config), need_config=True)
        check_config_file(self.paths.config, config)
        return config, hooks

    def vet(self, options: Options) -> None:
        """Refuse what a local user may not ask of the service (raised as the run's error, with its exit code)."""
        from esmtp.submitter import allows_override, current

        submitter = current.get()
        assert submitter is not None
        if options.config_file is not None:
            raise UsageError("-C is not available through the system service (it uses the system's configuration "
                             "only); put your own settings in ~/.esmtprc to send with them")
        if options.transcript is not None:
            raise UsageError("-X is not available through the system service (use -v)")
        if options.mode not in MODES or options.pretend:
            raise UsageError("this command is not available through the system service")
        if options.mode == "flush" and not submitter.is_root:
            raise EsmtpError("only root may flush the system queue", exit_code=EX_NOPERM)
        if options.identity is not None and options.mode == "deliver":
            config, _ = self.load(options, need_config=True)
            if config is not None and not allows_override(config):
                raise EsmtpError("--identity is not available here: the system configuration sets "
                                 "allow_from_override off", exit_code=EX_NOPERM)

    def run(self, submitter_uid: int, argv: list[str], out: int, err: int, spool: int | None) -> int:
        """Run ``argv`` for the account ``submitter_uid`` with these descriptors as its streams."""
        from esmtp.cli import main as run_command
        from esmtp.submitter import Submitter, current

        token = current.set(Submitter.of(submitter_uid))
        try:
            with caller_streams(out, err, spool):
                return run_command(argv, load=self.load, sessions=self.sessions, vet=self.vet)
        finally:
            current.reset(token)

    # ---- requests on the socket ----

    def handle(self, conn: socket.socket) -> None:
        _, uid, _ = peer_credentials(conn)
        with self._lock:
            busy = self._per_user.get(uid, 0) >= PER_USER or sum(self._per_user.values()) >= IN_PROGRESS
            if not busy:
                self._per_user[uid] = self._per_user.get(uid, 0) + 1
        if busy:
            log(f"busy: uid {uid} has {PER_USER} requests in progress (or all accounts {IN_PROGRESS}); "
                "its message goes to the maildrop")
            conn.sendall(b"busy\n")  # not a code: the front end leaves a message in the maildrop
            return
        try:
            try:
                fields, fds = receive(conn)
            except BadRequest as error:
                log(f"refused a request from uid {uid}: {error}")
                conn.sendall(b"%d\n" % EX_USAGE)
                return
            try:
                code = self._answer(uid, fields, fds)
            finally:
                close_all(fds)
            conn.sendall(b"%d\n" % code)
        finally:
            with self._lock:
                self._per_user[uid] -= 1
                if not self._per_user[uid]:
                    del self._per_user[uid]

    def _answer(self, uid: int, fields: list[bytes], fds: list[int]) -> int:
        if len(fields) < 3 or fields[0] != SYSTEM_PROTOCOL or len(fds) not in (2, 3):
            log(f"refused a request from uid {uid}: not a request of {SYSTEM_PROTOCOL.decode()} with the caller's "
                "stdout, stderr and message")
            return EX_USAGE
        if fields[1] != b"uid=%d" % uid:
            claimed = fields[1].decode("ascii", "replace")[:40]
            log(f"refused a request from uid {uid}: it claims {claimed}")
            _tell(fds[1], f"esmtp: refused: the request claims {claimed} but comes from uid {uid}\n")
            return EX_NOPERM
        if len(fds) == 3:
            try:
                regular = stat.S_ISREG(os.fstat(fds[2]).st_mode)
            except OSError:
                regular = False
            if not regular:
                log(f"refused a request from uid {uid}: the message is not a regular file")
                _tell(fds[1], "esmtp: refused: the message must come as a regular file\n")
                return EX_USAGE
            size = os.fstat(fds[2]).st_size
            if size > message_limit():
                log(f"refused a message of {size} bytes from uid {uid}: larger than the limit")
                program = os.path.basename(fields[2].decode("utf-8", "replace"))
                _tell(fds[1], f"{program}: the message ({size} bytes) is larger than the mail system's limit "
                              f"({message_limit()} bytes); nothing was sent\n")
                return EX_DATAERR
        argv = [field.decode("utf-8", "surrogateescape") for field in fields[2:]]
        return self.run(uid, argv, fds[0], fds[1], fds[2] if len(fds) == 3 else None)

    # ---- housekeeping ----

    def tick(self) -> None:
        self.sessions.sweep()
        if time.monotonic() - self._last_intake >= INTAKE_EVERY:
            self.start_intake()

    def start_intake(self) -> None:
        """Take in the maildrop in a thread of its own (one at a time), so that submissions go on meanwhile."""
        if not self._intake_lock.acquire(blocking=False):
            return
        self._last_intake = time.monotonic()

        def intake() -> None:
            try:
                self.maildrop.take_all()
            except Exception as error:  # noqa: BLE001  (a bug must not stop the service: the next intake retries)
                log(f"maildrop: {type(error).__name__}: {error}")
            finally:
                self._last_intake = time.monotonic()
                self._intake_lock.release()

        threading.Thread(target=intake, daemon=True).start()

    def finish(self) -> None:
        with self._intake_lock:  # an intake in progress ends its current file first
            self.sessions.close()


def _tell(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode("utf-8", "backslashreplace"))


# ---- the maildrop --------------------------------------------------------------------------------------------------


class Refused(Exception):
    """A maildrop file that is not taken in (and is removed): the reason is logged."""


class NotReady(Exception):
    """A maildrop file that may still be being written: left for a later intake."""


class Maildrop:
    """The files front ends leave while the service is down (:func:`esmtp.front._maildrop`), taken in as hostile
    input: opened without following links and without blocking, only regular files with one link, owned by the uid
    they claim, within the size limit, complete; the others are refused (removed, and logged). Accounts are served
    in turn, so that one account's flood does not hold up the others."""

    def __init__(self, server: SystemServer) -> None:
        self.server = server
        self.path = server.paths.maildrop
        self.limit = message_limit()

    def take_all(self) -> int:
        """Take in every complete file; return how many were sent or queued."""
        try:
            directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            log(f"maildrop {self.path}: {error.strerror}")
            return 0
        taken = 0
        try:
            for name in self._in_turn(directory):
                if self.server.stopping:
                    break
                taken += self.take(directory, name)
        finally:
            os.close(directory)
        return taken

    @staticmethod
    def _in_turn(directory: int) -> list[str]:
        """The names, oldest first for each owner, the owners taking turns."""
        by_owner: dict[int, list[tuple[float, str]]] = {}
        for name in os.listdir(directory):
            with contextlib.suppress(OSError):
                info = os.lstat(name, dir_fd=directory)
                by_owner.setdefault(info.st_uid, []).append((info.st_mtime, name))
        queues = [sorted(files) for files in by_owner.values()]
        order: list[str] = []
        for turn in range(max((len(files) for files in queues), default=0)):
            order += [files[turn][1] for files in queues if turn < len(files)]
        return order

    def take(self, directory: int, name: str) -> int:
        """Take in one file: 1 when it was sent or queued (and removed), else 0."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=directory)
        except FileNotFoundError:
            return 0
        except OSError as error:
            if error.errno == errno.ELOOP:
                self._refuse(directory, name, "a symbolic link")
            elif self._older_than_grace(directory, name):  # unreadable for good (not the service's group)
                self._refuse(directory, name, f"it cannot be opened ({error.strerror})")
            return 0
        try:
            uid, argv, start = self._check(fd)
        except NotReady:
            os.close(fd)
            return 0
        except Refused as why:
            os.close(fd)
            self._refuse(directory, name, str(why))
            return 0
        try:
            return self._send(directory, name, fd, uid, argv, start)
        finally:
            os.close(fd)  # releases the lock

    def _check(self, fd: int) -> tuple[int, list[str], int]:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not a regular file")
        if info.st_nlink != 1:
            raise Refused(f"it has {info.st_nlink} links")
        if info.st_size > self.limit + MAX_REQUEST + 128:  # the message, its command line and the header lines
            raise Refused(f"larger than the message limit ({info.st_size} > {self.limit} bytes)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NotReady from None  # its writer holds it
        young = time.time() - info.st_mtime < MAILDROP_GRACE
        head = os.pread(fd, len(MAILDROP_MAGIC) + 64, 0)
        if not head.startswith(MAILDROP_MAGIC):
            if young and MAILDROP_MAGIC.startswith(head):
                raise NotReady
            raise Refused("not a maildrop file")
        lines = head[len(MAILDROP_MAGIC):].split(b"\n", 3)
        if len(lines) < 4 or not all(part.isdigit() for part in lines[:3]):
            if young and len(head) < len(MAILDROP_MAGIC) + 64:
                raise NotReady
            raise Refused("its header is damaged")
        claimed, words, size = (int(part) for part in lines[:3])
        if claimed != info.st_uid:
            raise Refused(f"it claims uid {claimed} but belongs to uid {info.st_uid}")
        if size > self.limit:
            raise Refused(f"larger than the message limit ({size} > {self.limit} bytes)")
        start = len(MAILDROP_MAGIC) + sum(len(part) + 1 for part in lines[:3])
        if words > MAX_REQUEST:
            raise Refused("its command line is too long")
        if start + words + size != info.st_size:
            if young and start + words + size > info.st_size:
                raise NotReady  # cut short, or still being written by a writer that lost its lock: wait
            raise Refused("its size does not match what it says")
        argv = [word.decode("utf-8", "surrogateescape") for word in os.pread(fd, words, start).split(b"\0")]
        if not argv or not argv[0]:
            raise Refused("its command line is empty")
        return claimed, argv, start + words

    def _send(self, directory: int, name: str, fd: int, uid: int, argv: list[str], start: int) -> int:
        os.lseek(fd, start, os.SEEK_SET)
        log(f"maildrop: {name} from uid {uid}: taking it in")
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            code = self.server.run(uid, argv, null, 2, fd)
        finally:
            os.close(null)
        if code not in (0, *MESSAGE_ERRORS):
            log(f"maildrop: {name}: not sent or queued (exit {code}); kept for the next intake")
            return 0
        if code != 0:
            log(f"maildrop: {name}: cannot be sent (exit {code}); kept in {self.server.paths.failed}")
            try:
                os.rename(name, os.path.join(self.server.paths.failed, name), src_dir_fd=directory)
            except OSError as error:
                log(f"maildrop: {name}: cannot be moved ({error.strerror}); left in the maildrop")
            return 0
        os.unlink(name, dir_fd=directory)
        log(f"maildrop: {name}: sent or queued")
        return 1

    @staticmethod
    def _older_than_grace(directory: int, name: str) -> bool:
        try:
            return time.time() - os.lstat(name, dir_fd=directory).st_mtime >= MAILDROP_GRACE
        except OSError:
            return False

    @staticmethod
    def _refuse(directory: int, name: str, reason: str) -> None:
        log(f"maildrop: refused {name}: {reason}; removed")
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=directory)


# ---- start-up ------------------------------------------------------------------------------------------------------


def prepare_directories(paths: Paths, account: pwd.struct_passwd) -> list[str]:
    """Create the directories with their owners and modes, or correct them; return what was done (as sentences).

    A directory that is a symbolic link, or that is not a directory, is an error (ConfigError).
    """
    done: list[str] = []
    for path, mode, owned in paths.directories():
        uid, gid = (account.pw_uid, account.pw_gid) if owned else (0, 0)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.mkdir(path, 0o700)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            done.append(f"created {path} ({'esmtp' if owned else 'root'}, mode {mode:04o})")
            continue
        if not stat.S_ISDIR(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
            raise ConfigError(f"{path} must be a directory owned by {paths.user if owned else 'root'} ({kind})")
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            done.append(f"gave {path} to {paths.user if owned else 'root'}")
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
            done.append(f"set the mode of {path} to {mode:04o} (it was {stat.S_IMODE(info.st_mode):04o})")
    return done


def system_account(paths: Paths) -> pwd.struct_passwd:
    import pwd

    try:
        return pwd.getpwnam(paths.user)
    except KeyError:
        raise ConfigError(f"there is no system user '{paths.user}': run esmtp --system-setup first") from None


def _listen(path: str) -> tuple[socket.socket, bool]:
    """systemd's socket (socket activation), else ours at ``path``, connectable by every local user."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) >= 1:
        return socket.socket(fileno=3), True
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a previous run's (we are the only one: see the lock in main)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(128)
    return listener, False


def main() -> int:
    """``esmtp --system-daemon``: serve in the foreground until SIGTERM or SIGINT."""
    if os.geteuid() != 0:
        sys.stderr.write("esmtp: --system-daemon must be started as root (it binds its socket, then runs as the "
                         "system user)\n")
        return EX_NOPERM
    from esmtp.options import Options

    paths = Paths.from_environment()
    try:
        account = system_account(paths)
        for line in prepare_directories(paths, account):
            log(line)
        lock = os.open(os.path.join(paths.spool, "service.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write(f"esmtp: the system service is already running (it holds {paths.spool}/service.lock)\n")
            return EX_TEMPFAIL
        listener, activated = _listen(paths.socket)
        drop_privileges(account)
        os.umask(0o077)
        os.chdir("/")
        _sanitised_environment(paths)
        server = SystemServer(listener, None if activated else paths.socket, paths)
        server.load(Options(), need_config=True)  # refuse to start on a configuration that cannot be used
    except ConfigError as error:
        sys.stderr.write(f"esmtp: {error}\n")
        return EX_CONFIG
    install_routing()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: server.stop())
    from esmtp.smtp import session as smtp  # noqa: F401  (what every message needs, loaded once)

    log(f"serving {paths.socket} as user {paths.user} (uid {os.getuid()}), configuration {paths.config}")
    server.start_intake()
    code = server.serve()
    log("stopped")
    return code
