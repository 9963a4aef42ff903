"""Routing against real Postfix instances (issue 23): ``source_ip`` shows in the ``Received:`` line Postfix writes;
failover from a relay that is down, or a Postfix that answers 4xx to MAIL, to a second Postfix, one copy each time."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from postfix_server import PostfixServer
from support import free_port

pytestmark = pytest.mark.interop


def test_source_ip_shows_in_postfixs_received_line(run: Any, clean_postfix: PostfixServer) -> None:
    postfix = clean_postfix
    run.write_config(f"hostname {postfix.host}:{postfix.ports.smtp}\nsource_ip 127.0.0.2\n")
    marker = uuid.uuid4().hex
    message = f"From: <sender@example.org>\nSubject: source_ip\nX-Marker: {marker}\n\nbody\n".encode()
    result = run("-f", "sender@example.org", "rcpt@example.net", input=message)
    assert result.returncode == 0, result.stderr
    [delivered] = postfix.wait_for_messages(1)
    assert delivered.client_address == "127.0.0.2"
    received = delivered.eml.split(b"\n\n", 1)[0].decode()
    assert re.search(r"^Received: from \S+ \(\S+ \[127\.0\.0\.2\]\)", received, re.MULTILINE), received


class DeferringPostfix(PostfixServer):
    """A second real Postfix that answers every MAIL FROM with 450 (``smtpd_sender_restrictions = defer``, checked at
    MAIL: ``smtpd_delay_reject = no``): a relay that is up but cannot take mail now."""

    myhostname = "deferring.localhost"

    def _prepare(self) -> None:
        super()._prepare()
        main_cf = self.config_dir / "main.cf"
        with main_cf.open("a") as handle:
            handle.write("smtpd_delay_reject = no\nsmtpd_sender_restrictions = defer\n")
        self._backdate(main_cf)


class ClosingPostfix(PostfixServer):
    """A real Postfix that answers the alerts' sender with 421 and closes the connection (an access table's ``421``
    action, applied at MAIL: ``smtpd_delay_reject = no``): a relay going down for maintenance. (Not at the greeting:
    the fixture waits for every listener's 220.)"""

    myhostname = "closing.localhost"

    def _prepare(self) -> None:
        super()._prepare()
        main_cf = self.config_dir / "main.cf"
        with main_cf.open("a") as handle:
            handle.write("smtpd_delay_reject = no\n"
                         "smtpd_sender_restrictions = check_sender_access inline:{ {root@example.org=421 4.3.2 "
                         "maintenance} }\n")
        self._backdate(main_cf)


@pytest.fixture(scope="module")
def closing_postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServer]:
    from conftest import _running, skip_or_fail
    from postfix_server import runtime_directory, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    yield from _running(ClosingPostfix(runtime_directory()), tmp_path_factory, "closing-postfix")


@pytest.fixture(scope="module")
def deferring_postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServer]:
    from conftest import _running, skip_or_fail
    from postfix_server import runtime_directory, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    yield from _running(DeferringPostfix(runtime_directory()), tmp_path_factory, "deferring-postfix")


def _alert(run: Any, *args: str) -> Any:
    marker = uuid.uuid4().hex
    message = f"From: <root@example.org>\nSubject: RAID degraded\nX-Marker: {marker}\n\nmd0 is degraded\n".encode()
    return run("-v", *args, "-f", "root@example.org", "admin@example.net", input=message), marker


def test_first_relay_down_the_second_postfix_takes_the_alert(run: Any, clean_postfix: PostfixServer) -> None:
    closed = free_port()
    run.write_config(f"hostname {clean_postfix.host}:{closed}, {clean_postfix.host}:{clean_postfix.ports.smtp}\n")
    result, marker = _alert(run)
    assert result.returncode == 0, result.stderr
    [delivered] = clean_postfix.wait_for_messages(1)
    assert marker.encode() in delivered.eml
    assert f"{clean_postfix.host}:{clean_postfix.ports.smtp} took the message" in result.stderr


def test_a_postfix_answering_4xx_to_mail_passes_the_alert_to_the_next(
        run: Any, clean_postfix: PostfixServer, deferring_postfix: PostfixServer) -> None:
    first, second = deferring_postfix, clean_postfix
    run.write_config(f"hostname {first.host}:{first.ports.smtp}, {second.host}:{second.ports.smtp}\n")
    result, marker = _alert(run)
    assert result.returncode == 0, result.stderr
    assert re.search(r"refused sender <root@example.org>: 450 4\.\d\.\d ", result.stderr), result.stderr
    [delivered] = second.wait_for_messages(1)  # one copy, at the second
    assert marker.encode() in delivered.eml
    assert first.messages() == [] and first.queue_is_idle()


def test_a_permanent_refusal_from_postfix_does_not_fail_over(run: Any, clean_postfix: PostfixServer,
                                                           deferring_postfix: PostfixServer) -> None:
    # The notls port requires AUTH to relay: 554 to RCPT from a client that has not logged in (permanent).
    first, second = clean_postfix, deferring_postfix
    run.write_config(f"hostname {first.host}:{first.ports.notls}, {second.host}:{second.ports.smtp}\n")
    result, _ = _alert(run)
    assert result.returncode not in (0, 75), result.stderr
    assert "trying the next server" not in result.stderr
    assert first.messages() == [] and second.messages() == []


def test_a_postfix_answering_421_passes_the_alert_to_the_next(
        run: Any, clean_postfix: PostfixServer, closing_postfix: PostfixServer) -> None:
    first, second = closing_postfix, clean_postfix
    run.write_config(f"hostname {first.host}:{first.ports.smtp}, {second.host}:{second.ports.smtp}\n")
    result, marker = _alert(run)
    assert result.returncode == 0, result.stderr
    assert (f"{first.host}:{first.ports.smtp} closed the connection: 421 4.3.2 <root@example.org>: Sender address "
            "rejected: maintenance; trying the next server") in result.stderr
    [delivered] = second.wait_for_messages(1)  # one copy, at the second
    assert marker.encode() in delivered.eml
    assert first.messages() == [] and first.queue_is_idle()
