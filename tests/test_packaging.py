"""What a packager relies on: one version, the licence, ``python -m esmtp`` and a ``--help`` that points at the
manual pages a pip install has (the docs/ directory is not installed)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import metadata, version
from pathlib import Path

from support import Runner

import esmtp

ROOT = Path(__file__).resolve().parent.parent


def test_python_m_esmtp_is_the_esmtp_command(run: Runner) -> None:
    proc = subprocess.run([sys.executable, "-m", "esmtp", "--version"], capture_output=True, text=True, env=run.env())
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"esmtp {esmtp.__version__}\n", "")
    bad = subprocess.run([sys.executable, "-m", "esmtp", "--bogus"], capture_output=True, text=True, env=run.env())
    assert (bad.returncode, bad.stderr) == (64, "esmtp: unknown option --bogus\n")


def test_help_points_at_the_manual_pages(run: Runner) -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "man esmtp" in result.stdout and "man esmtprc" in result.stdout
    assert "docs/" not in result.stdout


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert version("esmtp") == esmtp.__version__


def test_licence_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "GPL-2.0-or-later"
    assert project["license-files"] == ["COPYING"]
    assert (ROOT / "COPYING").read_text().split()[:5] == ["GNU", "GENERAL", "PUBLIC", "LICENSE", "Version"]
    assert "Version 2, June 1991" in (ROOT / "COPYING").read_text()
    assert metadata("esmtp")["License-Expression"] == "GPL-2.0-or-later"


def test_readme_quick_start_sets_the_sender_and_ci_runs_its_set_up_commands() -> None:
    from esmtp.config.parser import parse_config

    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1]
    esmtprc = quick_start.split("```\n", 2)[1]
    config = parse_config(esmtprc, "README.md")
    assert config.default.address == "alice@example.com"  # not root@<hostname>
    assert config.mda is None  # the MDA line is optional, shown commented out
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in ("python3 -m venv .venv", ".venv/bin/pip install -e '.[test,lint]'"):
        assert f"{command}\n" in readme and command in ci
