"""The rewriting plugins: aliases (envelope, and To/Cc on request), masquerade (envelope sender and From:), and the
``force sender`` fixup."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from esmtp_plugins.aliases import Aliases, read_aliases
from esmtp_plugins.masquerade import Masquerade
from relay_support import run_in_both_modes  # noqa: F401  (the `run` fixture: every test here runs in both modes)
from support import Runner, SmtpServer
from test_mda import calls, path_env

from esmtp.config.model import Config, Identity
from esmtp.errors import ConfigError
from esmtp.message import read_message
from esmtp.pipeline import submit
from esmtp.plugins import Hooks, make_plugin_manager
from esmtp.trace import Trace
from esmtp.types import Envelope, RunContext

ALIASES = """\
# /etc/aliases style
postmaster: root
Root: admin@example.org,
\tops@example.org
webmaster: "Web Team" <web@example.org>, root
alice: alice, alice@example.net
loop1: loop2
loop2: loop1, end@example.org
team: :include: team.list
"""

CRON = b"From: root\nTo: root\nCc: Ops <postmaster>, carol@example.net\nSubject: Cron <root@host> backup\n\ndone\n"


@pytest.fixture
def aliases_file(tmp_path: Path) -> Path:
    (tmp_path / "team.list").write_text("# the team\ndave@example.org, webmaster\n")
    path = tmp_path / "aliases"
    path.write_text(ALIASES)
    return path


# --------------------------------------------------------------------------------------------------------------------
# aliases: the file and its expansion
# --------------------------------------------------------------------------------------------------------------------


def test_aliases_file_format(aliases_file: Path) -> None:
    table = read_aliases(str(aliases_file))
    assert table["root"].targets == ("admin@example.org", "ops@example.org")  # continued, name case-folded
    assert table["root"].lineno == 3
    assert table["webmaster"].targets == ('"Web Team" <web@example.org>', "root")
    assert set(table) == {"postmaster", "root", "webmaster", "alice", "loop1", "loop2", "team"}


@pytest.mark.parametrize(
    ("recipients", "expanded"),
    [
        (["postmaster"], ["admin@example.org", "ops@example.org"]),
        (["ROOT", "root@example.com"], ["admin@example.org", "ops@example.org", "root@example.com"]),
        (["webmaster"], ["web@example.org", "admin@example.org", "ops@example.org"]),
        (["alice"], ["alice", "alice@example.net"]),  # a name in its own expansion stays local
        (["loop1"], ["loop1", "end@example.org"]),  # a loop ends where it closes
        (["team"], ["dave@example.org", "web@example.org", "admin@example.org", "ops@example.org"]),
        (["nobody", "postmaster", "root"], ["nobody", "admin@example.org", "ops@example.org"]),
    ],
)
def test_alias_expansion(aliases_file: Path, recipients: list[str], expanded: list[str]) -> None:
    assert Aliases(str(aliases_file)).expand(recipients) == expanded


def test_program_and_file_targets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("ok: someone@example.org\nlog: /var/log/mail.txt\nbin: \"|/usr/bin/handler --flag\"\n")
    aliases = Aliases(str(path))
    assert aliases.expand(["ok"]) == ["someone@example.org"]
    with pytest.raises(ConfigError, match=rf"{path}:2: the alias delivers to a program or a file \('/var/log"):
        aliases.expand(["log"])
    with pytest.raises(ConfigError, match=rf"{path}:3: .*'\|/usr/bin/handler --flag'"):
        aliases.expand(["bin"])


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("ok: a@example.org\nno colon here\n")
    with pytest.raises(ConfigError, match=rf"{bad}:2: expected 'name: target, ...'"):
        read_aliases(str(bad))
    with pytest.raises(ConfigError, match=r"cannot read the aliases file .*missing"):
        read_aliases(str(tmp_path / "missing"))


# --------------------------------------------------------------------------------------------------------------------
# aliases: end to end
# --------------------------------------------------------------------------------------------------------------------


def test_aliases_rewrite_the_envelope_only_by_default(run: Runner, smtp_server: SmtpServer, aliases_file: Path) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\naliases_file {aliases_file}\n")
    result = run("-t", "-i", input=CRON)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert got.rcpt_tos == ["admin@example.org", "ops@example.org", "carol@example.net"]
    assert got.data.startswith(b"From: root\r\nTo: root\r\nCc: Ops <postmaster>, carol@example.net\r\n")


def test_aliases_rewrite_to_and_cc_on_request(run: Runner, smtp_server: SmtpServer, aliases_file: Path) -> None:
    run.write_config(
        f"hostname {smtp_server.hostport}\naliases_file {aliases_file}\naliases_rewrite_headers enabled\n"
    )
    result = run("-t", "-i", input=CRON)
    assert result.returncode == 0, result.stderr
    head = smtp_server.sink.messages[0].data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[:4] == [
        b"From: root",  # not a recipient field: left as it was
        b"To: admin@example.org, ops@example.org",
        b"Cc: admin@example.org, ops@example.org, carol@example.net",
        b"Subject: Cron <root@host> backup",
    ]


def test_aliases_header_rewrite_keeps_names_groups_and_folds(tmp_path: Path, run: Runner,
                                                             smtp_server: SmtpServer) -> None:
    many = ", ".join(f"member{n}@example.org" for n in range(12))
    path = tmp_path / "aliases"
    path.write_text(f"boss: Boss.Person@example.org\nall: {many}\n")
    run.write_config(f"hostname {smtp_server.hostport}\naliases_file {path}\naliases_rewrite_headers enabled\n")
    message = b'To: "The Boss" <boss>, friends: all, x@example.net;, undisclosed-recipients:;\nSubject: s\n\nb\n'
    result = run("-t", input=message)
    assert result.returncode == 0, result.stderr
    head = smtp_server.sink.messages[0].data.split(b"\r\n\r\n")[0].decode()
    to = head.split("\r\nSubject:")[0]
    members = ", ".join(f"member{n}@example.org" for n in range(12))
    assert to.replace("\r\n\t", " ") == (
        f"To: The Boss <Boss.Person@example.org>, friends: {members}, x@example.net;, undisclosed-recipients:;"
    )
    assert all(len(line) <= 78 for line in to.split("\r\n"))
    assert len(smtp_server.sink.messages[0].rcpt_tos) == 14


def test_aliases_can_point_at_local_names_for_the_mda(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("root: carol, admin@example.org\n")
    run.write_config(f"hostname {smtp_server.hostport}\nmda 'procmail -d %T'\naliases_file {path}\n")
    result = run("root", input=b"Subject: s\n\nb\n", env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert smtp_server.sink.messages[0].rcpt_tos == ["admin@example.org"]
    assert calls(run)[0]["argv"] == ["-d", "carol"]


def test_no_aliases_file_means_no_aliasing(run: Runner) -> None:
    run.write_config("hostname 127.0.0.1:9\nmda 'procmail -d %T'\n")
    result = run("postmaster", input=b"Subject: s\n\nb\n", env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert calls(run)[0]["argv"] == ["-d", "postmaster"]


def test_disabling_the_plugin_makes_its_keyword_unknown(run: Runner, aliases_file: Path) -> None:
    run.write_config(f"hostname 127.0.0.1:9\naliases_file {aliases_file}\ndisable_plugins aliases\n")
    result = run("root", input=b"Subject: s\n\nb\n")
    assert result.returncode == 78
    assert "unknown keyword 'aliases_file'" in result.stderr


# --------------------------------------------------------------------------------------------------------------------
# masquerade
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "rewritten"),
    [
        ("root", "root@example.org"),
        ("root@myhost", "root@example.org"),
        ("root@MYHOST.lan", "root@example.org"),
        ("user@localhost", "user@example.org"),
        ("user@localhost.localdomain", "user@example.org"),
        ("user@mail.example.org", "user@example.org"),
        ("user@example.org", "user@example.org"),
        ("bob@gmail.com", "bob@gmail.com"),
        ("bob@notexample.org", "bob@notexample.org"),
        ("", ""),
    ],
)
def test_masquerade_rule(address: str, rewritten: str) -> None:
    assert Masquerade("example.org", hostname="myhost.home.arpa").address(address) == rewritten


def test_masquerade_envelope_and_from(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nmasquerade_domain example.org\n")
    host = socket.gethostname()
    message = f'From: "Cron Daemon" <root@{host}>\nTo: ops@example.net\nSubject: s\n\nb\n'.encode()
    result = run("-f", f"root@{host}", "ops@example.net", input=message)
    assert result.returncode == 0, result.stderr
    [got] = smtp_server.sink.messages
    assert got.mail_from == "root@example.org"
    assert got.data.startswith(b'From: Cron Daemon <root@example.org>\r\nTo: ops@example.net\r\n')


def test_masquerade_generated_from_and_foreign_domains(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(f"hostname {smtp_server.hostport}\nmasquerade_domain example.org\n")
    assert run("ops@example.net", input=b"Subject: no from\n\nb\n").returncode == 0
    assert run("-f", "bob@gmail.com", "ops@example.net", input=b"From: bob@gmail.com\n\nb\n").returncode == 0
    generated, foreign = smtp_server.sink.messages
    assert generated.mail_from.endswith("@example.org")
    assert f"\r\nFrom: {generated.mail_from}\r\n".encode() in generated.data
    assert foreign.mail_from == "bob@gmail.com"
    assert foreign.data.startswith(b"From: bob@gmail.com\r\n")


def test_masquerade_is_per_identity(run: Runner, smtp_server: SmtpServer) -> None:
    run.write_config(
        f"hostname {smtp_server.hostport}\n"
        f"identity work@corp.example\n  hostname {smtp_server.hostport}\n  masquerade_domain corp.example\n"
    )
    assert run("-f", "me@laptop.corp.example", "x@example.net", input=b"Subject: s\n\nb\n").returncode == 0
    assert smtp_server.sink.messages[0].mail_from == "me@laptop.corp.example"  # default identity: no masquerade


# --------------------------------------------------------------------------------------------------------------------
# force sender (the fixup_sender plugin)
# --------------------------------------------------------------------------------------------------------------------


class Keep:
    """A delivery agent that keeps the message as the MDA would get it."""

    def __init__(self) -> None:
        self.data = b""

    def deliver(self, envelope: Envelope, message: object, recipients: list[str]) -> object:
        from esmtp.types import DeliveryResult

        self.data = b"".join(message.chunks())  # type: ignore[attr-defined]
        return DeliveryResult("mda", recipients, "kept")


def _send_with_force_sender(raw: bytes, mask: str) -> bytes:
    from esmtp import hookimpl
    from esmtp.types import DeliveryAgent

    identity = Identity(address=None, force_sender=mask)
    config = Config(path=None, identities=[identity], default=identity, mda="x", force_mda="me")
    hooks = Hooks(make_plugin_manager(config))
    assert hooks.pm.has_plugin("fixup_sender")
    hooks.pm.unregister(name="mda")
    keep = Keep()

    class Agent:
        @hookimpl
        def esmtp_delivery_agents(self) -> list[DeliveryAgent]:
            return [DeliveryAgent("mda", lambda context: keep)]  # type: ignore[arg-type,return-value]

    hooks.pm.register(Agent())
    with read_message(io.BytesIO(raw)) as message:
        submit(Envelope("a@example.org", ["me"], identity), message, RunContext(config, hooks, Trace()))
    return keep.data


def test_force_sender_appends_after_the_other_fixups(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = _send_with_force_sender(b"Subject: s\n\nb\n", "%u@example.org")
    head = data.split(b"\n\n")[0].split(b"\n")
    assert [line.split(b":")[0] for line in head] == [b"Subject", b"Date", b"From", b"Message-ID", b"Sender"]
    from esmtp.envelope import login_name

    assert head[-1] == f"Sender: {login_name()}@example.org".encode()


def test_force_sender_replaces_in_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = _send_with_force_sender(b"Sender: old@x\nSubject: s\nSender: older@x\n\nb\n", "list-owner@example.org")
    assert data.startswith(b"Sender: list-owner@example.org\nSubject: s\n")
    assert b"old@x" not in data and b"older@x" not in data
