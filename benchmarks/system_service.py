"""The system service's budgets (issue 21): a submission through it costs no more than one through the warm relay,
and a burst from 4 users uses 1 upstream connection and 1 AUTH.

Run as root (it starts ``esmtp --system-daemon`` and runs callers as real accounts with ``runuser``)::

    .venv/bin/python benchmarks/system_service.py [--runs N]

Both paths are timed the same way, as the account ``esmtp-t1`` running ``sendmail`` under ``runuser`` against the
sink (:mod:`sink`, AUTH PLAIN required): through the system service (no ``~/.esmtprc``), and through that account's
own warm relay (``~/.esmtprc`` with ``relay_daemon auto``, its resident process up). ``runuser`` costs both the same;
``runuser true`` is reported as the floor. The interpreter every account can run is built as the tests build it
(``tests/system_support.py``). The report goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import Sink  # noqa: E402
from system_support import USERS, build_shared_python, ensure_users  # noqa: E402

USER = USERS[0]
BURST_USERS = (*USERS, "nobody")
MESSAGE = b"From: bench@example.org\nSubject: bench\n\n" + b"A line of a short message.\n" * 20


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=MESSAGE, env=env, capture_output=True, cwd="/", timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return elapsed


class Service:
    """``esmtp --system-daemon`` with every path under ``base``."""

    def __init__(self, base: Path, bin_dir: Path, port: int) -> None:
        self.bin = bin_dir
        self.env = {"ESMTP_SYSTEM_SOCKET": str(base / "run" / "submit.sock"),
                    "ESMTP_SYSTEM_CONFIG": str(base / "etc" / "esmtprc"),
                    "ESMTP_SYSTEM_SPOOL": str(base / "spool"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        (base / "etc").mkdir(mode=0o755)
        setup = subprocess.run([str(bin_dir / "esmtp"), "--system-setup"], env=self.env, capture_output=True, text=True)
        if setup.returncode != 0:
            raise RuntimeError(setup.stderr)
        config = base / "etc" / "esmtprc"
        config.write_text(f"hostname 127.0.0.1:{port}\nusername bench\npassword secret\nauth_plaintext enabled\n")
        subprocess.run([str(bin_dir / "esmtp"), "--system-setup"], env=self.env, capture_output=True, check=True)
        self.log = base / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([str(self.bin / "esmtp"), "--system-daemon"], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd="/")
        deadline = time.monotonic() + 30
        while b"serving" not in self.log.read_bytes().rsplit(b"esmtp-system: stopped", 1)[-1]:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


def warm_relay_env(base: Path, bin_dir: Path, port: int) -> dict[str, str]:
    """``USER``'s own configuration with the warm relay on, in a home of its own."""
    home = base / "home"
    home.mkdir(mode=0o700)
    (home / ".esmtprc").write_text(f"hostname 127.0.0.1:{port}\nusername bench\npassword secret\n"
                                   "auth_plaintext enabled\nrelay_daemon auto\n")
    (home / ".esmtprc").chmod(0o600)
    runtime = base / "runtime"
    runtime.mkdir(mode=0o700)
    for path in (home, home / ".esmtprc", runtime):
        shutil.chown(path, USER, USER)
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"}


def stop_warm_relay(runtime: Path) -> None:
    """End the warm relay's resident process that this run started (its pid is in its socket's lock file)."""
    for lock in runtime.glob("esmtp/*.lock"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(lock.read_text().strip()), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed messages per path (default 30)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("benchmarks/system_service.py must run as root\n")
        return 77
    ensure_users(BURST_USERS[:-1])
    base = Path(tempfile.mkdtemp(prefix="esmtp-bench-system-"))
    base.chmod(0o755)
    sink = Sink()
    service = None
    try:
        bin_dir = build_shared_python(base / "python")
        service = Service(base, bin_dir, sink.port)
        service.start()
        as_user = ["runuser", "-u", USER, "--"]
        through_service = [*as_user, str(bin_dir / "sendmail"), "rcpt@example.org"]
        warm = warm_relay_env(base, bin_dir, sink.port)
        through_relay = [*as_user, "env", *(f"{k}={v}" for k, v in warm.items()), str(bin_dir / "sendmail"),
                         "rcpt@example.org"]
        for command, env in ((through_service, service.env), (through_relay, service.env)):
            for _ in range(3):  # warm up: the service's session, the relay's resident process
                timed(command, env)
            time.sleep(0.3)
        floor = [timed([*as_user, "true"], service.env) for _ in range(args.runs)]
        samples: dict[str, list[float]] = {"service": [], "relay": []}
        for _ in range(args.runs):  # interleaved, so that load on the machine falls on both alike
            samples["service"].append(timed(through_service, service.env))
            samples["relay"].append(timed(through_relay, service.env))
        # The burst: a fresh service (no kept connection yet), one message from each of 4 accounts at once.
        service.stop()
        service.start()
        sink.reset()
        burst = [subprocess.Popen(["runuser", "-u", user, "--", str(bin_dir / "sendmail"), "rcpt@example.org"],
                                  stdin=subprocess.PIPE, env=service.env, cwd="/") for user in BURST_USERS]
        for proc in burst:
            proc.communicate(MESSAGE, timeout=120)
        codes = [proc.returncode for proc in burst]
        stats = sink.stats()
    finally:
        if service is not None:
            service.stop()
        sink.close()
        stop_warm_relay(base / "runtime")
        shutil.rmtree(base, ignore_errors=True)
    service_ms = statistics.median(samples["service"]) * 1000
    relay_ms = statistics.median(samples["relay"]) * 1000
    floor_ms = statistics.median(floor) * 1000
    print(f"| path ({args.runs} messages each, median) | wall time | minus `runuser true` |")
    print("|---|---|---|")
    print(f"| system service | {service_ms:.1f} ms | {service_ms - floor_ms:.1f} ms |")
    print(f"| warm relay | {relay_ms:.1f} ms | {relay_ms - floor_ms:.1f} ms |")
    print(f"| `runuser true` | {floor_ms:.1f} ms | |")
    ratio = (service_ms - floor_ms) / (relay_ms - floor_ms)
    print(f"\nservice / warm relay (without runuser): {ratio:.2f} (budget: at most 1.00)")
    print(f"burst of {len(BURST_USERS)} users at once: exit codes {codes}, {stats['connections']:.0f} connection(s), "
          f"{stats['auths']:.0f} AUTH(s), {stats['messages']:.0f} message(s) (budget: 1 connection, 1 AUTH)")
    met = ratio <= 1.0 and stats["connections"] == 1 and stats["auths"] == 1 and not any(codes)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
