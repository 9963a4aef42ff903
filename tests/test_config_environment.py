"""Configuration without a file (containers): ``ESMTP_<KEYWORD>`` variables and ``ESMTP_PASSWORD_FILE``, through
the installed commands against a real server."""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from listener_support import Listener, listeners, start_listener
from support import Runner, SmtpServer, start_server

from esmtp import front

__all__ = ["listeners"]

PASSWORD = 'with "quotes", a \\ backslash; and # spaces'
MESSAGE = b"Subject: from the environment\n\nbody\n"


@pytest.fixture
def odd_server() -> Iterator[SmtpServer]:
    server = start_server(users={"alice": PASSWORD})
    server.sink.clear()
    yield server
    server.controller.stop()


def environment(run: Runner, server: SmtpServer, secret: Path, **extra: str) -> dict[str, str]:
    secret.write_text(PASSWORD + "\n")
    settings = {"ESMTP_HOSTNAME": server.hostport, "ESMTP_USERNAME": "alice", "ESMTP_PASSWORD_FILE": str(secret),
                "ESMTP_AUTH_PLAINTEXT": "enabled"}
    return run.env(**{**settings, **extra})


def test_sendmail_with_only_environment_variables(run: Runner, odd_server: SmtpServer, tmp_path: Path) -> None:
    env = environment(run, odd_server, tmp_path / "secret")
    result = run("-f", "app@example.org", "bob@example.net", input=MESSAGE, env=env)
    assert result.returncode == 0, result.stderr
    assert odd_server.sink.auths == [("PLAIN", "alice")]  # the password from the file, quotes and all
    assert odd_server.sink.messages[0].rcpt_tos == ["bob@example.net"]


def test_check_shows_where_each_setting_came_from_and_never_the_secret(
        run: Runner, odd_server: SmtpServer, tmp_path: Path) -> None:
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_STARTTLS="disabled")
    result = run("--check", program="esmtp", env=env)
    assert result.returncode == 0, result.stderr
    assert "hostname from ESMTP_HOSTNAME = " in result.stdout
    assert "password from ESMTP_PASSWORD_FILE" in result.stdout
    assert "starttls from ESMTP_STARTTLS = 'disabled'" in result.stdout
    assert "quotes" not in result.stdout + result.stderr


def test_a_bad_variable_is_named(run: Runner, odd_server: SmtpServer, tmp_path: Path) -> None:
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_STARTTLS="sometimes")
    result = run("-f", "app@example.org", "bob@example.net", input=MESSAGE, env=env)
    assert result.returncode == 78 and "ESMTP_STARTTLS" in result.stderr and "sometimes" in result.stderr
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_NO_SUCH_THING="1")
    result = run("--check", program="esmtp", env=env)
    assert result.returncode == 78 and "ESMTP_NO_SUCH_THING: unknown keyword" in result.stderr
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_PASSWORD="also")
    result = run("--check", program="esmtp", env=env)
    assert result.returncode == 78 and "keep one of them" in result.stderr and "also" not in result.stderr
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_PASSWORD_FILE=str(tmp_path / "missing"))
    result = run("--check", program="esmtp", env=env)
    assert result.returncode == 78 and "ESMTP_PASSWORD_FILE: cannot read" in result.stderr


def test_a_configuration_file_wins_and_check_says_the_variables_are_ignored(
        run: Runner, odd_server: SmtpServer, tmp_path: Path) -> None:
    run.write_config("hostname 127.0.0.1:1\n")
    env = environment(run, odd_server, tmp_path / "secret")
    result = run("--check", program="esmtp", env=env)
    assert result.returncode == 0
    assert "ESMTP_HOSTNAME" in result.stdout and "ignored" in result.stdout


def test_listener_in_a_container_configured_by_the_environment(
        run: Runner, odd_server: SmtpServer, tmp_path: Path, listeners: list[Listener]) -> None:
    env = environment(run, odd_server, tmp_path / "secret", ESMTP_LISTEN_ALLOW="127.0.0.1,172.16.0.0/12")
    listener = start_listener(run, env=env)
    listeners.append(listener)
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as smtp:
        smtp.sendmail("app@example.org", ["bob@example.net"], b"Subject: x\r\n\r\ny\r\n")
    assert odd_server.sink.auths == [("PLAIN", "alice")]


def test_the_warm_relay_fingerprint_includes_every_esmtp_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("ESMTP_")]:
        monkeypatch.delenv(name)
    before = front.fingerprint(None)
    monkeypatch.setenv("ESMTP_HOSTNAME", "smtp.example.com:587")
    after = front.fingerprint(None)
    assert before != after
    monkeypatch.setenv("ESMTP_HOSTNAME", "other.example.com:587")
    assert front.fingerprint(None) != after
