"""The plugin guide's examples, taken from docs/plugins.md as written, install and work.

Each documented distribution (module + pyproject.toml) is built by pip from the doc's own text: its dependency on
esmtp must be satisfied by this esmtp (pip's resolver, offline, against the installed esmtp), and once installed
the plugin must be discovered and do what the guide says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import Runner, SmtpServer

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)


def block(language: str, marker: str) -> str:
    [text] = [text for lang, text in BLOCKS if lang == language and marker in text]
    return text


def distribution(where: Path, module: str, source_marker: str, toml_marker: str) -> Path:
    where.mkdir()
    (where / f"{module}.py").write_text(block("python", source_marker))
    toml = block("toml", toml_marker)
    if "[build-system]" not in toml:
        toml = '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n' + toml
    (where / "pyproject.toml").write_text(toml)
    return where


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--quiet",
                           "--no-index", "--no-build-isolation", *args], capture_output=True, text=True)


EXAMPLES = [
    ("esmtp_xoauth2", "def esmtp_sasl_mechanisms", 'name = "esmtp-xoauth2"'),
    ("esmtp_site", "def esmtp_fixup_headers", 'name = "esmtp-site"'),
]


@pytest.mark.parametrize(("module", "source_marker", "toml_marker"), EXAMPLES)
def test_documented_dependency_on_esmtp_is_satisfied(tmp_path: Path, module: str, source_marker: str,
                                                     toml_marker: str) -> None:
    source = distribution(tmp_path / module, module, source_marker, toml_marker)
    # Offline: the only esmtp pip can use is the one installed here.
    result = pip("--dry-run", str(source))
    assert result.returncode == 0, result.stderr


def test_documented_site_plugin_installs_and_runs(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    source = distribution(tmp_path / "esmtp_site", *EXAMPLES[1])
    target = tmp_path / "site-packages"
    result = pip("--no-deps", "--target", str(target), str(source))
    assert result.returncode == 0, result.stderr
    run.write_config(f"hostname {smtp_server.hostport}\n")
    message = b"From: a@example.org\nSubject: Cron <root@host> backup\n\nok\n"
    sent = run("b@example.net", input=message, env=run.env(PYTHONPATH=str(target)))
    assert sent.returncode == 0, sent.stderr
    [received] = smtp_server.sink.messages
    assert b"X-Relayed-By: laptop.example.org" in received.data
    assert b"Subject: [cron] Cron <root@host> backup" in received.data
