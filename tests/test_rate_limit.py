"""``rate_limit N/minute|hour|day`` (issue 23): the count is shared by every process of the user through a locked
file, a send over the limit exits 75 naming it, and with the queue the message waits and the flush keeps the limit.
Real processes of the installed commands against a real (aiosmtpd) server."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from support import Runner, SmtpServer, entry_point

from esmtp.config.parser import parse_config
from esmtp.errors import ConfigError


def message(subject: str) -> bytes:
    return f"From: alice@example.org\nTo: bob@example.net\nSubject: {subject}\n\nbody of {subject}\n".encode()


def subjects(server: SmtpServer) -> Counter[str]:
    found = Counter[str]()
    for got in server.sink.messages:
        match = re.search(rb"\r\nSubject: ([^\r\n]*)", b"\r\n" + got.data)
        found[match.group(1).decode() if match else "?"] += 1
    return found


def counter(run: Runner, name: str = "alice@example.org") -> Path:
    return run.home / ".local" / "state" / "esmtp" / "rate" / name


def age_the_counter(run: Runner, seconds: float) -> None:
    """Move every send time of the counter ``seconds`` into the past: the window has passed for them."""
    path = counter(run)
    stamps = [float(line) - seconds for line in path.read_text().split()]
    path.write_text("".join(f"{stamp:.6f}\n" for stamp in stamps))


def test_over_the_limit_without_a_queue_is_75_naming_the_limit(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"identity alice@example.org\n  hostname {smtp_server.hostport}\n  rate_limit 2/hour\n")
    codes = [run("-f", "alice@example.org", "bob@example.net", input=message(f"m{i}")) for i in range(3)]
    assert [c.returncode for c in codes] == [0, 0, 75]
    assert re.fullmatch(r"sendmail: rate_limit 2/hour of alice@example.org reached \(2 messages in the last hour\); "
                        r"the next one may go in \d+ min\n", codes[2].stderr), codes[2].stderr
    assert subjects(smtp_server) == {"m0": 1, "m1": 1}
    assert counter(run).stat().st_mode & 0o777 == 0o600


def test_a_failed_connection_gives_its_slot_back(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config("identity alice@example.org\n  hostname 127.0.0.1:1\n  rate_limit 1/day\n")
    assert run("-f", "alice@example.org", "bob@example.net", input=message("lost")).returncode == 75
    run.write_config(f"identity alice@example.org\n  hostname {smtp_server.hostport}\n  rate_limit 1/day\n")
    assert run("-f", "alice@example.org", "bob@example.net", input=message("sent")).returncode == 0
    assert subjects(smtp_server) == {"sent": 1}


def test_three_concurrent_processes_share_the_count(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"identity alice@example.org\n  hostname {smtp_server.hostport}\n  rate_limit 5/minute\n")
    script = "; ".join(
        f"printf 'Subject: p$1-{i}\\n\\nx\\n' | {entry_point()} -f alice@example.org bob@example.net; echo $?"
        for i in range(3))
    procs = [subprocess.Popen(["/bin/sh", "-c", script, "sh", str(n)], env=run.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for n in range(3)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    codes = Counter(code for out, _ in outputs for code in out.decode().split())
    assert codes == {"0": 5, "75": 4}, outputs
    assert len(smtp_server.sink.messages) == 5
    assert sum(1 for line in counter(run).read_text().splitlines() if line) == 5


def test_with_the_queue_messages_wait_and_the_flush_keeps_the_limit(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"queue fallback\nidentity alice@example.org\n  hostname {smtp_server.hostport}\n"
                     "  rate_limit 2/hour\n")
    for index in range(5):
        result = run("-f", "alice@example.org", "bob@example.net", input=message(f"m{index}"))
        assert result.returncode == 0, result.stderr  # delivered or queued: never lost
    assert subjects(smtp_server) == {"m0": 1, "m1": 1}
    listing = run(program="mailq").stdout
    assert listing.count("rate_limit 2/hour of alice@example.org reached") == 3, listing

    flushed = run("--flush", program="esmtp")  # the window is still full: nothing more goes
    assert flushed.returncode == 75, flushed.stderr
    assert len(smtp_server.sink.messages) == 2

    age_the_counter(run, 3601)  # an hour later
    run("--flush", program="esmtp")
    assert len(smtp_server.sink.messages) == 4  # two more, no more
    age_the_counter(run, 3601)
    assert run("--flush", program="esmtp").returncode == 0
    deadline = time.monotonic() + 10
    while len(smtp_server.sink.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subjects(smtp_server) == {f"m{i}": 1 for i in range(5)}  # every message once
    assert run("-bp").stdout == "Mail queue is empty\n"


def test_rate_limit_values_are_checked() -> None:
    for value, problem in (("100", "takes N/minute, N/hour or N/day"), ("5/week", "takes N/minute"),
                           ("0/hour", "from 1 to 100000, not 0")):
        try:
            parse_config(f"rate_limit {value}\n", "rc")
        except ConfigError as error:
            assert str(error).startswith("rc:1: 'rate_limit' ") and problem in str(error), error
        else:
            raise AssertionError(f"rate_limit {value} was accepted")
