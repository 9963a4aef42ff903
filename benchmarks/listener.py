"""The listener's budgets (issue 22): ``esmtp --listen`` against a Postfix null client, both relaying to the same
AUTH-requiring sink (``benchmarks/sink.py``), ratios measured in one run.

* throughput: 4 concurrent clients x 250 messages (a connection per message, as Grafana or a cron job opens one),
  from the first connection until the sink has counted every message: esmtp ≥ 1.5x Postfix's msg/s, with ≤ 2
  upstream connections in all;
* latency: one message, from connect to the 250 at the dot (the median of sequential runs): ≤ Postfix's. Postfix
  answers 250 once the message is in its queue, esmtp once the sink has it: esmtp's figure includes the relay;
* peak RSS: the listener's process (VmHWM) ≤ 60 MB, and below the sum of Postfix's processes (sampled during the
  throughput run).

msmtpd is not compared: Debian's ``msmtp`` 1.8.23 package does not ship it.

Needs root and Postfix (``.ci/install-interop-deps.sh``): the Postfix master starts as root. Run with the project's
virtualenv: ``.venv/bin/python benchmarks/listener.py [--clients 4] [--messages 250]``. The report is printed (and
written to ``benchmarks/results/listener-latest.md``); the exit status is 0 when every budget is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADER = (b"From: app@example.org\r\nTo: rcpt@example.org\r\nSubject: listener benchmark\r\n"
          b"Date: Sat, 05 Dec 2026 00:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n\r\n")
BODY = HEADER + b"A line of the 2 KB benchmark message, long enough to count as text.\r\n" * 29


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "sink.py")], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.port, self.control = ports["port"], ports["control"]

    def ask(self, command: str) -> str:
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as sock:
            sock.sendall(command.encode() + b"\n")
            return sock.makefile().readline().strip()

    def stats(self) -> dict[str, float]:
        return dict(json.loads(self.ask("stats")))

    def wait_for(self, messages: int, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while self.stats()["messages"] < messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sink has {self.stats()['messages']} of {messages} messages")
            time.sleep(0.005)
        return time.monotonic()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def rss_kib(pids: list[int], field: str = "VmRSS") -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


class EsmtpListener:
    name = "esmtp --listen"

    def __init__(self, sink: Sink, work: Path) -> None:
        home = work / "esmtp-home"
        home.mkdir()
        rc = home / ".esmtprc"
        rc.write_text(f"hostname 127.0.0.1:{sink.port}\nusername bench\npassword secret\nauth_plaintext enabled\n")
        rc.chmod(0o600)
        self.port = free_port()
        esmtp = Path(sys.executable).parent / "esmtp"
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen([str(esmtp), "--listen", f"127.0.0.1:{self.port}"], env=env,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if b"listening on" not in line:
            raise RuntimeError(f"the listener did not start: {line!r}")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def peak_kib(self) -> int:
        return rss_kib(self.pids(), "VmHWM")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


_MAIN_CF = """compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}/log
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.localdomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
biff = no
relayhost = [127.0.0.1]:{sink}
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:bench:secret
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = none
smtp_connection_cache_on_demand = yes
smtp_connection_cache_destinations = [127.0.0.1]:{sink}
"""
_MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class PostfixNullClient:
    name = "Postfix null client"

    def __init__(self, sink: Sink, work: Path) -> None:
        postfix = shutil.which("postfix", path="/usr/sbin:/sbin:/usr/bin")
        if postfix is None or os.geteuid() != 0:
            raise RuntimeError("needs root and Postfix (.ci/install-interop-deps.sh)")
        self.postfix = postfix
        d = self.directory = work / "postfix"
        for sub in ("etc", "log", "data", "spool"):
            (d / sub).mkdir(parents=True)
        for sub in ("", "etc", "log"):
            (d / sub).chmod(0o755)
        user = pwd.getpwnam("postfix")
        os.chown(d / "data", user.pw_uid, user.pw_gid)
        self.port = free_port()
        (d / "etc/main.cf").write_text(_MAIN_CF.format(d=d, sink=sink.port))
        (d / "etc/master.cf").write_text(_MASTER_CF.format(port=self.port))
        past = time.time() - 10  # Postfix sleeps while main.cf was modified in the current second
        for name in ("main.cf", "master.cf"):
            os.utime(d / "etc" / name, (past, past))
        started = subprocess.run([postfix, "-c", str(d / "etc"), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stdout}{started.stderr}")
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("Postfix did not start")
            time.sleep(0.05)
        self.master = int((d / "spool/pid/master.pid").read_text().strip())

    def pids(self) -> list[int]:
        """The master and every process of its session (smtpd, cleanup, qmgr, smtp, ...)."""
        session = os.getsid(self.master)
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry.name)) == session:
                        found.append(int(entry.name))
        return found

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run([self.postfix, "-c", str(self.directory / "etc"), "stop"], check=True,
                           capture_output=True)


def send_one(port: int) -> float:
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=60) as smtp:
        smtp.sendmail("app@example.org", ["rcpt@example.org"], BODY)
        elapsed = time.monotonic() - started  # the 250 at the dot, before QUIT
    return elapsed


def _client(port: int, messages: int, failures: Any) -> None:
    """One client process: ``messages`` messages, a connection each (processes: the clients must not be what limits
    the rate, as threads sharing one interpreter would be)."""
    try:
        for _ in range(messages):
            send_one(port)
    except (OSError, smtplib.SMTPException) as error:
        failures.put(f"{type(error).__name__}: {error}")


def throughput(subject: EsmtpListener | PostfixNullClient, sink: Sink, clients: int, messages: int,
               sample: Callable[[], None]) -> tuple[float, int]:
    """Messages per second from the first connection until the sink has them all, and the upstream connections
    opened meanwhile (a connection kept from before the run counts as one)."""
    import multiprocessing

    kept = 1 if isinstance(subject, EsmtpListener) else 0
    sink.ask("reset")
    failures: Any = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_client, args=(subject.port, messages, failures))
                 for _ in range(clients)]
    started = time.monotonic()
    for process in processes:
        process.start()
    while any(process.is_alive() for process in processes):
        sample()
        time.sleep(0.05)
    if not failures.empty():
        raise RuntimeError(f"{subject.name}: {failures.get()}")
    done = sink.wait_for(clients * messages)
    sample()
    stats = sink.stats()
    return clients * messages / (done - started), int(stats["connections"]) + (kept if stats["connections"] == 0 else 0)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="esmtp-listener-bench-", dir="/tmp"))
    directory.chmod(0o755)  # postfix must traverse it
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--messages", type=int, default=250)
    parser.add_argument("--latency-runs", type=int, default=30)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with scratch() as work:
        sink = Sink()
        esmtp = postfix = None
        try:
            esmtp = EsmtpListener(sink, work)
            postfix = PostfixNullClient(sink, work)
            send_one(esmtp.port)  # warm up: imports, the first upstream login
            send_one(postfix.port)
            sink.wait_for(0)
            postfix_peak = [0]

            def sample_postfix() -> None:
                postfix_peak[0] = max(postfix_peak[0], rss_kib(postfix.pids()))

            latency: dict[str, list[float]] = {esmtp.name: [], postfix.name: []}
            for _ in range(args.latency_runs):  # sequential single messages, interleaved
                latency[esmtp.name].append(send_one(esmtp.port))
                latency[postfix.name].append(send_one(postfix.port))
            time.sleep(1)
            sink.ask("reset")
            rates, connections = {}, {}
            for subject, sample in ((esmtp, lambda: None), (postfix, sample_postfix)):
                rates[subject.name], connections[subject.name] = throughput(subject, sink, args.clients,
                                                                            args.messages, sample)
            esmtp_connections, postfix_connections = connections[esmtp.name], connections[postfix.name]
            esmtp_peak = esmtp.peak_kib()
        finally:
            for running in (esmtp, postfix):
                if running is not None:
                    running.stop()
            sink.stop()
    median = {name: statistics.median(values) * 1000 for name, values in latency.items()}
    ratio = rates[esmtp.name] / rates[postfix.name]
    verdicts = {
        "throughput": ratio >= 1.5 and esmtp_connections <= 2,
        "latency": median[esmtp.name] <= median[postfix.name],
        "rss": esmtp_peak <= 60 * 1024 and esmtp_peak < postfix_peak[0],
    }
    mark = {True: "met", False: "**miss**"}
    report = "\n".join([
        f"## Listener run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{os.cpu_count()} cores, load average {load:.2f} at the start, CPython {sys.version.split()[0]}; "
        f"{args.clients} clients x {args.messages} messages of {len(BODY)} bytes, a connection per message; "
        f"latency: median of {args.latency_runs}.",
        "",
        "| workload | esmtp --listen | Postfix null client | budget | verdict |",
        "|---|---|---|---|---|",
        f"| throughput (to the sink) | {rates[esmtp.name]:.0f} msg/s, {esmtp_connections:.0f} upstream connection(s) | "
        f"{rates[postfix.name]:.0f} msg/s, {postfix_connections:.0f} upstream connection(s) | ≥ 1.5x Postfix, ≤ 2 "
        f"connections | {mark[verdicts['throughput']]} ({ratio:.2f}x) |",
        f"| latency, connect to 250 at the dot | {median[esmtp.name]:.1f} ms | {median[postfix.name]:.1f} ms | "
        f"≤ Postfix's | {mark[verdicts['latency']]} |",
        f"| peak RSS | {esmtp_peak / 1024:.1f} MB (one process) | {postfix_peak[0] / 1024:.1f} MB (all processes) | "
        f"≤ 60 MB and < Postfix's | {mark[verdicts['rss']]} |",
        "",
    ])
    print(report)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "listener-latest.md").write_text(report)
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
