"""The system service in tests: started as root in the foreground (as in a container: CI has no systemd), every
path under a base directory of the test's own (the ``ESMTP_SYSTEM_*`` variables), callers run as real local
accounts with ``runuser``.

Local accounts cannot run the test's interpreter when it lives under /root (pyenv, a venv there), so the service
and the callers run the system's Python of the same version with this checkout's packages on its path
(:func:`shared_python`). Test accounts are created with ``useradd`` (idempotently); ``www-data`` and ``nobody``
are Debian's own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Test accounts (created when missing): ordinary users with no home directory.
USERS = ("esmtp-t1", "esmtp-t2", "esmtp-t3")
MAILNAME = "example.test"


def _needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("the system service's tests run as root, with runuser and useradd")


def build_shared_python(base: Path) -> Path:
    """Make ``base/venv/bin`` with ``python``, ``sendmail``, ``mailq`` and ``esmtp`` that every local account can run,
    and return it: a venv of /usr/bin/python3 whose site-packages adds this interpreter's (where esmtp and its
    dependencies are), or, when other accounts cannot reach that, holds a copy of the packages a run imports.
    Raises RuntimeError saying why it cannot (also used by benchmarks/system_service.py)."""
    system = Path("/usr/bin/python3")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = subprocess.run([str(system), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, check=False) if system.exists() else None
    if found is None or found.stdout.strip() != version:
        raise RuntimeError(f"needs /usr/bin/python3 of version {version} (the test interpreter's), for other accounts")
    base.mkdir(mode=0o755, exist_ok=True)
    base.chmod(0o755)
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(base / "venv")], check=True)
    ours = base / "venv" / "lib" / f"python{version}" / "site-packages"
    bin_dir = base / "venv" / "bin"
    for name in ("sendmail", "mailq", "esmtp"):
        script = bin_dir / name
        script.write_text(f"#!{bin_dir / 'python'}\nfrom esmtp.front import run\n\nrun()\n")
        script.chmod(0o755)
    purelib = Path(sysconfig.get_paths()["purelib"])
    (ours / "esmtp-tests.pth").write_text(f"import site; site.addsitedir({str(purelib)!r})\n")
    if not _importable_by_others(bin_dir):
        # This checkout or its venv is where other accounts may not go (under /root, say): copy what a run needs,
        # the installed packages without the development tools, and this checkout's own two packages.
        (ours / "esmtp-tests.pth").unlink()
        shutil.copytree(purelib, ours, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*DEVELOPMENT_ONLY))
        for name in ("esmtp", "esmtp_plugins"):
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.submodule_search_locations is not None
            shutil.copytree(next(iter(spec.submodule_search_locations)), ours / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    if not _importable_by_others(bin_dir):
        raise RuntimeError(f"other accounts cannot import esmtp with {bin_dir / 'python'}")
    return bin_dir


def ensure_users(names: tuple[str, ...]) -> None:
    """Create the accounts that are missing (no home directory, no login shell)."""
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                            "/usr/sbin/nologin", name], check=True, capture_output=True)


@pytest.fixture(scope="session")
def shared_python() -> Iterator[Path]:
    """:func:`build_shared_python` for the session."""
    _needs_root()
    base = Path(tempfile.mkdtemp(prefix="esmtp-python-"))
    try:
        yield build_shared_python(base)
    except RuntimeError as why:
        pytest.skip(str(why))
    finally:
        shutil.rmtree(base, ignore_errors=True)


#: What is not copied when the test's own site-packages cannot be reached by other accounts.
DEVELOPMENT_ONLY = ("__pycache__", "__editable__*", "mypy*", "*mypyc*", "ruff*", "hypothesis*", "_hypothesis*", "pip",
                    "pip-*", "setuptools*", "_pytest", "pytest*", "pygments*", "librt*")


def _importable_by_others(bin_dir: Path) -> bool:
    probe = subprocess.run(["runuser", "-u", "nobody", "--", str(bin_dir / "python"), "-c",
                            "import esmtp.front, esmtp_plugins.queue, aiosmtplib, pluggy"],
                           capture_output=True, text=True, check=False, cwd="/")
    return probe.returncode == 0


@pytest.fixture(scope="session")
def test_users() -> tuple[str, ...]:
    """The test accounts, created when missing."""
    _needs_root()
    ensure_users(USERS)
    return USERS


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class SystemService:
    """One test's system service: its paths, its process, and callers as local accounts."""

    base: Path
    bin: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    #: More environment for the service and the callers.
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "ESMTP_SYSTEM_SOCKET": str(self.base / "run" / "submit.sock"),
            "ESMTP_SYSTEM_CONFIG": str(self.base / "etc" / "esmtprc"),
            "ESMTP_SYSTEM_SPOOL": str(self.base / "spool"),
            "ESMTP_SYSTEM_MAILNAME": str(self.base / "etc" / "mailname"),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            **self.extra,
        }

    @property
    def config(self) -> Path:
        return self.base / "etc" / "esmtprc"

    @property
    def maildrop(self) -> Path:
        return self.base / "spool" / "maildrop"

    @property
    def queue(self) -> Path:
        return self.base / "spool" / "queue"

    @property
    def socket(self) -> Path:
        return self.base / "run" / "submit.sock"

    def write_config(self, text: str, mode: int = 0o640) -> None:
        self.config.write_text(text)
        group = pwd.getpwnam("esmtp").pw_gid if _exists("esmtp") else 0
        os.chown(self.config, 0, group)
        self.config.chmod(mode)

    def setup(self) -> Result:
        """``esmtp --system-setup``, as root."""
        proc = subprocess.run([str(self.bin / "esmtp"), "--system-setup"], capture_output=True, env=self.env,
                              cwd="/", timeout=60)
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def start(self, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """``esmtp --system-daemon`` as root in the foreground, with the bare environment of a service manager (no
        HOME, no TMPDIR); returns once it serves (its log says so)."""
        log = self.base / f"service-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.process = subprocess.Popen([str(self.bin / "esmtp"), "--system-daemon"], stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd="/")
        if wait:
            deadline = time.monotonic() + 30
            while b"serving" not in log.read_bytes():
                if self.process.poll() is not None:
                    raise AssertionError(f"the service stopped: {log.read_text()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"the service did not start: {log.read_text()}")
                time.sleep(0.02)
        return self.process

    def log(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process = None

    def send(self, user: str, *args: str, input: bytes = b"", program: str = "sendmail", timeout: float = 120,
             extra_env: dict[str, str] | None = None) -> Result:
        """Run ``program args`` as ``user`` (runuser: the account's own HOME, no ~/.esmtprc)."""
        proc = subprocess.run(["runuser", "-u", user, "--", str(self.bin / program), *args], input=input,
                              capture_output=True, env={**self.env, **(extra_env or {})}, cwd="/", timeout=timeout)
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))

    def popen(self, user: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["runuser", "-u", user, "--", str(self.bin / "sendmail"), *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                cwd="/")

    def as_user(self, user: str, *command: str, input: bytes = b"") -> Result:
        """Any command as ``user``, with this service's environment."""
        proc = subprocess.run(["runuser", "-u", user, "--", *command], input=input, capture_output=True,
                              env=self.env, cwd="/", timeout=60)
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@pytest.fixture
def system(shared_python: Path, test_users: tuple[str, ...]) -> Iterator[SystemService]:
    """A system service's paths, set up (``esmtp --system-setup``) but not started; stopped on teardown."""
    base = Path(tempfile.mkdtemp(prefix="esmtp-system-"))
    base.chmod(0o755)  # traversable by the test accounts (pytest's tmp_path is not)
    (base / "etc").mkdir(mode=0o755)
    (base / "etc" / "mailname").write_text(f"{MAILNAME}\n")
    service = SystemService(base, shared_python)
    result = service.setup()
    assert result.returncode == 0, result.stderr
    try:
        yield service
    finally:
        if service.process is not None:
            with contextlib.suppress(Exception):
                service.stop(signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


__all__ = ["shared_python", "system", "test_users"]
