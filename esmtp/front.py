"""The ``sendmail``/``mailq`` entry point: hand the run to the warm relay (:mod:`esmtp.relay.daemon`), else run it here.

This module is the whole start-up cost of a warm run, so it imports ``os``, ``sys`` and ``socket`` (its C half,
``_socket``) and nothing else: no pluggy, no dataclasses, no ``typing``, no other module of the package until it
falls back.

A message run spools standard input to an unlinked private file first, so nothing can be lost later. The file's
descriptor, the caller's stdout and stderr, argv and the working directory go over a Unix socket to the resident
process of this user and configuration (SCM_RIGHTS); it runs the command exactly as :mod:`esmtp.cli` would, writing
to the caller's own stdout/stderr, and answers with the exit code. If no resident process answers, this process
starts one for the next message (``relay_daemon auto``) and runs the command itself, reading the message back from
its spool file. See docs/performance.md ("The warm relay").
"""

# No `from __future__ import annotations`: that is an import of its own, and these annotations are cheap to evaluate.
# The C half of `socket`: the same calls without the module's enums (a few milliseconds of every start).
import _socket as socket
import os
import sys

TYPE_CHECKING = False  # no `typing` import: see above
if TYPE_CHECKING:
    from collections.abc import Iterator

#: Letters that take an argument: :mod:`esmtp.options`' ``_WITH_ARGUMENT`` (a copy, not an import: start-up cost;
#: tests/test_options.py checks that they agree, and that the scan reads every option as the parser does).
_WITH_ARGUMENT = "aABbCdeFfhLMNOopRrVX"
#: Environment that changes what a run does: a resident process serves only callers that agree on all of it. Every
#: variable that esmtp or its plugins read is here (tests/test_relay.py greps the code for them), and what the
#: libraries read that matters (PYTHON_KEYRING_BACKEND: keyring's choice of backend).
FINGERPRINT_VARS = ("HOME", "TZ", "PATH", "TMPDIR", "LANG", "LC_ALL", "PYTHONPATH", "XDG_CACHE_HOME",
                    "XDG_STATE_HOME", "XDG_CONFIG_DIR", "XDG_DATA_HOME", "USER", "LOGNAME", "NETRC",
                    "PYTHON_KEYRING_BACKEND", "ESMTP_KEYRING_BACKEND", "ESMTP_QUEUE_DIR", "ESMTP_PLUGIN_AUTOLOAD",
                    "ESMTP_STRICT_PLUGINS", "ESMTP_DISABLE_PLUGINS", "ESMTP_DEBUG", "ESMTP_RELAY_DAEMON",
                    "ESMTP_RELAY_TEST_CRASH", "ESMTP_QUEUE_CRASH_AT", "ESMTP_QUEUE_CLOCK_OFFSET", "ESMTP_BS_TIMEOUT",
                    "ESMTP_OAUTH2_LOGIN_TIMEOUT", "ESMTP_SYSTEM_CONFIG")
PROTOCOL = b"esmtp-relay-1"
#: The system service's protocol (:mod:`esmtp.relay.system`): the same frame, with these fields.
SYSTEM_PROTOCOL = b"esmtp-system-1"
#: Where the system service listens (``ESMTP_SYSTEM_SOCKET``) and where messages wait while it is down
#: (``ESMTP_SYSTEM_MAILDROP``): see docs/system.md.
SYSTEM_SOCKET = "/run/esmtp/submit.sock"
SYSTEM_MAILDROP = "/var/spool/esmtp/maildrop"
#: The largest message the system service takes (``ESMTP_SYSTEM_MESSAGE_LIMIT`` bytes), through its socket or its
#: maildrop: a bound on what one local user can make it spool.
MESSAGE_LIMIT = 64 << 20
#: The first line of a maildrop file; then the submitter's uid, the argv size, the message size and the argv.
MAILDROP_MAGIC = b"esmtp-maildrop-1\n"
CHUNK = 1 << 16
#: How long a front end waits for a resident process that another front end has just started.
STARTING_WAIT = 3.0


def _options(argv: list[str]) -> "Iterator[tuple[str, str]]":
    """Each option of ``argv`` (up to ``--``) as ``(name, argument)``, read as :mod:`esmtp.options` reads them: a
    letter of a short-option word with its argument when it takes one (glued, else the next word; "" when missing),
    ``q`` with the rest of its word (``-q5m``, ``-qIid``), and a long option ``--name`` with its ``=value`` ("" when
    absent; ``--identity`` takes the next word when it has none). The one walk behind both scanners below."""
    index = 1
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            return
        if word.startswith("--"):
            name, _, value = word.partition("=")
            if name == "--identity" and "=" not in word and index < len(argv):
                value, index = argv[index], index + 1
            yield name, value
            continue
        if not word.startswith("-") or word == "-":
            continue
        for pos in range(1, len(word)):
            letter = word[pos]
            if letter == "q":
                yield letter, word[pos + 1:]
                break
            if letter in _WITH_ARGUMENT:
                argument = word[pos + 1:]
                if not argument and index < len(argv):
                    argument, index = argv[index], index + 1
                yield letter, argument
                break
            yield letter, ""


def scan_argv(argv: list[str]) -> tuple[str, str | None] | None:
    """``(mode, -C file)`` for a run the relay can take ("deliver" or "mailq"); None for every other command.

    Only what decides the hand-over is looked at; :mod:`esmtp.options` parses the command line for real (in the
    resident process or here) and reports its errors.
    """
    program = os.path.basename(argv[0]) if argv else ""
    if program in ("newaliases", "deliver"):
        return None
    mode = "mailq" if program == "mailq" else "deliver"
    config = None
    for name, argument in _options(argv):
        if name.startswith("--") or name in ("q", "I"):
            return None  # --version, --help, --flush, --remove (or a usage error), -q, -I: run here
        if name == "b":
            mode = {"m": "deliver", "p": "mailq"}.get(argument[:1], "")
            if not mode:
                return None
        elif name == "C":
            config = argument
    return mode, config


def fingerprint(config: str | None) -> str:
    """What a resident process must share with this caller: the interpreter, the configuration and environment."""
    parts = [sys.prefix, sys.version, str(os.getuid()), config or ""]
    parts += [f"{name}={os.environ.get(name, '')}" for name in FINGERPRINT_VARS]
    # Every ESMTP_ variable: the switches above and the ESMTP_<KEYWORD> settings of a configuration without a file
    # (esmtp.config.environment), whatever keywords there are.
    parts += sorted(f"{name}={value}" for name, value in os.environ.items() if name.startswith("ESMTP_"))
    return "\x1f".join(parts)  # not NUL: that separates the fields of a request


def _hash(text: str) -> str:
    value = 0xCBF29CE484222325  # FNV-1a, 64 bits: hashlib would cost an import
    for byte in text.encode("utf-8", "surrogateescape"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def runtime_dir() -> str:
    """The private directory for the sockets: ``$XDG_RUNTIME_DIR/esmtp`` when that directory is ours (not the one
    ``sudo -E`` passes on from another user), else ``/tmp/esmtp-<uid>``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        try:
            info = os.stat(base)
        except OSError:
            pass
        else:
            if info.st_uid == os.getuid() and (info.st_mode & 0o170000) == 0o040000:
                return os.path.join(base, "esmtp")
    return f"/tmp/esmtp-{os.getuid()}"


def absolute(config: str | None) -> str | None:
    """A ``-C`` file name as the resident process must see it (it does not share our working directory)."""
    return os.path.join(os.getcwd(), config) if config and not os.path.isabs(config) else config


def socket_path(config: str | None, ours: str | None = None) -> str:
    """The socket of the resident process for ``-C config`` (absolute: see :func:`absolute`) or the default;
    ``ours``: the caller's :func:`fingerprint` for that file, if already made."""
    return os.path.join(runtime_dir(), f"relay-{_hash(ours or fingerprint(config))}.sock")


def private_dir(path: str, *, create: bool) -> bool:
    """Whether ``path`` is a real directory owned by us with mode 0700 (made so if missing and ``create``)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.mkdir(path, 0o700)
            info = os.lstat(path)
        except OSError:
            return False
    except OSError:
        return False
    return info.st_uid == os.getuid() and (info.st_mode & 0o170777) == 0o040700


def open_user_file(path: str, holds: str = "a password") -> tuple[int | None, str | None]:
    """Open ``~/.esmtprc`` as esmtp 1.2's rcfile_check allows it, without blocking on a FIFO.

    ``(fd, None)``: a regular file owned by us with no group/other bits but g+x (or a symbolic link, owned by us, to
    such a file: msmtp follows those, and dotfile managers such as GNU stow make them); ``(None, None)``: no such file;
    ``(None, problem)``: a file that must not be used, with the message to show (:mod:`esmtp.config.files` raises it
    as a ConfigError, 78). The checks are made on the opened descriptor (``O_NONBLOCK``: opening a FIFO does not
    wait for a writer), so a file swapped after a look cannot slip through. Here rather than in
    :mod:`esmtp.config.files`, which imports it: the front end makes the same check before it reads the file.
    """
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as error:
        return None, f"lstat: {path}: {error.strerror or error}"
    symlink = (link.st_mode & 0o170000) == 0o120000
    shown = path
    if symlink:
        try:
            shown = f"{path} (a symbolic link to {os.readlink(path)})"
        except OSError:
            shown = f"{path} (a symbolic link)"
        if link.st_uid != os.geteuid():
            return None, f"File {shown} must be a symbolic link owned by you."
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if symlink else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if symlink:
            return None, f"File {shown} points to a file that does not exist."
        return None, None
    except OSError as error:
        if not symlink and error.errno in (40, 6):  # ELOOP (swapped for a link since), ENXIO (a socket)
            return None, f"File {path} must be a regular file."
        return None, f"open: {path}: {error.strerror or error}"
    info = os.fstat(fd)
    problem = None
    mode = info.st_mode & 0o7777
    if (info.st_mode & 0o170000) != 0o100000:
        problem = f"File {shown} must be a regular file."
    elif mode & 0o067:
        target = os.path.realpath(path) if symlink else path
        problem = (f"File {shown} must not be readable or writable by others (it may hold {holds}), but its mode "
                   f"is {mode:04o}. Fix it with: chmod 600 {target}")
    elif info.st_uid != os.geteuid():
        problem = f"File {shown} must be owned by you."
    if problem is not None:
        os.close(fd)
        return None, problem
    return fd, None


def _open_regular(path: str) -> int | None:
    """``path`` opened if it is a regular file (a FIFO is not waited for, nor read: ``-C <(...)`` is one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if (os.fstat(fd).st_mode & 0o170000) != 0o100000:
        os.close(fd)
        return None
    return fd


def config_setting(config: str | None) -> str:
    """``relay_daemon`` as the configuration file says (``disabled`` when it says nothing): a line scan only.

    A file that esmtp would refuse (a FIFO, a ``~/.esmtprc`` open to others...) reads as ``disabled``: the command
    then runs here, where :mod:`esmtp.config.files` refuses it with its message, as it would without the relay.
    """
    if config is not None:
        fd = _open_regular(config)
    else:
        home = os.environ.get("HOME")
        fd, problem = open_user_file(os.path.join(home, ".esmtprc")) if home else (None, None)
        if problem is not None:
            return "disabled"
        if fd is None:
            fd = _open_regular(os.environ.get("ESMTP_SYSTEM_CONFIG") or "/etc/esmtprc")
    if fd is None:
        return "disabled"
    with open(fd, "rb") as handle:
        text = handle.read(1 << 20)
    setting = "disabled"
    for line in text.splitlines():
        words = line.split(b"#", 1)[0].replace(b"=", b" ").split()
        if len(words) >= 2 and words[0] == b"relay_daemon":
            setting = words[1].strip(b"\"'").decode("ascii", "replace")
    return setting


def wanted(config: str | None) -> bool:
    """Whether the warm relay is on: ``ESMTP_RELAY_DAEMON`` (0 or 1) wins over ``relay_daemon``."""
    forced = os.environ.get("ESMTP_RELAY_DAEMON")
    if forced in ("0", "1"):
        return forced == "1"
    return config_setting(config) == "auto"


def spawn(path: str, config: str | None = None) -> None:
    """Start the resident process for ``path`` (serving ``-C config``, absolute, or the default file), fully
    detached: new session, stdio on /dev/null, no other descriptor inherited, working directory ``/``. Returns at
    once (a failure to start only costs the warm path).

    One fork, not two, and no wait: this process exits right after, so the resident process is re-parented as a
    double-forked one would be, and the caller does not wait for a second fork of a process that has loaded
    everything. ``path.starting`` holds its pid while it is on its way (it removes the file once it listens), so
    that the next front end waits for it instead of sending its message itself and starting another.
    """
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        return
    try:
        os.setsid()
        marker = os.open(path + ".starting", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.write(marker, str(os.getpid()).encode())
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        os.chdir("/")
        code = "import sys; from esmtp.relay.daemon import main; sys.exit(main(sys.argv[1:]))"
        os.execv(sys.executable, [sys.executable, "-P", "-c", code, path, *([config] if config else [])])
    finally:
        os._exit(127)


def _starting(path: str) -> bool:
    """Whether a front end started the resident process for ``path`` moments ago and it is still alive."""
    import time  # built in: no file to import, and only on this path

    try:
        with open(path + ".starting", "rb") as marker:
            started = os.fstat(marker.fileno()).st_mtime
            pid = int(marker.read(32) or b"0")
        if pid <= 0 or time.time() - started >= STARTING_WAIT:
            return False
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False  # no marker, or its process is gone (killed before it could listen)
    return True


def _wait_for(path: str) -> socket.socket | None:
    """Connect to a resident process that is starting, once it listens (None if it never does)."""
    import time

    while _starting(path):
        time.sleep(0.005)
        sock = _connect(path)
        if sock is not None:
            return sock
    return None


#: The longest socket path the kernel takes (sun_path holds 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
#: Why the warm relay could not be used by this process (shown with -v by esmtp.cli), "" when nothing is known.
RELAY_NOTE = ""


def short_name(path: str) -> tuple[str, int | None]:
    """A name of the socket ``path`` that fits in sun_path, and the descriptor to close after the bind or connect.

    A longer path (a runtime directory deep under a long base: pytest's, say) is reached through
    ``/proc/self/fd/N/NAME``, N being a descriptor of its directory: the kernel resolves the directory once and the
    name stays short whatever the directory's own. (``chdir`` would do too, but it is process-wide, and the resident
    process runs requests in threads.) Raises OSError when the directory cannot be opened.
    """
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def socket_call(method: object, path: str) -> None:
    """``method(name)`` (a socket's ``connect`` or ``bind``) with :func:`short_name`'s name for ``path``."""
    global RELAY_NOTE
    name, fd = short_name(path)
    try:
        method(name)  # type: ignore[operator]
    except OSError as error:
        if fd is not None and not os.path.isdir("/proc/self/fd"):
            RELAY_NOTE = (f"the warm relay is not used: its socket path {path} is longer than {MAX_SOCKET_PATH} bytes "
                          "and /proc is not mounted to shorten it; set XDG_RUNTIME_DIR to a shorter directory")
        raise error
    finally:
        if fd is not None:
            os.close(fd)


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        socket_call(sock.connect, path)
    except OSError:
        sock.close()
        return None
    return sock


def _spool_stdin() -> int:
    """Copy standard input to a private unlinked file in the spool directory; its descriptor, at offset 0."""
    directory = os.environ.get("TMPDIR") or "/tmp"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        path = os.path.join(directory, f"esmtp-{os.getpid()}-{os.urandom(6).hex()}.in")
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        break
    os.unlink(path)
    try:
        while True:
            data = os.read(0, CHUNK)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    except OSError as error:
        if error.errno != 9:  # EBADF: no standard input at all reads as an empty message, as in the CLI
            os.close(fd)
            raise
    os.lseek(fd, 0, 0)
    return fd


def _stdio_fd(fd: int) -> tuple[int, bool]:
    """``fd`` if the caller opened it, else a new /dev/null descriptor (True: ours to close)."""
    try:
        os.fstat(fd)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY), True
    return fd, False


def _encode(words: list[str]) -> list[bytes]:
    return [word.encode("utf-8", "surrogateescape") for word in words]


def _request(sock: socket.socket, argv: list[str], spool: int | None, ours: str) -> int | None:
    """Send the run to the warm relay's resident process and wait for its exit code (None: it did not answer or
    declined). ``ours`` is this caller's :func:`fingerprint`."""
    return _exchange(sock, [PROTOCOL, *_encode([os.getcwd(), ours, *argv])], spool)


def _exchange(sock: socket.socket, fields: list[bytes], spool: int | None) -> int | None:
    """Send a request (the protocol's fields, then argv) with our stdout, stderr and the ``spool`` file, and wait
    for its exit code (None: it did not answer or declined). The warm relay's and the system service's."""
    payload = b"\0".join(fields)
    out, close_out = _stdio_fd(1)
    err, close_err = _stdio_fd(2)
    fds = [out, err] if spool is None else [out, err, spool]
    try:
        header = len(payload).to_bytes(4, "big")
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]
        sock.sendmsg([header + payload], ancillary)
    finally:
        if close_out:
            os.close(out)
        if close_err:
            os.close(err)
    reply = b""
    while not reply.endswith(b"\n"):
        data = sock.recv(64)
        if not data:
            return None  # it died before answering: the spool file still holds the message
        reply += data
    if not reply[:-1].isdigit():
        return None  # "local": it declined (relay disabled, another environment); run here
    return int(reply)


def relay(argv: list[str]) -> tuple[int | None, tuple[str, str | None] | None]:
    """Run ``argv`` through the resident process. Returns its exit code, or None when this process must run the
    command itself, and then the socket path and ``-C`` file of a resident process to start afterwards (None: none
    wanted).

    Standard input, once read, is left on descriptor 0 as the spool file, so that the fallback reads the same bytes.
    """
    mode = system_mode(argv)
    if mode is not None:
        return submit_to_system(argv, mode), None
    scanned = scan_argv(argv)
    if scanned is None or os.environ.get("ESMTP_RELAY_DAEMON") == "0":
        return None, None
    mode, config = scanned[0], absolute(scanned[1])
    ours = fingerprint(config)
    path = socket_path(config, ours)
    directory = os.path.dirname(path)
    sock = None
    if private_dir(directory, create=False):  # never a socket in a directory someone else controls
        sock = _connect(path) or _wait_for(path)
    if sock is None:
        start = wanted(config) and private_dir(directory, create=True)
        return None, (path, config) if start else None
    spool = None
    try:
        if mode == "deliver":
            spool = _spool_stdin()
        code = _request(sock, argv, spool, ours)
    except OSError:
        code = None
    except KeyboardInterrupt:
        # As a run of its own reports it (75: try again), but the resident process may finish the work.
        sys.stderr.write(f"{os.path.basename(argv[0]) if argv else 'esmtp'}: interrupted; the message may or may not "
                         "have been sent\n")
        code = 75
    finally:
        sock.close()
        if spool is not None:
            os.lseek(spool, 0, 0)
            os.dup2(spool, 0)  # the fallback reads the spooled message as its standard input
            os.close(spool)
    return code, None


# ---- the system service -------------------------------------------------------------------------------------------


def system_path(variable: str, default: str) -> str:
    """A path of the system service: the environment variable (packagers, tests), else the default."""
    return os.environ.get(variable) or default


def system_maildrop() -> str:
    """``ESMTP_SYSTEM_MAILDROP``, else ``maildrop`` in ``ESMTP_SYSTEM_SPOOL``, else the default."""
    spool = os.environ.get("ESMTP_SYSTEM_SPOOL")
    return system_path("ESMTP_SYSTEM_MAILDROP", os.path.join(spool, "maildrop") if spool else SYSTEM_MAILDROP)


def message_limit() -> int:
    """:data:`MESSAGE_LIMIT`, or ``ESMTP_SYSTEM_MESSAGE_LIMIT`` (bytes) when that is a number."""
    value = os.environ.get("ESMTP_SYSTEM_MESSAGE_LIMIT", "")
    return int(value) if value.isdigit() else MESSAGE_LIMIT


def system_mode(argv: list[str]) -> str | None:
    """What the system service is asked to do for ``argv`` ("deliver", "mailq", "flush" or "remove"), or None when
    this run is not for it: the user has a ``~/.esmtprc`` or gives ``-C`` (their own configuration wins), the command
    is another one (``--version``, ``--check``, ``-bs``...), or the service is not installed here (neither its
    socket nor its maildrop exists). The service parses argv for real and reports its errors."""
    home = os.environ.get("HOME")
    if home:
        try:
            os.stat(os.path.join(home, ".esmtprc"))
            return None
        except OSError:
            pass
    program = os.path.basename(argv[0]) if argv else ""
    if program == "newaliases":
        return None
    mode = {"mailq": "mailq", "deliver": "flush"}.get(program, "deliver")
    for name, argument in _options(argv):
        if name in ("--flush", "--remove"):
            mode = name[2:]
        elif name in ("--identity", "--json"):
            continue
        elif name.startswith("--") or name in ("C", "I"):
            return None  # another command, the user's own configuration, or newaliases: not for the service
        elif name == "q":
            mode = "flush"
        elif name == "b":
            found = {"m": "deliver", "p": "mailq"}.get(argument[:1])
            if found is None:
                return None
            mode = found
    socket_file = system_path("ESMTP_SYSTEM_SOCKET", SYSTEM_SOCKET)
    if not (os.path.exists(socket_file) or os.path.isdir(system_maildrop())):
        return None
    return mode


def _say(argv: list[str], text: str) -> None:
    try:  # noqa: SIM105  (contextlib would be an import of its own)
        os.write(2, f"{os.path.basename(argv[0]) if argv else 'esmtp'}: {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def submit_to_system(argv: list[str], mode: str) -> int:
    """Run ``argv`` through the system service, which answers with the exit code of the run (it writes its output
    to our stdout and stderr). A message it does not take (no socket, no answer) goes to the maildrop instead."""
    path = system_path("ESMTP_SYSTEM_SOCKET", SYSTEM_SOCKET)
    sock = _connect(path)
    spool = None
    code = None
    try:
        if mode == "deliver":
            spool = _spool_stdin()
        if sock is not None:
            fields = [SYSTEM_PROTOCOL, b"uid=%d" % os.getuid(), *_encode(argv)]
            try:
                code = _exchange(sock, fields, spool)
            except OSError:
                code = None
        if code is not None:
            return code
        if spool is None:
            _say(argv, f"the mail system's service does not answer at {path}; try again later")
            return 75
        return _maildrop(argv, spool)
    except KeyboardInterrupt:
        _say(argv, "interrupted; the message may or may not have been sent")
        return 75
    finally:
        if sock is not None:
            sock.close()
        if spool is not None:
            os.close(spool)


def _maildrop(argv: list[str], spool: int) -> int:
    """Leave the message in the maildrop for the service (it takes it in when it starts, and regularly): 0 once
    it is on disk, 75 when it cannot be (then nothing was queued).

    The file is created exclusively (never through a link) and locked while it is written; it says who wrote it,
    the size of what follows, and ends with the message, so that the service can tell a complete file from one
    still being written or cut short.
    """
    import fcntl  # only here: the service is down
    import time

    directory = system_maildrop()
    size = os.fstat(spool).st_size
    if size > message_limit():
        _say(argv, f"the message ({size} bytes) is larger than the mail system's limit ({message_limit()} bytes); "
                   "nothing was sent")
        return 65  # EX_DATAERR, as the service answers
    path = os.path.join(directory, f"{int(time.time())}.{os.getpid()}.{os.urandom(8).hex()}")
    try:
        if not os.stat(directory).st_mode & 0o2000:
            # Without set-group-ID the file would not get the service's group, and the service could not read it.
            raise OSError(1, "it is not set-group-ID (mode 3733): run esmtp --system-setup")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    except OSError as error:
        _say(argv, f"the mail system's service is not running and its maildrop {directory} cannot take the "
                   f"message ({error.strerror}); nothing was sent: try again later")
        return 75
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o640)  # whatever our umask: the directory's group (the service's, setgid) may read it
        words = b"\0".join(_encode(argv))
        data = MAILDROP_MAGIC + b"%d\n%d\n%d\n" % (os.getuid(), len(words), size) + words
        os.lseek(spool, 0, 0)
        while data:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            data = os.read(spool, CHUNK)
        os.fsync(fd)
    except OSError as error:
        try:  # noqa: SIM105
            os.unlink(path)
        except OSError:
            pass
        _say(argv, f"the message could not be written to the maildrop {directory} ({error.strerror}); nothing was "
                   "sent: try again later")
        return 75
    finally:
        os.close(fd)
    return 0


def _fill_standard_fds() -> None:
    """Put /dev/null on a closed descriptor 0, 1 or 2 (callers such as mailutils' mail close some), so that the
    spool file cannot land there; :func:`esmtp.streams.repair` does the rest when the command runs here."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: list[str] | None = None) -> int:
    """Run the command for ``argv`` (default ``sys.argv``); return its exit code."""
    argv = list(sys.argv if argv is None else argv)
    _fill_standard_fds()
    code, start = relay(argv)
    if code is not None:
        return code
    if scan_argv(argv) is not None:
        # One message or a queue listing, then the process ends: the cyclic garbage collector would only run during
        # the imports (about 10 ms, 9% of such a run), finding nothing worth freeing. Flushes and -bs, which may run
        # long, keep it.
        import gc  # built in

        gc.disable()
    from esmtp import streams
    from esmtp.cli import main as run_here

    streams.repair()
    try:
        return run_here(argv)
    finally:
        streams.settle()
        if start is not None:
            # Afterwards: its start-up would compete with this run for the CPU. The next message waits for it.
            spawn(*start)


def run() -> None:
    """Entry point of ``sendmail``, ``mailq`` and the other program names (scripts/): :func:`main`, then exit."""
    leave(main())


def leave(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown, which takes 20 ms and more once a run of its own has
    loaded asyncio, ssl and the plugins (more than the rest of a warm run).

    What an ordinary exit would still do is done first: the ``atexit`` functions run and stdout and stderr are
    flushed. While a thread other than a daemon one is alive (a plugin's), the ordinary exit waits for it.
    """
    threading = sys.modules.get("threading")
    if threading is not None and any(not thread.daemon for thread in threading.enumerate()
                                     if thread is not threading.main_thread()):
        sys.exit(code)
    import atexit  # built in

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            sys.exit(code)  # as an ordinary exit reports a flush that fails
    os._exit(code)


if __name__ == "__main__":
    # `python -m esmtp.front --socket-path [-C FILE]`: where this environment's resident process listens (for the
    # systemd units in contrib/).
    found = scan_argv(["sendmail", *sys.argv[2:]])
    print(socket_path(absolute(found[1]) if found else None))
