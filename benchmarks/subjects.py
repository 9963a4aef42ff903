"""The programs under test and the exact command lines each workload runs for them.

Every subject writes its own configuration (pointing at the sink's port, user ``bench``, any password) into the
run's scratch directory. A method returns the steps to run, or raises :class:`NotApplicable` when the program has no
such operation (that cell of the table shows the reason).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import Step
from peers import Peer, esmtp_plugin_dir

SENDER = "bench@example.org"
RCPT = "rcpt@example.org"
HERE = Path(__file__).resolve().parent


class NotApplicable(Exception):
    """The subject has no such operation (for example msmtp has no ``-bp``)."""


def _write_private(path: Path, text: str) -> Path:
    """Config files hold a password: every peer refuses (or should refuse) group/other-readable ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


class Subject:
    """Base: a name, a label for tables, and an error when the program is not usable at all."""

    key = ""
    label = ""
    error: str | None = None

    def configure(self, port: int) -> None:
        """Point the subject at a smarthost port."""

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        raise NotApplicable("cannot send")

    def start_bp(self) -> list[Step]:
        raise NotApplicable("no -bp")

    def start_version(self) -> list[Step]:
        raise NotApplicable("no --version")

    def enqueue(self, message: Path) -> list[Step]:
        raise NotApplicable("no queue")

    def before_run(self) -> None:
        """Put the subject back in its starting state (untimed), e.g. empty a queue left by a failed run."""


class EsmtpPy(Subject):
    """This project: the ``esmtp`` console script."""

    key = "esmtp-py"

    def __init__(self, exe: Path, work: Path, env: dict[str, str]) -> None:
        self.exe = exe
        self.work = work / "esmtp-py"
        self.work.mkdir(parents=True, exist_ok=True)
        # ESMTP_QUEUE_DIR overrides queue_dir, so every command gets the one that belongs to its configuration.
        self.base_env = env
        self.env = self.env_for(self.work / "queue-default")
        self.bp_env = self.env_for(self.work / "queue-empty")
        self.queue_dirs: dict[Path, Path] = {}
        self.label = "esmtp-py"
        self.port = 0
        self.direct_rc = self.work / "direct.rc"
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            self.error = f"esmtp not found at {exe}"
            return
        try:
            proc = subprocess.run([str(exe), "--version"], env=self.env, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"esmtp --version: {exc}"
            return
        if proc.returncode == 0 and proc.stdout.strip():
            self.label = "esmtp-py " + proc.stdout.split()[-1]

    def env_for(self, queue_dir: Path) -> dict[str, str]:
        queue_dir.mkdir(parents=True, exist_ok=True)
        return {**self.base_env, "ESMTP_QUEUE_DIR": str(queue_dir)}

    def _rc_text(self, port: int) -> str:
        return f"hostname 127.0.0.1:{port}\nusername bench\npassword secret\nauth_plaintext enabled\n"

    def configure(self, port: int) -> None:
        self.port = port
        _write_private(self.direct_rc, self._rc_text(port))

    def queue_rc(self, port: int, queue_dir: Path, name: str) -> Path:
        """A configuration that always queues into ``queue_dir`` (``port`` is the smarthost used when flushing)."""
        queue_dir.mkdir(parents=True, exist_ok=True)
        text = self._rc_text(port) + f"queue always\nqueue_dir {queue_dir}\n"
        rc = _write_private(self.work / name, text)
        self.queue_dirs[rc] = queue_dir
        return rc

    def wait_idle(self, queue_dir: Path, timeout: float = 60.0) -> bool:
        """Wait until no background delivery run holds the queue's runner lock (so it cannot disturb the next
        measurement); True when idle."""
        import fcntl
        import time

        lock = queue_dir / "runner.lock"
        if not lock.exists():
            return True
        deadline = time.monotonic() + timeout
        with lock.open("a") as f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
                    continue
                fcntl.flock(f, fcntl.LOCK_UN)
                return True

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        argv = [str(self.exe), "-C", str(self.direct_rc), "-f", SENDER, RCPT]
        return [Step(argv, self.env, stdin=message, timeout=timeout)]

    def start_bp(self) -> list[Step]:
        return [Step([str(self.exe), "-C", str(self.direct_rc), "-bp"], self.bp_env)]

    def start_version(self) -> list[Step]:
        return [Step([str(self.exe), "--version"], self.env)]

    def enqueue_with(self, rc: Path, message: Path) -> list[Step]:
        env = self.env_for(self.queue_dirs[rc])
        return [Step([str(self.exe), "-C", str(rc), "-f", SENDER, RCPT], env, stdin=message)]

    def flush_with(self, rc: Path, timeout: float) -> list[Step]:
        return [Step([str(self.exe), "-C", str(rc), "--flush"], self.env_for(self.queue_dirs[rc]), timeout=timeout)]


def dkim_key(work: Path, algorithm: str) -> tuple[Path | None, str | None]:
    """A DKIM private key for ``algorithm`` (PKCS#8, mode 0600) in ``work``: (path, None), or (None, why not)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    except ImportError as exc:
        return None, f"cryptography is not importable: {exc}"
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = work / f"dkim-{algorithm}.pem"
    work.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path, None


class EsmtpDkim(EsmtpPy):
    """This project signing every message with DKIM (a key made here: RSA-2048 or Ed25519; relaxed/relaxed, the
    default header list). Otherwise the same configuration as ``esmtp-py``, so the difference is the signing."""

    def __init__(self, exe: Path, work: Path, env: dict[str, str], algorithm: str = "rsa-sha256") -> None:
        short = "rsa" if algorithm == "rsa-sha256" else "ed25519"
        super().__init__(exe, work / f"dkim-{short}", env)
        self.key = "esmtp-dkim" if short == "rsa" else "esmtp-dkim-ed"
        self.label = self.label.replace("esmtp-py", f"esmtp-py + DKIM {'RSA-2048' if short == 'rsa' else 'Ed25519'}")
        if self.error is None:
            self.key_file, self.error = dkim_key(self.work, algorithm)

    def _rc_text(self, port: int) -> str:
        return super()._rc_text(port) + f"dkim_selector bench\ndkim_key_file {self.key_file}\n"


class EsmtpRelay(EsmtpPy):
    """This project with the warm relay on (``relay_daemon auto``). ``warm``: its resident process is up (started,
    untimed, before each run); ``first``: none is up (each run sends the message itself and starts the process for
    the next, spawning included; the process is killed, untimed, before the next run)."""

    def __init__(self, exe: Path, work: Path, env: dict[str, str], kind: str) -> None:
        self.kind = kind
        self.runtime = work / f"esmtp-{kind}-runtime"
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        super().__init__(exe, work / f"esmtp-{kind}", {**env, "XDG_RUNTIME_DIR": str(self.runtime)})
        self.key = f"esmtp-{kind}"
        self.label = self.label.replace("esmtp-py", f"esmtp ({'warm relay' if kind == 'warm' else 'first message'})")
        #: The configuration and environment of the steps made last (each has its own resident process).
        self.target: tuple[Path, dict[str, str]] | None = None
        #: Start every run with no resident process (the burst: its first message starts one).
        self.cold_start = kind == "first"

    def _rc_text(self, port: int) -> str:
        return super()._rc_text(port) + "relay_daemon auto\nrelay_daemon_idle 900\n"

    def _aim(self, rc: Path, env: dict[str, str], steps: list[Step]) -> list[Step]:
        self.target = (rc, env)
        return steps

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        return self._aim(self.direct_rc, self.env, super().send(message, timeout))

    def start_bp(self) -> list[Step]:
        return self._aim(self.direct_rc, self.bp_env, super().start_bp())

    def enqueue_with(self, rc: Path, message: Path) -> list[Step]:
        return self._aim(rc, self.env_for(self.queue_dirs[rc]), super().enqueue_with(rc, message))

    def pids(self) -> list[int]:
        found = []
        for lock in (self.runtime / "esmtp").glob("*.lock"):
            try:
                pid = int(lock.read_text())
                os.kill(pid, 0)
            except (OSError, ValueError):
                continue
            found.append(pid)
        return found

    def resident_peak_mb(self) -> float:
        """The largest peak RSS (``VmHWM``) of this subject's resident processes, in MB."""
        peak = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        return peak / 1024

    def before_run(self) -> None:
        if self.cold_start:
            self.stop()
        elif self.target is not None:
            rc, env = self.target
            # The first -bp starts the process if none is up; the second returns once it is serving.
            for _ in range(2):
                subprocess.run([str(self.exe), "-C", str(rc), "-bp"], env=env, capture_output=True, timeout=60)
                wait_until(lambda: bool(self.pids()))

    def stop(self) -> None:
        """End this subject's resident processes (they are the benchmark's own, found by their lock files)."""
        import signal

        for _ in range(2):  # one may still have been starting
            for pid in self.pids():
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not self.pids())


class EsmtpRelayDkim(EsmtpRelay):
    """The warm relay (its resident process up) signing with DKIM, RSA-2048: the keys and ``cryptography`` stay
    loaded in the resident process."""

    def __init__(self, exe: Path, work: Path, env: dict[str, str]) -> None:
        super().__init__(exe, work / "dkim-warm", env, "warm")
        self.key = "esmtp-dkim-warm"
        self.label = self.label.replace("(warm relay)", "(warm relay) + DKIM RSA-2048")
        if self.error is None:
            self.key_file, self.error = dkim_key(self.work, "rsa-sha256")

    def _rc_text(self, port: int) -> str:
        return super()._rc_text(port) + f"dkim_selector bench\ndkim_key_file {self.key_file}\n"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class Floor(Subject):
    """``python -I -c pass`` with the interpreter esmtp runs on: what any Python command costs at least."""

    key = "floor"

    def __init__(self, exe: Path, env: dict[str, str]) -> None:
        try:
            self.python = open(exe).readline()[2:].strip()  # noqa: SIM115 (the console script's #! line)
        except OSError as exc:
            self.error = f"cannot read {exe}: {exc.strerror}"
            self.python = sys.executable
        self.env = env
        self.label = "`python -I -c pass`"

    def start_bp(self) -> list[Step]:
        return [Step([self.python, "-I", "-c", "pass"], self.env)]

    def enqueue(self, message: Path) -> list[Step]:
        return [Step([self.python, "-I", "-c", "pass"], self.env, stdin=message)]


class Esmtp12(Subject):
    """esmtp 1.2 on libESMTP 1.1.0 from Debian 12, run from the unpacked tree."""

    key = "esmtp-1.2"

    def __init__(self, peer: Peer, work: Path, env: dict[str, str]) -> None:
        self.peer = peer
        self.label = "esmtp 1.2"
        self.error = peer.error
        self.exe = peer.path("usr/bin/esmtp")
        self.rc = work / "esmtp12" / "esmtprc"
        self.env = {**env, "LD_LIBRARY_PATH": peer.ld_library_path}
        self.cwd = esmtp_plugin_dir(peer)  # libESMTP loads its SASL plugins relative to it (see peers.py)

    def configure(self, port: int) -> None:
        _write_private(self.rc, f"hostname 127.0.0.1:{port}\nusername bench\npassword secret\n")

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        argv = [str(self.exe), "-C", str(self.rc), "-f", SENDER, RCPT]
        return [Step(argv, self.env, stdin=message, cwd=self.cwd, timeout=timeout)]

    def start_bp(self) -> list[Step]:
        return [Step([str(self.exe), "-C", str(self.rc), "-bp"], self.env, cwd=self.cwd)]

    def start_version(self) -> list[Step]:
        raise NotApplicable("esmtp 1.2 has no --version")

    def enqueue(self, message: Path) -> list[Step]:
        raise NotApplicable("esmtp 1.2 has no queue (esmtp-wrapper adds one in shell)")


class Msmtp(Subject):
    """msmtp 1.8.23 from Debian 12 (with the GNU SASL and libsecret libraries it needs, unpacked beside it)."""

    key = "msmtp"

    def __init__(self, peer: Peer, work: Path, env: dict[str, str]) -> None:
        self.peer = peer
        self.label = "msmtp " + peer.version.split("-")[0] if not peer.error else "msmtp"
        self.error = peer.error
        self.exe = peer.path("usr/bin/msmtp")
        self.rc = work / "msmtp" / "msmtprc"
        self.env = {**env, "LD_LIBRARY_PATH": peer.ld_library_path}

    def configure(self, port: int) -> None:
        _write_private(
            self.rc,
            "defaults\nauth plain\ntls off\nsyslog off\n"
            f"account bench\nhost 127.0.0.1\nport {port}\nfrom {SENDER}\nuser bench\npassword secret\n"
            "account default : bench\n",
        )

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        argv = [str(self.exe), "-C", str(self.rc), "-f", SENDER, RCPT]
        return [Step(argv, self.env, stdin=message, timeout=timeout)]

    def start_bp(self) -> list[Step]:
        raise NotApplicable("msmtp has no -bp (exit 64); see --version")

    def start_version(self) -> list[Step]:
        return [Step([str(self.exe), "--version"], self.env)]

    def enqueue(self, message: Path) -> list[Step]:
        raise NotApplicable("msmtp has no queue of its own (msmtpq is a bash script)")


class Nullmailer(Subject):
    """nullmailer 2.2 from Debian 12, sandboxed with NULLMAILER_TEST_PREFIX (its compiled-in paths are not used).

    Sending is its real path, ``sendmail`` (-> nullmailer-inject -> nullmailer-queue) then one pass of
    ``nullmailer-send`` (``pausetime`` 0 makes it exit once the queue is empty), which runs the ``smtp`` protocol
    module once per message.
    """

    key = "nullmailer"

    def __init__(self, peer: Peer, work: Path, env: dict[str, str]) -> None:
        self.peer = peer
        self.label = "nullmailer " + peer.version.split(":")[-1].split("-")[0] if not peer.error else "nullmailer"
        self.error = peer.error
        self.prefix = work / "nullmailer"
        self.queue = self.prefix / "queue" / "queue"
        self.env = {**env, "LD_LIBRARY_PATH": peer.ld_library_path, "NULLMAILER_TEST_PREFIX": str(self.prefix)}
        if self.error:
            return
        for sub in ("conf", "queue/queue", "queue/tmp", "protocols", "bin", "sbin"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        trigger = self.prefix / "queue" / "trigger"
        if not trigger.exists():
            os.mkfifo(trigger)
        links = {
            "protocols/smtp": "usr/lib/nullmailer/smtp",
            "bin/nullmailer-inject": "usr/bin/nullmailer-inject",
            "sbin/nullmailer-queue": "usr/sbin/nullmailer-queue",
        }
        for link, target in links.items():
            path = self.prefix / link
            if not path.exists():
                path.symlink_to(peer.path(target))
        (self.prefix / "mailname").write_text("bench.example.org\n")  # read as conf/../mailname on Debian
        (self.prefix / "conf" / "defaultdomain").write_text("example.org\n")
        (self.prefix / "conf" / "pausetime").write_text("0\n")

    def configure(self, port: int) -> None:
        _write_private(self.prefix / "conf" / "remotes", f"127.0.0.1 smtp --port={port} --user=bench --pass=secret\n")

    def inject(self, message: Path) -> Step:
        return Step([str(self.peer.path("usr/sbin/sendmail")), "-f", SENDER, RCPT], self.env, stdin=message)

    def send_pass(self, timeout: float = 60.0) -> Step:
        return Step([str(self.peer.path("usr/sbin/nullmailer-send"))], self.env, timeout=timeout)

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        return [self.inject(message), self.send_pass(timeout)]

    def start_bp(self) -> list[Step]:
        return [Step([str(self.peer.path("usr/bin/mailq"))], self.env)]

    def enqueue(self, message: Path) -> list[Step]:
        return [self.inject(message)]

    def before_run(self) -> None:
        self.clear_queue()

    def clear_queue(self) -> None:
        for path in self.queue.iterdir():
            path.unlink()

    def fill_queue(self, template: Path, count: int) -> None:
        """Put ``count`` hard links to one queued message in the queue (nullmailer-send only unlinks them)."""
        self.clear_queue()
        for i in range(count):
            os.link(template, self.queue / f"{1700000000 + i}.{i}")


class RawClient(Subject):
    """The raw-library baseline (rawclient.py) as a new Python process, like a sendmail would be."""

    def __init__(self, lib: str, env: dict[str, str]) -> None:
        self.lib = lib
        self.key = lib
        self.env = env
        self.port = 0
        self.label = f"raw {lib}"
        if lib == "aiosmtplib":
            try:
                from importlib.metadata import version

                self.label = f"raw aiosmtplib {version('aiosmtplib')}"
            except ImportError:
                self.error = "aiosmtplib is not installed"

    def configure(self, port: int) -> None:
        self.port = port

    def _argv(self, *extra: str) -> list[str]:
        script = str(HERE / "rawclient.py")
        return [sys.executable, script, self.lib, "--port", str(self.port), *extra, "-f", SENDER, RCPT]

    def send(self, message: Path, timeout: float = 60.0) -> list[Step]:
        return [Step(self._argv(), self.env, stdin=message, timeout=timeout)]

    def flush_dir(self, directory: Path, timeout: float) -> list[Step]:
        return [Step(self._argv("--dir", str(directory)), self.env, timeout=timeout)]


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
