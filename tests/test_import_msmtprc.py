"""``esmtp --import-msmtprc``: real msmtp files (tests/data/msmtprc) in, an esmtprc that esmtp reads out.

The expected account values were checked against msmtp 1.8.23's own reading of the same files (``msmtp --pretend``,
see docs/migrating.md); the output is parsed back with esmtp's configuration parser, as the user's esmtp will.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import Result, Runner, SmtpServer

from esmtp.config.model import Config, Identity
from esmtp.config.parser import parse_config
from esmtp.errors import EX_CONFIG, EX_USAGE

DATA = Path(__file__).parent / "data" / "msmtprc"


def convert(run: Runner, name: str) -> tuple[Result, Config]:
    result = run("--import-msmtprc", str(DATA / name), program="esmtp")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result, parse_config(result.stdout, "converted")


def identity(config: Config, address: str) -> Identity:
    [found] = [block for block in config.identities if block.address == address]
    return found


def pending(config: Config, block: Identity) -> dict[str, str]:
    """Extension keywords of ``block`` that wait for the plugins (password_command...)."""
    return {s.keyword: s.value for s in config.pending if s.identity is block}


def test_arch_wiki_file_defaults_and_default_account(run: Runner) -> None:
    result, config = convert(run, "arch-wiki.msmtprc")
    gmail = identity(config, "username@gmail.com")
    assert config.default is gmail  # account default : gmail
    assert (gmail.hostname, gmail.starttls, gmail.username) == ("smtp.gmail.com:587", "required", "username")
    assert pending(config, gmail) == {
        "password_command": "gpg --quiet --for-your-eyes-only --no-tty --decrypt ~/.msmtp-gmail.gpg",
    }
    assert gmail.options["logfile"] == "~/.msmtp.log"  # a core keyword (the delivery log), checked when read
    freemail = identity(config, "joe_smith@freemail.example")
    # msmtp's port without "port": 25 (STARTTLS), written out because esmtp's default is 587.
    assert (freemail.hostname, freemail.password) == ("smtp.freemail.example:25", "secret passwd#1")
    # freemail-2 : freemail copies everything and changes the address.
    second = identity(config, "joe.smith@freemail.example")
    assert (second.hostname, second.username) == ("smtp.freemail.example:25", "joe.smith")
    assert second.password == "secret passwd#1"
    # The gmail account is the default account's copy: one block, not two.
    assert [block.address for block in config.identities] == [
        None, "username@gmail.com", "joe_smith@freemail.example", "joe.smith@freemail.example"
    ]
    # The system CA bundle is what esmtp trusts anyway: no advice to copy it.
    assert "ca-certificates.crt" not in result.stdout


def test_inheritance_follows_msmtp(run: Runner) -> None:
    result, config = convert(run, "inheritance.msmtprc")
    base = identity(config, "alice@example.org")
    assert (base.hostname, base.username, base.helo) == ("mail.example.org:587", "  alice  ", "laptop.example.org")
    assert base.password == 'p\\w \\"quoted\\"'  # msmtp has no escapes: its backslashes are part of the password
    assert base.options == {"auth_mechanisms": "PLAIN"}
    # relay : base, defined after the second "defaults": port 2525 from the new defaults, the rest from base.
    relays = [block for block in config.identities if block.address == "relay@example.org"]
    assert len(relays) == 2  # the default account (a copy of relay with auth login) first, relay itself last
    default, relay = relays
    assert config.default is default
    assert config.identity_for("relay@example.org") is relay  # msmtp -f takes the first account: relay
    assert (relay.hostname, relay.force_reverse_path) == ("mail.example.org:2525", "relay@example.org")
    # syslog comes from the second "defaults" too (msmtp's LOG_MAIL is esmtp's).
    assert relay.options == {"auth_mechanisms": "PLAIN", "timeout": "30", "syslog": "LOG_MAIL"}
    assert default.options == {"auth_mechanisms": "LOGIN", "timeout": "30", "syslog": "LOG_MAIL"}
    assert "syslog" not in base.options
    assert default.force_reverse_path is None  # msmtp does not copy allow_from_override
    assert config.pending[0].keyword == "aliases_file"
    # implicit : base, relay: its own port 465 and tls_starttls off mean implicit TLS.
    implicit = identity(config, "tls@example.org")
    assert implicit.hostname == "mail.example.org:465"
    assert implicit.options["smtps"] == "enabled"
    half = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
    assert implicit.options["tls_fingerprint"] == f"SHA256:{half}:{half}"
    assert "# msmtp line 32: tls_certcheck off -- esmtp always verifies certificates" in result.stdout
    sha1 = identity(config, "sha1@example.org")
    assert sha1.message_id is False  # set_msgid_header off
    assert "tls_fingerprint" not in sha1.options
    assert (sha1.options["proxy_host"], sha1.options["proxy_port"]) == ("127.0.0.1", "9050")
    lists = identity(config, "*@lists.example.org")  # msmtp's from pattern is an identity pattern
    assert (lists.hostname, lists.username) == ("mail.example.org:2525", "  alice  ")
    for comment in (
        "# msmtp line 18: dsn_notify failure,delay -- no configuration keyword: callers pass -N",
        "# msmtp line 36: tls_fingerprint 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33 -- only SHA-256",
        "# msmtp line 37: tls_cert_file ~/.certs/me.crt -- esmtp reads the client certificate and its key",
        "# msmtp account 'pattern' (",
        "# msmtp account 'otherpattern' (",
        "not converted: it has no 'from' address",
        "# msmtp line 53: user nobody -- not converted: msmtp does not authenticate without 'auth on'",
    ):
        assert comment in result.stdout
    assert "unused" not in result.stdout  # a password that is not converted is not printed either
    # from *@domain is esmtp's identity *@domain: mail from that domain keeps going through that account's server,
    # not through the default identity (another provider).
    lists = identity(config, "*@lists.example.org")
    assert (lists.hostname, lists.username) == ("mail.example.org:2525", base.username)  # the second defaults' port
    assert config.identity_for("anyone@lists.example.org") is lists
    assert lists.force_reverse_path is None  # a pattern is no address to force


def test_default_account_without_from_becomes_the_global_section(run: Runner) -> None:
    result, config = convert(run, "global-default.msmtprc")
    assert config.default is config.identities[0]
    assert config.default.address is None
    assert (config.default.hostname, config.default.options) == ("[2001:db8::25]:465", {"smtps": "enabled"})
    assert config.default.password == "hunter2"
    work = identity(config, "me@work.example")
    assert pending(config, work) == {"password_command": "pass show work/smtp"}
    assert "# msmtp line 3: eval echo user me -- an eval line, not converted" in result.stdout
    assert "# msmtp line 20: bogus_keyword 1 -- unknown msmtp command, not converted" in result.stdout


def test_default_locations(run: Runner) -> None:
    missing = run("--import-msmtprc", program="esmtp")
    assert missing.returncode == EX_CONFIG
    assert f"no msmtp configuration at {run.home}/.msmtprc or {run.home}/.config/msmtp/config" in missing.stderr
    xdg = run.home / ".config" / "msmtp"
    xdg.mkdir(parents=True)
    shutil.copy(DATA / "global-default.msmtprc", xdg / "config")
    assert "identity me@work.example" in run("--import-msmtprc", program="esmtp").stdout
    shutil.copy(DATA / "arch-wiki.msmtprc", run.home / ".msmtprc")  # msmtp tries ~/.msmtprc first
    assert "identity username@gmail.com" in run("--import-msmtprc", program="esmtp").stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account a\nhost x\naccount a\nhost y\n", "msmtprc:3: account a was already defined (line 1)"),
        ("account a : b\nhost x\n", "msmtprc:1: account b is not defined before account a"),
        ("account\n", "msmtprc:1: 'account' needs a name"),
    ],
)
def test_errors_name_the_file_and_line(run: Runner, text: str, message: str) -> None:
    path = run.home / "msmtprc"
    path.write_text(text)
    result = run("--import-msmtprc", str(path), program="esmtp")
    assert (result.returncode, result.stdout) == (EX_CONFIG, "")
    assert result.stderr == f"esmtp: {run.home}/{message}\n"


def test_unreadable_file_and_usage(run: Runner) -> None:
    result = run("--import-msmtprc", str(run.home / "nope"), program="esmtp")
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"esmtp: open: {run.home}/nope: No such file or directory\n"
    two = run("--import-msmtprc", "a", "b", program="esmtp")
    assert (two.returncode, two.stderr) == (EX_USAGE, "esmtp: --import-msmtprc takes at most one file name\n")


def test_standard_input(run: Runner) -> None:
    result = run("--import-msmtprc", "-", input=b"account default\nhost h\nfrom me@example.org\n", program="esmtp")
    assert result.returncode == 0
    config = parse_config(result.stdout, "converted")
    assert (config.default.address, config.default.hostname) == ("me@example.org", "h:25")
    assert "converted from standard input" in result.stdout


@pytest.mark.parametrize(
    "value", ["plain", "a b", 'x"y', "x'y", "both\"and'q \\ z", "#x", "", "a=b", "DOM\\user", "pa;ss,word", "é ü"]
)
def test_values_are_written_so_that_esmtp_reads_them_back(value: str) -> None:
    from esmtp.config.import_msmtprc import quote

    assert parse_config(f"password {quote(value)}\n", "t").identities[0].password == value


def test_mechanisms_and_logfile_to_standard_output(run: Runner) -> None:
    path = run.home / "msmtprc"
    path.write_text("account default\nhost h\nfrom me@example.org\nauth scram-sha-256\nuser me\nlogfile -\n")
    result = run("--import-msmtprc", str(path), program="esmtp")
    assert "  auth_mechanisms SCRAM-SHA-256\n" in result.stdout
    assert "SCRAM-SHA-256 needs a plugin" in result.stdout
    assert "XOAUTH2 needs a plugin" not in run("--import-msmtprc", "-", input=b"account default\nhost h\n"
                                               b"from me@example.org\nauth xoauth2\n", program="esmtp").stdout
    assert "# msmtp line 6: logfile - -- no equivalent for '-' (standard output)" in result.stdout


def test_without_a_default_account_the_first_identity_is_used(run: Runner) -> None:
    path = run.home / "msmtprc"
    path.write_text("account a\nhost h\nfrom a@example.org\n\naccount b\nhost h\nfrom b@example.org\n")
    result = run("--import-msmtprc", str(path), program="esmtp")
    assert "without -f, esmtp uses the first identity below" in result.stdout
    assert parse_config(result.stdout, "converted").default.address == "a@example.org"


def test_a_trust_file_other_than_the_system_bundle_is_explained(run: Runner) -> None:
    path = run.home / "msmtprc"
    path.write_text("account default\nhost h\nfrom me@example.org\ntls_trust_file ~/my-ca.pem\n")
    result = run("--import-msmtprc", str(path), program="esmtp")
    assert "cp ~/my-ca.pem ~/.authenticate/ca.pem" in result.stdout


def test_password_and_inherited_passwordeval_send_with_the_password_as_msmtp_does(
    run: Runner, auth_server: SmtpServer
) -> None:
    """msmtp 1.8.23 logs in with ``password`` when an account has both (checked against the testbed's Postfix); an
    esmtp identity with both is a configuration error, so the converted file keeps the password only."""
    path = run.home / "msmtprc"
    path.write_text(
        f"account base\nhost {auth_server.host}\nport {auth_server.port}\nauth plain\nuser alice\n"
        "passwordeval \"echo wrong\"\nfrom base@example.org\n"
        "account mine : base\nfrom me@example.org\npassword s3cret\n"
        "account default : mine\n"
    )
    converted = run("--import-msmtprc", str(path), program="esmtp")
    assert converted.returncode == 0, converted.stderr
    assert "passwordeval echo wrong -- not converted: msmtp uses 'password'" in converted.stdout
    # The loopback test server has no TLS: allow PLAIN without it.
    config = run.write_config(converted.stdout.replace("  default\n", "  default\n  auth_plaintext enabled\n"))
    sent = run("-C", str(config), "bob@example.net", input=b"Subject: converted\n\nhi\n")
    assert (sent.returncode, sent.stderr) == (0, "")
    assert auth_server.sink.auths == [("PLAIN", "alice")]
    assert [m.mail_from for m in auth_server.sink.messages] == ["me@example.org"]


def test_a_tls_value_msmtp_refuses_is_kept_as_a_comment(run: Runner) -> None:
    result = run("--import-msmtprc", "-", input=b"account default\nhost h\nfrom me@example.org\ntls maybe\n",
                 program="esmtp")
    assert "# msmtp line 4: tls maybe -- not converted: msmtp takes on or off" in result.stdout
    assert "starttls" not in result.stdout.split("identity")[1]


def test_syslog_is_converted(run: Runner) -> None:
    path = run.home / "syslog.msmtprc"
    path.write_text("account default\nhost h\nfrom me@example.org\nsyslog on\n"
                    "account other\nhost h\nfrom o@example.org\nsyslog LOG_LOCAL3\n")
    result = run("--import-msmtprc", str(path), program="esmtp")
    assert result.returncode == 0, result.stderr
    config = parse_config(result.stdout, "converted")
    assert identity(config, "me@example.org").options["syslog"] == "user"  # msmtp's "on" is LOG_USER
    assert identity(config, "o@example.org").options["syslog"] == "LOG_LOCAL3"


def test_network_options_patterns_domain_and_inheritance_convert_without_a_comment(run: Runner) -> None:
    """A realistic file with every routing option of issue 23: nothing of it stays a comment, and esmtp reads it."""
    result, config = convert(run, "routing.msmtprc")
    body = [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("# ")]
    assert [line for line in body if line.lstrip().startswith("#")] == []
    home = config.identity_for("alice@example.org")
    assert config.default is home
    assert (home.hostname, home.helo, home.options["source_ip"]) == ("smtp.example.org:587", "%H", "192.0.2.10")
    lists = config.identity_for("alice+announce@example.org")
    assert lists.addresses == ["alice+*@example.org"] and lists.username == "alice"  # copied from 'home'
    tor = config.identity_for("anyone@onion.example")
    assert tor.addresses == ["*@onion.example"]
    assert (tor.options["proxy_host"], tor.options["proxy_port"]) == ("127.0.0.1", "9050")
    assert tor.options["source_ip"] == "2001:db8::10"  # its own, over the defaults'
    assert tor.helo == "mail.onion.example"
    assert pending(config, tor) == {"password_command": "pass show mail/onion"}


def test_what_cannot_be_converted_says_why(run: Runner, tmp_path: Path) -> None:
    source = tmp_path / "rc"
    source.write_text("account a\nhost h\nfrom a+*@x.org\ndomain %C\nsource_ip eth0\n\n"
                      "account b\nhost h\nfrom *+a@x.org\n\naccount c\nhost h\nfrom %U@%H\n\n"
                      "account d\nhost h\nfrom a+b@x.org\n")
    result = run("--import-msmtprc", str(source), program="esmtp")
    assert result.returncode == 0, result.stderr
    for line in (
        "# msmtp line 4: domain %C -- esmtp's helo has %H (the host name) and %D (the sender's domain), not msmtp's",
        "# msmtp line 5: source_ip eth0 -- not an IPv4 or IPv6 address, which esmtp's source_ip needs",
        "not converted: its 'from *+a@x.org' and account 'a''s 'from a+*@x.org' match the same senders equally well",
        "not converted: 'from %U@%H' uses msmtp's substitutions (%U, %H, %C, %M)",
        "# (msmtp -f a+b@x.org took account 'a' ('from a+*@x.org', the first that matches); esmtp takes the most",
    ):
        assert line in result.stdout
    parse_config(result.stdout, "converted")  # no tie left for esmtp to refuse
