"""The built-in header fix-ups run in a declared order (``PLUGIN_ORDER``), not in the order of their names."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from support import Runner, SmtpServer

from esmtp import plugins
from esmtp.config.model import Config, Identity
from esmtp.message import read_message
from esmtp.plugins import BUILTIN_PLUGINS, EntryPointRecord, load_hooks
from esmtp.types import Envelope

FIXUPS = ("fixup_bcc", "fixup_date", "fixup_from", "fixup_message_id", "fixup_sender")


def field_names(head: bytes, separator: bytes) -> list[bytes]:
    return [line.split(b":")[0] for line in head.split(separator)]


def test_the_server_receives_the_fixed_up_headers_in_esmtp_order(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nforce sender list-owner@example.org\n")
    result = run("-f", "a@example.org", "b@example.net", input=b"Subject: s\nBcc: hidden@example.net\n\nbody\n")
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    head = got.data.partition(b"\r\n\r\n")[0]
    # Bcc removed, then Date, From and Message-ID appended as esmtp 1.2 appends them, then the forced Sender.
    assert field_names(head, b"\r\n") == [b"Subject", b"Date", b"From", b"Message-ID", b"Sender"]
    assert head.endswith(b"\r\nSender: list-owner@example.org")


def test_renaming_the_fixups_does_not_reorder_the_headers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # Names in the reverse of the call order: with name order, Sender would come first and Bcc be removed last.
    renamed = {name: f"{chr(ord('z') - index)}_{name}" for index, name in enumerate(FIXUPS)}
    records = [EntryPointRecord(renamed[name], value, "esmtp") for name, value in BUILTIN_PLUGINS if name in renamed]
    monkeypatch.setattr(plugins, "scan_entry_points", lambda: records)
    identity = Identity(address=None, force_sender="list-owner@example.org")
    config = Config(path=None, identities=[identity], default=identity)
    hooks = load_hooks(config)
    with read_message(io.BytesIO(b"Subject: s\nBcc: hidden@example.net\n\nbody\n")) as message:
        hooks.fixup_headers(Envelope("a@example.org", ["b@example.net"], identity), message, config)
        data = b"".join(message.chunks())
    assert all(hooks.pm.has_plugin(name) for name in renamed.values())
    assert field_names(data.partition(b"\n\n")[0], b"\n") == [b"Subject", b"Date", b"From", b"Message-ID", b"Sender"]


def test_the_order_holds_when_a_fixup_is_loaded_in_an_earlier_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plugin the index does not know yet (new, or its source changed) is imported before the others: still in
    order, because plugins sharing a hook are registered again together."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    identity = Identity(address=None)
    config = Config(path=None, identities=[identity], default=identity)
    load_hooks(config).config_keywords()  # learns the index
    [cache] = (tmp_path / "esmtp").iterdir()
    data = json.loads(cache.read_text())
    data["index"] = {key: entry for key, entry in data["index"].items() if not key.startswith("fixup_date=")}
    cache.write_text(json.dumps(data))
    hooks = load_hooks(config)
    hooks.config_keywords()  # imports fixup_date alone, before the fixup hook is called
    assert hooks.pm.has_plugin("fixup_date") and not hooks.pm.has_plugin("fixup_from")
    with read_message(io.BytesIO(b"Subject: s\n\nbody\n")) as message:
        hooks.fixup_headers(Envelope("a@example.org", ["b@example.net"], identity), message, config)
        data_bytes = b"".join(message.chunks())
    assert field_names(data_bytes.partition(b"\n\n")[0], b"\n") == [b"Subject", b"Date", b"From", b"Message-ID"]
