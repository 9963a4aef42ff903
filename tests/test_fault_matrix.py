"""The fault matrix: the scripted server fails at each stage of the dialogue (greeting, EHLO, STARTTLS, AUTH, MAIL,
RCPT, DATA, the final dot) with a 4xx, a 5xx, a drop and silence.

Each case runs the installed ``sendmail`` twice at once, against two servers scripted alike: without a queue, it
must exit with the right code, name the server and quote its reply (or say it hung up or timed out), in bounded
time; with ``queue fallback``, a temporary failure must leave the message queued (exit 0), and a flush once the
server is well again must deliver it exactly once, while a permanent one is reported as without the queue.
Waits are 1 s (``timeout 1``), so that the whole matrix stays fast.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import DROP, SILENCE, Result, Runner, ScriptedServer, StartScripted

MESSAGE = b"From: a@example.org\nTo: b@example.net\nSubject: matrix\n\nbody\n"
STAGES = ("greeting", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "dot")
FAULTS = ("4xx", "5xx", "drop", "silence")
#: The replies per stage (EHLO's 5xx is not one of those that make a client fall back to HELO).
REPLIES = {
    "4xx": {"greeting": "421", "EHLO": "421", "STARTTLS": "454", "AUTH": "454", "MAIL": "451", "RCPT": "450",
            "DATA": "451", "dot": "451"},
    "5xx": {"greeting": "554", "EHLO": "550", "STARTTLS": "554", "AUTH": "535", "MAIL": "550", "RCPT": "550",
            "DATA": "554", "dot": "554"},
}
#: Exit codes of the 5xx cases (every 4xx, drop and silence is 75: try again).
PERMANENT = {"AUTH": 77, "RCPT": 67}
EX_UNAVAILABLE, EX_TEMPFAIL = 69, 75
#: Generous: a case takes about a second; this only catches a wait that is not bounded by ``timeout``.
TIME_LIMIT = 15.0


def _script(stage: str, fault: str) -> tuple[dict[str, str], tuple[str, ...], str]:
    """The server's replies and extensions, and the configuration lines, for one case."""
    action = {"drop": DROP, "silence": SILENCE}.get(fault)
    reply = action or f"{REPLIES[fault][stage]} {REPLIES[fault][stage][0]}.0.0 scripted {stage} failure"
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME")
    config = "timeout 1\n"
    if stage == "STARTTLS":  # a refused STARTTLS is an error even with 'enabled' (no downgrade)
        extensions += ("STARTTLS",)
        config += "starttls enabled\n"
    if stage == "AUTH":
        extensions += ("AUTH PLAIN",)
        config += "username alice\npassword s3cret\nauth_plaintext enabled\n"
    return {stage: reply}, extensions, config


def _heal(server: ScriptedServer, stage: str) -> None:
    """The server works again (no STARTTLS to offer, so 'starttls enabled' goes on in clear text; AUTH succeeds)."""
    server.replies.clear()
    server.extensions = ("PIPELINING", "8BITMIME", "AUTH PLAIN")
    if stage == "AUTH":
        server.script("AUTH", "235 2.7.0 authenticated")


def _timed_send(run: Runner) -> tuple[float, Result]:
    started = time.monotonic()
    result = run("b@example.net", input=MESSAGE, timeout=TIME_LIMIT + 30)
    return time.monotonic() - started, result


def _queued(home: Path) -> list[dict[str, object]]:
    queue = home / ".local" / "state" / "esmtp" / "queue"
    texts = [path.read_text() for path in sorted(queue.glob("*.json"))] if queue.exists() else []
    return [json.loads(text) for text in texts if not text.startswith("D")]


def _delivered(server: ScriptedServer) -> int:
    """Messages the server accepted (a message whose final reply never came, or was not 250, does not count)."""
    return sum(message.reply.startswith("250") for message in server.messages)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", STAGES)
def test_fault(tmp_path: Path, scripted_server: StartScripted, stage: str, fault: str) -> None:
    replies, extensions, config = _script(stage, fault)
    direct_home, queue_home = tmp_path / "direct", tmp_path / "queue"
    direct_home.mkdir()
    queue_home.mkdir()
    direct, queued = Runner(direct_home), Runner(queue_home)
    direct_server = scripted_server(dict(replies), extensions=extensions)
    queue_server = scripted_server(dict(replies), extensions=extensions)
    direct.write_config(f"hostname {direct_server.hostport}\n{config}")
    queued.write_config(f"hostname {queue_server.hostport}\n{config}queue fallback\n")

    with ThreadPoolExecutor(2) as pool:  # the two runs at once: the matrix stays fast
        (elapsed, result), (_, queue_result) = pool.map(_timed_send, [direct, queued])

    # Without a queue: the exit code, the server named, its reply quoted, in bounded time.
    temporary = fault != "5xx"
    assert result.returncode == (EX_TEMPFAIL if temporary else PERMANENT.get(stage, EX_UNAVAILABLE)), result.stderr
    assert direct_server.hostport in result.stderr
    if fault in REPLIES:
        assert f"{REPLIES[fault][stage]} {REPLIES[fault][stage][0]}.0.0 scripted {stage} failure" in result.stderr
    elif fault == "silence":
        assert "timed out" in result.stderr or "no greeting within 1 s" in result.stderr, result.stderr
    else:
        assert "closed the connection" in result.stderr, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert elapsed < TIME_LIMIT
    assert _delivered(direct_server) == 0

    # With 'queue fallback': a temporary failure is queued, then delivered exactly once by a flush.
    if not temporary:
        assert queue_result.returncode == result.returncode, queue_result.stderr
        assert _queued(queue_home) == [] and _delivered(queue_server) == 0
        return
    assert queue_result.returncode == 0, queue_result.stderr
    [entry] = _queued(queue_home)
    assert _delivered(queue_server) == 0
    _heal(queue_server, stage)
    flushed = queued("--flush", str(entry["id"]), timeout=TIME_LIMIT + 30)
    assert flushed.returncode == 0, flushed.stderr
    assert _queued(queue_home) == []
    assert _delivered(queue_server) == 1
