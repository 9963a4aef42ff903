"""mailq / -bp through the installed command: sizes with units, the next try as a time, --json, and a configuration
that cannot be read or used does not stop the listing. Every test runs twice: here, and through the warm relay's
resident process (:mod:`relay_support`): same output, same exit codes."""

from __future__ import annotations

import json
import re
import time

import pytest
from relay_support import (
    relay_pids,
    run_in_both_modes,  # noqa: F401  (the `run` fixture: every test here runs in both modes)
    socket_path,
)
from support import Runner, SmtpServer, free_port

MESSAGE = b"From: alice@example.org\nSubject: queued\n\n" + b"x" * 3000 + b"\n"


def queue_one(run: Runner, *extra: str, reply_server: SmtpServer | None = None) -> None:
    """One message in the queue after a failed try: unreachable server (retried at the next flush), or a 4xx."""
    host = reply_server.hostport if reply_server is not None else f"127.0.0.1:{free_port()}"
    run.write_config("\n".join([f"hostname {host}", "queue fallback", *extra]) + "\n")
    result = run("-f", "alice@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr


def test_text_listing_has_units_and_the_next_try_as_a_time(run: Runner, smtp_server: SmtpServer) -> None:
    smtp_server.sink.rcpt_replies["bob@example.net"] = "451 4.2.1 try later"
    queue_one(run, "queue_retry 2h", reply_server=smtp_server)
    listing = run(program="mailq")
    assert listing.returncode == 0, listing.stderr
    out = listing.stdout
    assert re.search(r"^\S+ +3\.\d KiB  queued \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)  from <alice@example.org>$",
                     out, re.M), out
    match = re.search(r"attempts: 1, last \S+ \S+, next try: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(in (1h|2h)\)", out)
    assert match, out
    expected = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + 7200))
    assert match.group(1)[:16] in (expected, time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + 7140)))
    assert "last error: 127.0.0.1" in out and "451 4.2.1 try later" in out
    assert re.search(r"^-- 1 message, 3\.\d KiB, in ", out, re.M)


def test_unreachable_server_is_retried_at_the_next_flush(run: Runner) -> None:
    queue_one(run)
    assert "next try: at the next flush" in run("-bp").stdout


def test_json_listing_for_scripts(run: Runner) -> None:
    queue_one(run)
    result = run("--json", program="mailq")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [entry] = document["entries"]
    assert entry["sender"] == "alice@example.org" and entry["recipients"] == ["bob@example.net"]
    assert entry["size"] > 3000 and entry["attempts"] == 1 and entry["next_try"] == "next flush"
    assert entry["next_try_unix"] is None and entry["created_unix"] <= time.time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", entry["created"])
    assert document["failed"] == [] and document["unreadable"] == [] and document["queue_dir"]
    assert json.loads(run("-bp", "--json").stdout)["entries"][0]["id"] == entry["id"]


def test_a_bad_duration_does_not_stop_the_listing_and_check_names_it(run: Runner) -> None:
    queue_one(run)
    config = run.write_config(f"hostname 127.0.0.1:{free_port()}\nqueue fallback\n\nqueue_retry '5 minutes'\n")
    listing = run(program="mailq")
    assert listing.returncode == 0 and "1 message" in listing.stdout
    check = run("--check", program="esmtp")
    assert check.returncode == 78
    assert check.stderr == (f"esmtp: {config}:4: 'queue_retry' takes a duration such as 30s, 5m, 2h or 5d, not "
                            "'5 minutes' (write 5m: one word, no space)\n")
    send = run("bob@example.net", input=MESSAGE)
    assert send.returncode == 78 and send.stderr.startswith(f"sendmail: {config}:4: 'queue_retry'")


@pytest.mark.parametrize("relay_setting", ["", "relay_daemon auto\n"])
def test_a_broken_configuration_gives_the_same_answers_every_time(run: Runner, relay_setting: str) -> None:
    """With a duration written as two words (``queue_retry 5 minutes``: a file that does not parse), every mailq warns
    and lists (0), every send and --check fail (78), whether the command runs here or in a resident process, started
    by the first command (``relay_daemon auto``) or already there, and after ``relay_daemon auto`` is removed."""
    if relay_setting:
        run.mode_env = {}  # the file decides: the first command runs here and starts the resident process
    queue_one(run)
    broken = f"hostname 127.0.0.1:{free_port()}\nqueue fallback\n{relay_setting}queue_retry 5 minutes\n"
    config = run.write_config(broken)
    error = (f"{config}:{3 + bool(relay_setting)}: 'queue_retry 5 minutes': a duration is one word here: write "
             "'queue_retry 5m'")
    for state in ("as written", "as written again", "relay_daemon removed"):
        if state == "relay_daemon removed":
            run.write_config(broken.replace("relay_daemon auto\n", ""))
            error = error.replace(f"{config}:4:", f"{config}:3:")
        listing = run(program="mailq")
        assert (listing.returncode, listing.stderr.splitlines()[0]) == (0, f"mailq: warning: {error}"), (
            state, listing)
        assert "1 message" in listing.stdout, (state, listing)
        send = run("bob@example.net", input=MESSAGE)
        assert (send.returncode, send.stderr) == (78, f"sendmail: {error}\n"), (state, send)
        check = run("--check", program="esmtp")
        assert (check.returncode, check.stderr) == (78, f"esmtp: {error}\n"), (state, check)
    if run.mode_env.get("ESMTP_RELAY_DAEMON") == "0":
        assert not relay_pids(run.runtime)
    if relay_setting:  # the file no longer asks for the relay: its resident process leaves (and removes its socket)
        ours = socket_path(run)
        deadline = time.monotonic() + 15
        while ours.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ours.exists()
