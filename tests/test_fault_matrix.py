"""The fault matrix: the scripted server fails at each stage of the dialogue (greeting, EHLO, STARTTLS, AUTH, MAIL,
RCPT, DATA, the final dot) with a 4xx, a 5xx, a drop and silence.

Each case runs the installed ``sendmail`` twice at once, against two servers scripted alike: without a queue, it
must exit with the right code, name the server and quote its reply (or say it hung up or timed out), in bounded
time; with ``queue fallback``, a temporary failure must leave the message queued (exit 0), and a flush once the
server is well again must deliver it exactly once, while a permanent one is reported as without the queue.
Waits are 1 s (``timeout 1``), so that the whole matrix stays fast.

The same faults go through ``sendmail -bs`` and through the warm relay, and each process is killed (SIGKILL) while
the server is silent at each stage: nothing is lost, and a second copy only in the documented final-dot window.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from relay_support import relay_pids, start_relay, stop_relays
from support import DROP, SILENCE, Result, Runner, ScriptedServer, StartScripted
from test_stdio import Session

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


# ---- the same faults through sendmail -bs and through the warm relay ----------------------------------------------

BS_SESSION = (b"EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
              + MESSAGE.replace(b"\n", b"\r\n") + b".\r\nQUIT\r\n")


def _bs_send(run: Runner) -> tuple[float, list[str], int, str]:
    """One message through ``sendmail -bs``, pipelined: the time, the replies, the exit status and stderr."""
    started = time.monotonic()
    session = Session(run)
    session.send(BS_SESSION)
    replies = session.replies(7)
    status, stderr, _ = session.end(TIME_LIMIT + 30)
    return time.monotonic() - started, replies, status, stderr


def _relay_runner(home: Path) -> Runner:
    """A Runner whose commands go through a resident process that is already listening."""
    home.mkdir(parents=True)
    (home.parent / "run").mkdir(mode=0o700)
    runner = Runner(home, {"ESMTP_RELAY_DAEMON": "1"})
    start_relay(runner)
    return runner


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", STAGES)
def test_fault_through_bs_and_the_warm_relay(tmp_path: Path, scripted_server: StartScripted, stage: str,
                                            fault: str) -> None:
    """``-bs`` answers the final dot with what the server's failure means (4xx and exit 75 for anything temporary,
    its 5xx otherwise, quoting it), and the warm relay gives what a run of its own gives; both in bounded time, and
    neither delivers anything."""
    replies, extensions, config = _script(stage, fault)
    (tmp_path / "bs").mkdir()
    bs = Runner(tmp_path / "bs")
    relayed = _relay_runner(tmp_path / "relay" / "home")
    try:
        bs_server = scripted_server(dict(replies), extensions=extensions)
        relay_server = scripted_server(dict(replies), extensions=extensions)
        bs.write_config(f"hostname {bs_server.hostport}\n{config}")
        relayed.write_config(f"hostname {relay_server.hostport}\n{config}")
        with ThreadPoolExecutor(2) as pool:
            bs_future, relay_future = pool.submit(_bs_send, bs), pool.submit(_timed_send, relayed)
            (bs_elapsed, answers, status, stderr), (elapsed, result) = bs_future.result(), relay_future.result()
    finally:
        stop_relays(relayed.runtime)

    temporary = fault != "5xx"
    code = EX_TEMPFAIL if temporary else PERMANENT.get(stage, EX_UNAVAILABLE)
    quoted = f"{REPLIES[fault][stage]} {REPLIES[fault][stage][0]}.0.0 scripted {stage} failure" if fault in REPLIES \
        else None

    assert [answer[:3] for answer in answers[:5]] == ["220", "250", "250", "250", "354"], answers
    dot, bye = answers[5:]
    assert dot[:1] == ("4" if temporary else "5"), dot
    assert bye.startswith("221 ")
    assert status == code, stderr
    assert bs_server.hostport in dot and bs_server.hostport in stderr
    if quoted is not None:
        assert f"scripted {stage} failure" in dot and quoted in stderr
    assert "internal error" not in stderr + dot and "Traceback" not in stderr
    assert bs_elapsed < TIME_LIMIT
    assert _delivered(bs_server) == 0

    assert result.returncode == code, result.stderr
    assert relay_server.hostport in result.stderr
    if quoted is not None:
        assert quoted in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert elapsed < TIME_LIMIT
    assert _delivered(relay_server) == 0


def _reached(server: ScriptedServer, stage: str) -> bool:
    """Whether the server has got as far as ``stage`` on some connection (it is silent there)."""
    if stage == "greeting":
        return bool(server.connections)
    if stage == "dot":
        return any(connection.messages for connection in server.connections)
    return any(command.verb == stage for connection in list(server.connections) for command in connection.commands)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIME_LIMIT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_every_stage_loses_nothing(tmp_path: Path, scripted_server: StartScripted, stage: str) -> None:
    """SIGKILL while the server is silent at each stage. ``-bs`` has answered nothing for the message, so its caller
    keeps it, and the server accepted nothing. The warm relay's front end sends the message itself from its spool
    file: the server accepts it once; only when the first copy's data had been sent in full (the final dot) does the
    server hold a second one, the documented final-dot window."""
    replies, extensions, config = _script(stage, "silence")
    config = config.replace("timeout 1\n", "timeout 20\n")
    (tmp_path / "bs").mkdir()
    bs = Runner(tmp_path / "bs")
    bs_server = scripted_server(dict(replies), extensions=extensions)
    bs.write_config(f"hostname {bs_server.hostport}\n{config}")
    session = Session(bs)
    session.send(BS_SESSION)
    assert [answer[:3] for answer in session.replies(5)] == ["220", "250", "250", "250", "354"]
    _wait_until(lambda: _reached(bs_server, stage))
    session.proc.kill()
    status, _, rest = session.end()
    assert (status, rest) == (-9, b"")  # no reply to the final dot: the caller still has the message
    assert _delivered(bs_server) == 0

    relayed = _relay_runner(tmp_path / "relay" / "home")
    try:
        relay_server = scripted_server(dict(replies), extensions=extensions)
        relayed.write_config(f"hostname {relay_server.hostport}\n{config}")
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(_timed_send, relayed)
            _wait_until(lambda: _reached(relay_server, stage))
            _heal(relay_server, stage)
            for pid in relay_pids(relayed.runtime):
                os.kill(pid, signal.SIGKILL)
            elapsed, result = sending.result()
    finally:
        stop_relays(relayed.runtime)
    assert result.returncode == 0, result.stderr
    assert elapsed < TIME_LIMIT
    assert _delivered(relay_server) == 1
    assert len(relay_server.messages) == (2 if stage == "dot" else 1)
