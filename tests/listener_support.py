"""Test helpers for ``esmtp --listen``: the installed command as a subprocess, listening on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import Runner, entry_point, port_for_a_program

EX_OK = 0


@dataclass
class Listener:
    """A running ``esmtp --listen 127.0.0.1:PORT``; ``stderr`` collects what it says."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr: list[str] = field(default_factory=list)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.stderr)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def rss_kib(self) -> int:
        """The listener's resident memory now (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def start_listener(run: Runner, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                   timeout: float = 30) -> Listener:
    """Start the listener with ``run``'s configuration and wait for its "listening on" line."""
    port = port or port_for_a_program()
    proc = subprocess.Popen([entry_point("esmtp"), "--listen", f"127.0.0.1:{port}", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or run.env())
    listener = Listener(proc, port)
    threading.Thread(target=listener._drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while "listening on" not in listener.text:
        if proc.poll() is not None or time.monotonic() > deadline:
            time.sleep(0.2)
            proc.kill()
            raise AssertionError(f"the listener did not start (status {proc.poll()}): {listener.text}")
        time.sleep(0.02)
    return listener


@pytest.fixture
def listeners(run: Runner) -> Iterator[list[Listener]]:
    """Listeners started by a test (append them); each is stopped at the end of the test."""
    started: list[Listener] = []
    yield started
    for listener in started:
        if listener.proc.poll() is None:
            os.kill(listener.proc.pid, signal.SIGKILL)
            listener.proc.wait(10)


def hash_password(run: Runner, password: str) -> str:
    """A hash made by the installed ``esmtp --hash-password`` (the password on standard input)."""
    result = run("--hash-password", input=password.encode() + b"\n", program="esmtp")
    assert result.returncode == EX_OK, result.stderr
    return result.stdout.strip()
