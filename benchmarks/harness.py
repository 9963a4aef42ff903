"""Process timing, the sink's remote control, and the statistics the report uses.

A run spawns each process with ``os.posix_spawn`` (no Python-side fork cost in the timed region) and reaps it with
``os.wait4``, whose ``ru_maxrss`` is the peak resident set of the child and of the descendants it waited for.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent


@dataclass
class Step:
    """One process to run: argv, its environment and working directory, and the file on its stdin."""

    argv: list[str]
    env: dict[str, str]
    stdin: Path | None = None
    cwd: Path | None = None
    timeout: float = 60.0


@dataclass
class Sample:
    """The outcome of running a list of steps in sequence."""

    wall: float  # seconds, first spawn to last reap
    rc: int  # exit status of the first failing step, else 0 (negative: killed by that signal)
    maxrss_kb: int  # the largest peak RSS of any step
    error: str = ""  # what went wrong, in a few words
    cpu: float = 0.0  # seconds of CPU (user + system) of the steps and the descendants they waited for

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.error


class _Watchdog:
    """Kill the current child when its time is up (SIGALRM; no thread in the timed region)."""

    pid = 0
    fired = False

    @classmethod
    def handler(cls, _signum: int, _frame: FrameType | None) -> None:
        if cls.pid:
            cls.fired = True
            os.killpg(cls.pid, signal.SIGKILL)  # its own process group: helpers it started die with it


    installed = False

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            signal.signal(signal.SIGALRM, cls.handler)
            cls.installed = True


def _tail(path: Path, limit: int = 300) -> str:
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-3:])[-limit:]


def _wrapped_rss(path: Path) -> int:
    """The KB figure GNU time wrote (its last line; a line before it reports a non-zero exit)."""
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 0


def run_steps(steps: list[Step], scratch: Path, rss_wrapper: Path | None = None) -> Sample:
    """Run ``steps`` one after the other; stop at the first that fails. stdout/stderr go to files in ``scratch``.

    Peak RSS: a process started by posix_spawn (or fork) from this Python inherits the harness's own high-water
    mark (~20 MB) when it execs, so ``wait4`` cannot report less than that. With ``rss_wrapper`` (GNU time) the
    program is forked from a ~1 MB process instead and its ``%M`` is used; the floor is then about 1 MB.
    """
    _Watchdog.install()
    out_path, err_path, rss_path = scratch / "stdout", scratch / "stderr", scratch / "rss"
    maxrss = 0
    cpu = 0.0
    start = time.perf_counter()
    for step in steps:
        argv = step.argv
        if rss_wrapper is not None:
            argv = [str(rss_wrapper), "-f", "%M", "-o", str(rss_path), *argv]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, str(step.stdin or os.devnull), os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(out_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, str(err_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        old_cwd = os.getcwd() if step.cwd else None
        try:
            if step.cwd:
                os.chdir(step.cwd)
            _Watchdog.fired = False
            signal.setitimer(signal.ITIMER_REAL, step.timeout)
            pid = os.posix_spawn(argv[0], argv, step.env, file_actions=actions, setpgroup=0)
        except OSError as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return Sample(time.perf_counter() - start, 127, maxrss, f"cannot start {step.argv[0]}: {exc.strerror}")
        finally:
            if old_cwd:
                os.chdir(old_cwd)
        _Watchdog.pid = pid
        _, status, usage = os.wait4(pid, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        _Watchdog.pid = 0
        maxrss = max(maxrss, _wrapped_rss(rss_path) if rss_wrapper is not None else usage.ru_maxrss)
        cpu += usage.ru_utime + usage.ru_stime
        rc = os.waitstatus_to_exitcode(status)
        if _Watchdog.fired:
            return Sample(time.perf_counter() - start, rc, maxrss, f"timed out after {step.timeout:.0f} s")
        if rc != 0:
            name = Path(step.argv[0]).name
            detail = _tail(err_path) or _tail(out_path) or "no output"
            return Sample(time.perf_counter() - start, rc, maxrss, f"{name} exit {rc}: {detail}")
    return Sample(time.perf_counter() - start, 0, maxrss, cpu=cpu)


class Sink:
    """The sink process (sink.py) and a connection to its control port."""

    def __init__(self, *, quickack: bool = False, port: int = 0) -> None:
        argv = [sys.executable, str(HERE / "sink.py"), "--port", str(port)]
        if quickack:
            argv.append("--quickack")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sink did not start")
        info = json.loads(line)
        self.port: int = info["port"]
        self.quickack = quickack
        self._ctl = socket.create_connection(("127.0.0.1", info["control"]))
        self._file = self._ctl.makefile("rwb")

    def _ask(self, command: str) -> bytes:
        self._file.write(command.encode() + b"\n")
        self._file.flush()
        return self._file.readline()

    def stats(self) -> dict[str, float]:
        data: dict[str, float] = json.loads(self._ask("stats"))
        return data

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        try:
            self._ask("quit")
            self._file.close()
            self._ctl.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


@contextmanager
def sink(*, quickack: bool = False, port: int = 0) -> Iterator[Sink]:
    s = Sink(quickack=quickack, port=port)
    try:
        yield s
    finally:
        s.close()


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after}


def free_port() -> int:
    """A port nothing listens on now (used to enqueue with the smarthost down, then start the sink on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sink_capacity(port: int, message: bytes, count: int) -> float:
    """Messages per second the sink absorbs when one client pipelines everything (its own ceiling)."""
    body = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    one = b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n" + body + b".\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO bench\r\nAUTH PLAIN AGJlbmNoAHNlY3JldA==\r\n")
        while not f.readline().startswith(b"235"):
            pass
        start = time.perf_counter()
        s.sendall(one * count)
        done = 0
        while done < count:
            line = f.readline()
            if not line:
                break
            if b"Ok: queued" in line:
                done += 1
        elapsed = time.perf_counter() - start
        s.sendall(b"QUIT\r\n")
    return count / elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    """90th percentile, linear interpolation between the closest ranks."""
    return quantile(values, 0.9)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), linear interpolation between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Series:
    """All measurements of one subject in one workload."""

    subject: str
    values: list[float] = field(default_factory=list)  # the metric (seconds, messages/second or MB)
    extra: dict[str, list[float]] = field(default_factory=dict)  # other per-run figures (RSS, sink counters)
    failures: list[str] = field(default_factory=list)
    error: str | None = None  # set when the subject could not be measured at all
    skipped: str | None = None  # set when the subject has no such operation (why)
    note: str = ""

    def add_extra(self, key: str, value: float) -> None:
        self.extra.setdefault(key, []).append(value)

    @property
    def usable(self) -> bool:
        return self.error is None and self.skipped is None and bool(self.values)
