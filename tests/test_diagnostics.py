"""--pretend, --check, --serverinfo and --identity through the installed command, against real aiosmtpd servers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Runner, SmtpServer, start_server

MESSAGE = b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nBcc: hidden@example.net\nSubject: plan\n\nHi.\n"
PASSWORD = "Tr0ub4dor-secret"
EX_TEMPFAIL, EX_NOPERM, EX_CONFIG, EX_USAGE = 75, 77, 78, 64


@pytest.fixture
def auth_server() -> Iterator[SmtpServer]:
    """A real SMTP server offering AUTH PLAIN and LOGIN to "alice" and "wildcard"."""
    server = start_server(users={"alice": PASSWORD, "wildcard": PASSWORD})
    yield server
    server.controller.stop()


def two_identities(server: SmtpServer, *extra: str) -> str:
    server.sink.clear()  # forget the controller's readiness probe: connections counts ours only
    return "\n".join([
        f"hostname {server.hostport}",
        "username alice",
        f'password "{PASSWORD}"',
        "auth_plaintext enabled",
        "identity *@Example.ORG",
        f"  hostname {server.hostport}",
        "  username wildcard",
        f'  password "{PASSWORD}"',
        "  auth_plaintext enabled",
        "identity boss@example.org",
        "  hostname other.invalid:2525",
        *extra,
        'mda "/usr/bin/procmail -d %T"',
        "",
    ])


# ---- --pretend -----------------------------------------------------------------------------------------------------


def test_pretend_prints_the_plan_and_sends_nothing(run: Runner, auth_server: SmtpServer) -> None:
    config = run.write_config(two_identities(auth_server))
    result = run("--pretend", "-f", "carol@EXAMPLE.org", "bob@example.net", "root", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"identity:        *@Example.ORG: the sender carol@EXAMPLE.org is in the domain of " \
           f"'identity *@Example.ORG' at {config}:5" in out
    assert f"server:          {auth_server.hostport}" in out
    assert "tls:             none (starttls disabled)" in out
    assert "user:            wildcard" in out
    assert re.search(r"auth mechanisms: CRAM-MD5 .*PLAIN\* LOGIN\* \(by strength\)", out)
    assert f"password:        inline in {config} (****)" in out
    assert "to (smtp):       bob@example.net" in out
    assert "to (mda):        root" in out
    assert "mda command:     /usr/bin/procmail -d root" in out  # exactly as it would run
    assert "  Subject: plan" in out and "  Message-ID: <" in out and "  Date: " in out
    assert "Bcc" not in out  # the header block after the fixups
    assert PASSWORD not in out + result.stderr
    assert auth_server.sink.messages == [] and auth_server.sink.connections == 0


def test_pretend_exact_identity_beats_the_wildcard_and_domains_ignore_case(run: Runner,
                                                                           auth_server: SmtpServer) -> None:
    config = run.write_config(two_identities(auth_server))
    result = run("--pretend", "-f", "boss@EXAMPLE.ORG", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert f"the sender boss@EXAMPLE.ORG is 'identity boss@example.org' at {config}:10" in result.stdout
    assert "server:          other.invalid:2525" in result.stdout
    # The local part is compared exactly: Boss@ is another mailbox, served by the wildcard.
    result = run("--pretend", "-f", "Boss@example.org", "bob@example.net", input=MESSAGE)
    assert "in the domain of 'identity *@Example.ORG'" in result.stdout


def test_pretend_without_recipients_shows_the_identity(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(two_identities(auth_server))
    result = run("--pretend")
    assert result.returncode == 0, result.stderr
    assert "no sender given: the global section" in result.stdout
    assert "recipients: none given" in result.stdout


def test_pretend_reports_a_configuration_error(run: Runner) -> None:
    config = run.write_config("hostname mail.example.org\nstarttls sometimes\n")
    result = run("--pretend", "bob@example.net", input=MESSAGE)
    assert result.returncode == EX_CONFIG
    assert result.stderr.startswith(f"sendmail: {config}:2: ")


# ---- --identity / -a -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [("--identity", "*@example.org"), ("--identity=*@example.org",),
                                  ("-a", "*@example.org"), ("-a*@example.org",)])
def test_identity_flag_selects_a_block_whatever_the_sender(run: Runner, auth_server: SmtpServer,
                                                           flag: tuple[str, ...]) -> None:
    run.write_config(two_identities(auth_server))
    result = run(*flag, "-f", "someone@elsewhere.example", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert auth_server.sink.auths == [("PLAIN", "wildcard")]
    [got] = auth_server.sink.messages
    assert got.mail_from == "someone@elsewhere.example"


def test_unknown_identity_is_a_configuration_error(run: Runner, auth_server: SmtpServer) -> None:
    config = run.write_config(two_identities(auth_server))
    result = run("--identity", "nobody@example.org", "bob@example.net", input=MESSAGE)
    assert result.returncode == EX_CONFIG
    assert result.stderr == (f"sendmail: {config} has no 'identity nobody@example.org' "
                             "(identities: *@Example.ORG, boss@example.org)\n")
    assert auth_server.sink.connections == 0


def test_identity_needs_a_name(run: Runner) -> None:
    result = run("bob@example.net", "--identity")
    assert result.returncode == EX_USAGE
    assert result.stderr == "sendmail: option --identity requires an argument (an identity's address)\n"


# ---- --check -------------------------------------------------------------------------------------------------------


def test_check_prints_one_line_per_identity_and_contacts_nothing(run: Runner, auth_server: SmtpServer) -> None:
    config = run.write_config(two_identities(auth_server))
    result = run("--check", program="esmtp")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ok   (global section) (default) at {config}:1: {auth_server.hostport}, none")
    assert lines[1].startswith(f"ok   *@Example.ORG at {config}:5: {auth_server.hostport}")
    assert lines[2].startswith(f"ok   boss@example.org at {config}:10: other.invalid:2525")
    assert "password none" in lines[2] and "password inline" in lines[1]
    assert lines[3] == f"{config}: 3 identity block(s) checked; nothing was contacted"
    assert PASSWORD not in result.stdout + result.stderr
    assert auth_server.sink.connections == 0


def test_check_names_file_and_line_of_a_bad_identity(run: Runner, auth_server: SmtpServer) -> None:
    config = run.write_config(two_identities(auth_server, "  username boss", "  auth_mechanisms SCRAM-SHA-1"))
    result = run("--check", program="esmtp")
    assert result.returncode == EX_CONFIG
    assert f"FAIL boss@example.org at {config}:10" in result.stdout
    assert result.stderr.startswith(f"esmtp: {config}:13: auth_mechanisms names SCRAM-SHA-1, which no installed")


def test_check_reports_a_grammar_error_with_its_line(run: Runner) -> None:
    config = run.write_config("hostname h\n\nfrobnicate yes\n")
    result = run("--check", program="esmtp")
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"esmtp: {config}:3: unknown keyword 'frobnicate'\n"


def test_check_refuses_a_password_others_can_read(run: Runner, tmp_path: object) -> None:
    config = run.write_config(f'hostname h\npassword "{PASSWORD}"\n', name="shared.rc")
    config.chmod(0o644)
    result = run("--check", "-C", str(config), program="esmtp")
    assert result.returncode == EX_CONFIG
    assert f"chmod 600 {config}" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


# ---- --serverinfo --------------------------------------------------------------------------------------------------


def test_serverinfo_says_what_the_server_offers_and_sends_nothing(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(two_identities(auth_server))
    result = run("--serverinfo", program="esmtp")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^greeting:    220 ", out, re.M)
    assert "  SIZE 1073741824 (messages up to 1.0 GiB)" in out
    assert "  AUTH LOGIN PLAIN" in out
    assert "TLS:         none: the session is not encrypted" in out
    assert "a send would use PLAIN" in out
    assert "login:" not in out
    assert auth_server.sink.auths == [] and auth_server.sink.messages == []


def test_serverinfo_login_authenticates(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(two_identities(auth_server))
    result = run("--serverinfo", "--login", "--identity", "*@example.org", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert "login:       authenticated as wildcard with PLAIN" in result.stdout
    assert auth_server.sink.auths == [("PLAIN", "wildcard")]
    assert auth_server.sink.messages == []
    assert PASSWORD not in result.stdout + result.stderr


def test_serverinfo_login_refused_exits_as_a_send(run: Runner, auth_server: SmtpServer) -> None:
    run.write_config(two_identities(auth_server).replace(PASSWORD, "wrong-one", 1))
    result = run("--serverinfo", "--login", program="esmtp")
    assert result.returncode == EX_NOPERM
    assert "refused AUTH PLAIN for user 'alice'" in result.stderr
    assert "wrong-one" not in result.stdout + result.stderr


def test_serverinfo_unreachable_server_is_temporary(run: Runner) -> None:
    from support import free_port

    run.write_config(f"hostname 127.0.0.1:{free_port()}\n")
    result = run("--serverinfo", program="esmtp")
    assert result.returncode == EX_TEMPFAIL
    assert result.stderr.startswith("esmtp: 127.0.0.1:")


# ---- --help --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["sendmail", "esmtp", "mailq"])
def test_help_names_the_program_and_every_mode(run: Runner, program: str) -> None:
    result = run("--help", program=program)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {program} ")
    for mode in ("-bs", "-bp", "-q", "-qI", "--flush", "--remove", "--pretend", "--serverinfo", "--login",
                 "--check", "--secrets", "--identity", "--json", "-X"):
        assert mode in result.stdout, mode
    assert "esmtp(1)" in result.stdout and "esmtprc(5)" in result.stdout
    assert "docs/" not in result.stdout


def test_messages_carry_the_program_name(run: Runner) -> None:
    result = run("--bogus", program="mailq")
    assert result.stderr == "mailq: unknown option --bogus\n"


# ---- mailq with a broken configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hostname h\nstarttls sometimes\n", "hostname h\nfrobnicate yes\n"])
def test_mailq_reports_a_broken_configuration_and_still_lists(run: Runner, text: str) -> None:
    config = run.write_config(text)
    result = run(program="mailq")
    assert result.returncode == 0
    assert result.stdout == "Mail queue is empty\n"
    first, second = result.stderr.splitlines()
    assert first.startswith(f"mailq: warning: {config}:2: ")
    assert second.startswith("mailq: warning: listing the queue without the configuration")


def test_an_unknown_plugin_in_disable_plugins_is_named_with_its_file(run: Runner, smtp_server: SmtpServer) -> None:
    config = run.write_config(f"hostname {smtp_server.hostport}\n\ndisable_plugins nosuch\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 0
    assert result.stderr == f"sendmail: warning: {config}:3: disable_plugins names 'nosuch', but no such plugin is " \
                            "installed\n"
    env = run.env(ESMTP_DISABLE_PLUGINS="other")
    result = run("bob@example.net", input=MESSAGE, env=env)
    assert "sendmail: warning: ESMTP_DISABLE_PLUGINS names 'other', but no such plugin is installed" in result.stderr


# ---- configuration errors carry file:line ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "message"), [
    ("hostname h\n\ntls_fingerprint SHA256:00:11\n", 3,
     "tls_fingerprint 'SHA256:00:11' is not a SHA-256 fingerprint (32 bytes in hex, e.g. SHA256:AB:CD:...)"),
    ("hostname h\ntimeout 5 minutes\n", 2, "'timeout 5 minutes': a duration is one word here: write 'timeout 300'"),
    ("hostname h\ntimeout '5 minutes'\n", 2,
     "'timeout' takes a number of seconds greater than 0, not '5 minutes' (write 300 for 5 minutes)"),
    ("hostname h\nqueue fallback\n\nqueue_retry 5 minutes\n", 4,
     "'queue_retry 5 minutes': a duration is one word here: write 'queue_retry 5m'"),
])
def test_configuration_errors_name_file_and_line(run: Runner, text: str, line: int, message: str) -> None:
    config = run.write_config(text)
    for args, program in ((("bob@example.net",), "sendmail"), (("--check",), "esmtp")):
        result = run(*args, input=MESSAGE, program=program)
        assert result.returncode == EX_CONFIG
        assert result.stderr == f"{program}: {config}:{line}: {message}\n"


@pytest.mark.parametrize(("args", "message"), [
    (("--login", "bob@example.net"), "--login goes with --serverinfo"),
    (("--check", "--login"), "--login goes with --serverinfo"),
    (("--secrets",), "--secrets goes with --check"),
    (("--json", "-q"), "--json goes with mailq or -bp"),
    (("--pretend", "-bp"), "--pretend goes with a send"),
    (("--identity", "a@example.org", "-q"), "--identity goes with a send, --pretend, --serverinfo, --store-password "
                                            "or --oauth2-login"),
])
def test_a_modifier_without_its_mode_is_a_usage_error(run: Runner, args: tuple[str, ...], message: str) -> None:
    result = run(*args, program="esmtp")
    assert (result.returncode, result.stderr) == (EX_USAGE, f"esmtp: {message}\n")


@pytest.mark.parametrize("global_settings", ["", "logfile ~/esmtp.log\n", "syslog enabled\nlogfile_format json\n"])
def test_check_skips_an_empty_global_section(run: Runner, global_settings: str) -> None:
    """A global section that holds only what applies to every identity (the delivery log) is no block of its own:
    no send uses it, so ``--check`` lists only the identities."""
    config = run.write_config(f"{global_settings}identity a@example.org\n  hostname mail.example.org\n")
    line = global_settings.count("\n") + 1
    result = run("--check", program="esmtp")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"ok   a@example.org (default) at {config}:{line}: mail.example.org:587, none (starttls disabled), "
        f"password none\n"
        f"{config}: 1 identity block(s) checked; nothing was contacted\n"
    )


# ---- password sources (issue 11's plugins describe themselves) -----------------------------------------------------


def test_pretend_and_check_name_password_command_and_run_it_only_with_secrets(run: Runner, tmp_path: Path,
                                                                               auth_server: SmtpServer) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}; echo {PASSWORD}"
    config = run.write_config(f"hostname {auth_server.hostport}\nusername alice\n"
                              f"password_command \"{command}\"\n")
    pretend = run("--pretend", "bob@example.net", input=MESSAGE)
    assert pretend.returncode == 0, pretend.stderr
    assert f"password:        password_command `{command}` ({config}:3)" in pretend.stdout
    check = run("--check", program="esmtp")
    assert check.returncode == 0, check.stderr
    assert f"password password_command `{command}` ({config}:3)" in check.stdout
    assert not marker.exists()  # nothing ran without --secrets
    secrets = run("--check", "--secrets", program="esmtp")
    assert secrets.returncode == 0, secrets.stderr
    assert marker.exists()
    for result in (pretend, check, secrets):
        assert PASSWORD not in result.stdout.replace(command, "") + result.stderr


def test_check_secrets_reports_a_failing_password_command_with_its_line(run: Runner) -> None:
    config = run.write_config("hostname h\nusername alice\n\npassword_command \"echo nope >&2; exit 3\"\n")
    assert run("--check", program="esmtp").returncode == 0
    result = run("--check", "--secrets", program="esmtp")
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"esmtp: {config}:4: password_command failed with exit status 3: nope\n"


def test_pretend_names_the_netrc_entry(run: Runner) -> None:
    run.write_config("hostname mail.example.org\nusername alice\n")
    netrc = run.home / ".netrc"
    netrc.write_text(f"machine mail.example.org login alice password {PASSWORD}\n")
    netrc.chmod(0o600)
    env = run.env(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    result = run("--pretend", "bob@example.net", input=MESSAGE, env=env)
    assert result.returncode == 0, result.stderr
    assert f"password:        {netrc} (machine mail.example.org, login alice)" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    netrc.unlink()
    assert "password:        none" in run("--pretend", "bob@example.net", input=MESSAGE, env=env).stdout
