"""The built-in header fix-ups run in a declared order (``PLUGIN_ORDER``), not in the order of their names."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from support import Runner, SmtpServer

from esmtp import plugins
from esmtp.config import Config, Identity
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
