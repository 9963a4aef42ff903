"""The queue's files: durable enqueue, locks across processes, state changes, the failed area and crash left-overs."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from esmtp_plugins.queue.bounce import EXPIRED, make_bounce, wants_bounce
from esmtp_plugins.queue.entry import Entry, new_id
from esmtp_plugins.queue.settings import Settings, parse_duration
from esmtp_plugins.queue.store import GARBAGE_AGE, QueueStore

from esmtp.errors import ConfigError

HEAD = b"From: a@example.org\nTo: b@example.net\nSubject: hi\n\n"
BODY = b"Hello.\n.\nBye.\n"


def make_entry(**fields: object) -> Entry:
    values: dict[str, object] = {
        "id": new_id(), "sender": "a@example.org", "recipients": ["b@example.net"], "identity": None,
        "created": time.time(), "size": 0, "header_size": len(HEAD),
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def enqueue(store: QueueStore, tmp_path: Path, **fields: object) -> Entry:
    body = tmp_path / f"body-{new_id()}"
    body.write_bytes(BODY)
    return store.enqueue(make_entry(**fields), [HEAD, str(body)])


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(str(tmp_path / "state" / "esmtp" / "queue"))


def test_enqueue_writes_message_and_envelope_privately(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path, full_name="José", notify="SUCCESS,FAILURE", envid="x y")
    queue = Path(store.path)
    assert sorted(p.name for p in queue.iterdir()) == sorted([f"{entry.id}.eml", f"{entry.id}.json", "tmp", "failed"])
    assert (queue / f"{entry.id}.eml").read_bytes() == HEAD + BODY
    assert entry.size == len(HEAD + BODY)
    assert stat.S_IMODE(queue.stat().st_mode) == 0o700
    assert stat.S_IMODE((queue / f"{entry.id}.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((queue / f"{entry.id}.eml").stat().st_mode) == 0o600
    assert list((queue / "tmp").iterdir()) == []
    data = json.loads((queue / f"{entry.id}.json").read_text())
    assert data["recipients"] == ["b@example.net"] and data["full_name"] == "José" and data["version"] == 1
    loaded = store.load(entry.id)
    assert loaded == entry


def test_ids_sort_by_age(store: QueueStore, tmp_path: Path) -> None:
    first = enqueue(store, tmp_path)
    second = enqueue(store, tmp_path)
    assert store.ids() == [first.id, second.id]
    assert [e.id for e in store.scan()] == [first.id, second.id]


def test_failed_write_leaves_nothing(store: QueueStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.enqueue(make_entry(), [HEAD, str(tmp_path / "no-such-body")])
    assert store.ids() == []
    assert os.listdir(store.tmp) == []
    assert [n for n in os.listdir(store.path) if n.endswith(".eml")] == []


def test_file_size_limit_during_enqueue_leaves_nothing(tmp_path: Path) -> None:
    """A write refused by the kernel (here RLIMIT_FSIZE: EFBIG) half-way through the message."""
    queue = tmp_path / "q"
    big = tmp_path / "big"
    big.write_bytes(b"x" * 300_000)
    script = (
        "import resource, sys, time\n"
        "from esmtp_plugins.queue.entry import Entry, new_id\n"
        "from esmtp_plugins.queue.store import QueueStore\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "entry = Entry(id=new_id(), sender='a@x', recipients=['b@y'], identity=None, created=time.time(), size=0,"
        " header_size=0)\n"
        "try:\n"
        f"    QueueStore({str(queue)!r}).enqueue(entry, [b'Subject: x\\n\\n', {str(big)!r}])\n"
        "except OSError as error:\n"
        "    print(error.errno); sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert os.listdir(queue / "tmp") == []
    assert sorted(os.listdir(queue)) == ["failed", "tmp"]


def test_queue_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "q").write_text("not a directory")
    with pytest.raises(OSError):
        QueueStore(str(tmp_path / "q")).enqueue(make_entry(), [HEAD])


# ---- locks ---------------------------------------------------------------------------------------------------------


def test_claim_is_exclusive_and_released(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    claim = store.claim(entry)
    assert claim is not None
    assert store.claim(entry) is None  # a second open file description: flock refuses it
    claim.release()
    again = store.claim(entry)
    assert again is not None
    again.release()


def holder(store: QueueStore, entry: Entry) -> subprocess.Popen[str]:
    """Another process that locks the entry and sleeps."""
    script = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({store.eml(entry.id)!r}, os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_claim_held_by_another_process_then_killed(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    proc = holder(store, entry)
    try:
        assert store.claim(entry) is None
        assert store.remove(entry.id) == "busy"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    claim = store.claim(entry)  # kill -9 leaves no stale lock
    assert claim is not None
    claim.release()


def test_claim_of_a_delivered_entry_fails(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    early = os.open(store.eml(entry.id), os.O_RDONLY)  # a flusher that listed the entry before it went
    store.delete(entry.id)
    assert store.claim(entry) is None
    assert os.fstat(early).st_nlink == 0
    os.close(early)


def test_claim_rereads_a_changed_envelope(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path, recipients=["b@example.net", "c@example.net"])
    stale = store.load(entry.id)
    assert stale is not None
    claim = store.claim(entry)
    assert claim is not None
    claim.entry.recipients = ["c@example.net"]
    claim.entry.attempts = 1
    store.save(claim.entry)
    claim.release()
    fresh = store.claim(stale)
    assert fresh is not None
    assert fresh.entry.recipients == ["c@example.net"] and fresh.entry.attempts == 1
    fresh.release()


# ---- state changes -------------------------------------------------------------------------------------------------


def test_delete_removes_both_files(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    store.delete(entry.id)
    assert sorted(os.listdir(store.path)) == ["failed", "tmp"]


def test_move_to_failed_and_remove(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    entry.failed = {"b@example.net": "550 no"}
    entry.recipients = []
    store.move_to_failed(entry)
    assert store.ids() == []
    assert store.ids(failed=True) == [entry.id]
    assert Path(store.eml(entry.id, failed=True)).read_bytes() == HEAD + BODY
    assert store.remove(entry.id) == "removed"
    assert store.ids(failed=True) == []
    assert store.remove(entry.id) == "missing"


def test_repair_finishes_an_interrupted_move(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    # The state a crash right after the commit point of move_to_failed leaves: the entry is in both places.
    Path(store.json_path(entry.id, failed=True)).write_bytes(Path(store.json_path(entry.id)).read_bytes())
    store.repair()
    assert store.ids() == []
    assert os.path.exists(store.eml(entry.id, failed=True))


def test_garbage_is_only_old_left_overs(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    old = time.time() - GARBAGE_AGE - 10
    young_tmp = Path(store.tmp, "young.eml")
    old_tmp = Path(store.tmp, "old.eml")
    orphan = Path(store.path, "0000000000000orphan.eml")  # a message whose envelope never arrived
    young_orphan = Path(store.path, "0000000000000young.eml")
    for path in (young_tmp, old_tmp, orphan, young_orphan):
        path.write_bytes(b"x")
    for path in (old_tmp, orphan):
        os.utime(path, (old, old))
    os.utime(store.eml(entry.id), (old, old))  # an old entry is not garbage: it has its envelope
    assert store.collect_garbage() == 2
    assert young_tmp.exists() and young_orphan.exists()
    assert not old_tmp.exists() and not orphan.exists()
    assert store.ids() == [entry.id] and os.path.exists(store.eml(entry.id))


def test_remove_of_queued_entry(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path)
    assert store.remove(entry.id) == "removed"
    assert sorted(os.listdir(store.path)) == ["failed", "tmp"]


# ---- settings ------------------------------------------------------------------------------------------------------


def test_durations() -> None:
    assert parse_duration("90", "k") == 90
    assert parse_duration("30s", "k") == 30
    assert parse_duration("5m", "k") == 300
    assert parse_duration("1h30m", "k") == 5400
    assert parse_duration("5d", "k") == 432000
    assert parse_duration("1w", "k") == 604800
    with pytest.raises(ConfigError, match="'queue_retry' takes a duration"):
        parse_duration("soon", "queue_retry")
    with pytest.raises(ConfigError):
        parse_duration("", "k")


def test_settings_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ESMTP_QUEUE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    settings = Settings.from_options(None)
    assert settings.mode == "disabled" and not settings.bounce
    assert settings.path == str(tmp_path / "state" / "esmtp" / "queue")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    assert Settings.from_options({}).path == str(tmp_path / ".local" / "state" / "esmtp" / "queue")
    assert Settings.from_options({"queue_dir": "~/q"}).path == str(tmp_path / "q")
    monkeypatch.setenv("ESMTP_QUEUE_DIR", str(tmp_path / "env"))
    assert Settings.from_options({"queue_dir": "~/q"}).path == str(tmp_path / "env")
    with pytest.raises(ConfigError):
        Settings.from_options({"queue_concurrency": "0"})


def test_backoff_doubles_up_to_the_maximum() -> None:
    settings = Settings(retry=60, retry_max=300)
    assert [settings.backoff(n) for n in range(1, 6)] == [60, 120, 240, 300, 300]
    assert settings.backoff(10_000) == 300


# ---- bounces -------------------------------------------------------------------------------------------------------


def test_bounce_is_a_dsn_with_the_headers(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path, envid="env-1", recipients=[])
    entry.failed = {"b@example.net": "127.0.0.1:25: 550 5.1.1 <b@example.net>: no such user",
                    "c@example.net": f"{EXPIRED}not delivered within 5d; last error: connection refused"}
    entry.delivered = ["d@example.net"]
    entry.last_attempt = time.time()
    bounce, parts = make_bounce(entry, store.eml(entry.id), HEAD, hostname="host.example")
    assert bounce.sender == "" and bounce.recipients == ["a@example.org"] and bounce.bounce_of == entry.id
    assert not wants_bounce(bounce)  # never a bounce of a bounce
    store.enqueue(bounce, parts)
    raw = Path(store.eml(bounce.id)).read_bytes()
    assert raw[: bounce.header_size].endswith(b"\n\n") and b"\n\n" not in raw[: bounce.header_size - 2]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@host.example>"
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    text, status, returned = parsed.get_payload()  # type: ignore[misc]
    assert "no such user" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; host.example"
    assert blocks[0]["Original-Envelope-Id"] == "env-1"
    assert blocks[1]["Final-Recipient"] == "rfc822; b@example.net"
    assert blocks[1]["Status"] == "5.1.1" and blocks[1]["Action"] == "failed"
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 <b@example.net>: no such user"
    assert blocks[2]["Status"] == "4.4.7"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Subject: hi" in raw and BODY not in raw


def test_bounce_returns_the_whole_message_when_asked(store: QueueStore, tmp_path: Path) -> None:
    entry = enqueue(store, tmp_path, ret="FULL", recipients=[])
    entry.failed = {"b@example.net": "550 no"}
    bounce, parts = make_bounce(entry, store.eml(entry.id), HEAD, hostname="h")
    store.enqueue(bounce, parts)
    parsed = email.message_from_bytes(Path(store.eml(bounce.id)).read_bytes(), policy=email.policy.default)
    returned = parsed.get_payload()[2]  # type: ignore[index]
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_payload()[0]["Subject"] == "hi"
    assert parsed.get_payload()[1].get_payload()[1]["Status"] == "5.0.0"  # type: ignore[index]


def test_who_gets_a_bounce() -> None:
    assert wants_bounce(make_entry())
    assert wants_bounce(make_entry(notify="FAILURE,DELAY"))
    assert not wants_bounce(make_entry(notify="NEVER"))
    assert not wants_bounce(make_entry(notify="SUCCESS"))
    assert not wants_bounce(make_entry(sender=""))
    assert not wants_bounce(make_entry(bounce_of="x"))
