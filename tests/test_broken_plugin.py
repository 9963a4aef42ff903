"""A broken third-party plugin never stops mail: it is reported on stderr, unregistered, and the message goes out."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Runner, SmtpServer

MESSAGE = b"From: a@example.org\nSubject: plugins\n\nbody\n"

BROKEN = {
    # Its keyword declaration raises: it must not stay registered with that hook.
    "keywords": '''
from esmtp import hookimpl

@hookimpl
def esmtp_config_keywords():
    raise RuntimeError("broken on purpose")
''',
    # It fails to import at all.
    "import": '''
raise ImportError("broken on purpose")
''',
}


def install_plugin(where: Path, name: str, source: str) -> Path:
    """An installed distribution (a module and its .dist-info with an esmtp.plugins entry point) in ``where``."""
    where.mkdir(exist_ok=True)
    (where / f"{name}.py").write_text(source)
    info = where / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[esmtp.plugins]\n{name} = {name}\n")
    return where


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_plugin_is_skipped_and_mail_goes_out(run: Runner, smtp_server: SmtpServer, tmp_path: Path,
                                                    how: str) -> None:
    site = install_plugin(tmp_path / "site", f"broken_{how}", BROKEN[how])
    run.write_config(f"hostname {smtp_server.hostport}\n")
    for attempt in range(2):  # the second run reads the plugin index the first one wrote
        result = run("b@example.net", input=MESSAGE, env=run.env(PYTHONPATH=str(site)))
        assert result.returncode == 0, result.stderr
        assert f"plugin 'broken_{how}'" in result.stderr and "is skipped" in result.stderr
        assert "internal error" not in result.stderr
        assert len(smtp_server.sink.messages) == attempt + 1


def test_bs_refuses_for_now_a_recipient_a_buggy_router_cannot_check(run: Runner, smtp_server: SmtpServer,
                                                                    tmp_path: Path) -> None:
    """A router plugin with a bug: ``-bs`` answers that RCPT with 451 (the client keeps the message), never 250."""
    site = install_plugin(tmp_path / "site", "buggy_router", '''
from esmtp import hookimpl

@hookimpl(tryfirst=True)
def esmtp_route(envelope, config):
    if any(r.startswith("bug@") for r in envelope.recipients):
        raise KeyError("broken on purpose")
''')
    run.write_config(f"hostname {smtp_server.hostport}\n")
    dialogue = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bug@example.net>\r\nQUIT\r\n"
    result = run("-bs", input=dialogue, env=run.env(PYTHONPATH=str(site)))
    replies = result.stdout.splitlines()
    assert replies[-2].startswith("451 4.3.0 <bug@example.net>: internal error (KeyError)"), replies
    assert "KeyError" in result.stderr
    assert not smtp_server.sink.messages
