"""The warm relay in tests: run a test in both modes, start a resident process, find and end every one a test left.

Each test has its own ``XDG_RUNTIME_DIR`` (:class:`support.Runner`), so its resident processes are those whose
command line names that directory; the ``run`` fixtures end them (SIGKILL) on teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Runner, entry_point

#: The interpreter of the installed commands (their resident processes run it: it is part of their socket's name).
PYTHON = open(entry_point()).readline()[2:].strip()  # noqa: SIM115


def relay_pids(runtime: Path) -> list[int]:
    """Resident processes serving sockets under ``runtime``."""
    marker = str(runtime).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"esmtp.relay.daemon" in cmdline and marker in cmdline:
            pids.append(int(proc.name))
    return pids


def stop_relays(runtime: Path) -> None:
    """SIGKILL every resident process of ``runtime`` (twice: one may have been starting)."""
    if not (runtime / "esmtp").exists():
        return  # nothing was ever started there
    for attempt in range(2):
        for pid in relay_pids(runtime):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if attempt == 0:
            time.sleep(0.05)


def socket_path(run: Runner, config: str | None = None, **env: str) -> Path:
    """The socket the installed command would use for ``run``'s environment."""
    code = "import sys; from esmtp import front; print(front.socket_path(front.absolute(sys.argv[1] or None)))"
    out = subprocess.run([PYTHON, "-c", code, config or ""], env=run.env(**env), capture_output=True, text=True,
                         check=True, cwd="/")
    return Path(out.stdout.strip())


def start_relay(run: Runner, config: str | None = None, **env: str) -> int:
    """Start the resident process for ``run``'s configuration (``-C config``, absolute, or the default); return its
    pid once it listens."""
    path = socket_path(run, config, **env)
    code = ("import sys; from esmtp import front; front.private_dir(sys.argv[1], create=True); "
            "front.spawn(sys.argv[2])")
    subprocess.run([PYTHON, "-c", code, str(path.parent), str(path)], env=run.env(**env), check=True, cwd="/")
    lock = Path(f"{path}.lock")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and lock.exists() and lock.read_text().strip():
            return int(lock.read_text())
        time.sleep(0.01)
    raise AssertionError(f"the resident process did not start at {path}")


@pytest.fixture(params=["in-process", "relay"], name="run")
def run_in_both_modes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    """Like ``support.run``, once run here (``ESMTP_RELAY_DAEMON=0``) and once through a resident process that is
    already listening (``ESMTP_RELAY_DAEMON=1``), so that the two paths cannot drift apart."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    relay = request.param == "relay"
    runner = Runner(home, {"ESMTP_RELAY_DAEMON": "1" if relay else "0"})
    if relay:
        start_relay(runner)
    yield runner
    stop_relays(runner.runtime)


__all__ = ["run_in_both_modes"]
