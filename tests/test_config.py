"""esmtprc parsing (esmtp 1.2's grammar with its parser bugs fixed), identity selection, and finding the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support import Runner, start_server

from esmtp.config.files import load_config
from esmtp.config.model import (
    CORE_KEYWORDS,
    Config,
    Identity,
    Statement,
    parse_hostname,
)
from esmtp.config.parser import parse_config
from esmtp.errors import EX_CONFIG, ConfigError, ConfigNotFound
from esmtp.types import KeywordSpec


def parse(text: str) -> Config:
    return parse_config(text, "rc")


def only(text: str) -> Identity:
    """The global identity of a file without identity blocks."""
    config = parse(text)
    assert len(config.identities) == 1
    return config.identities[0]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.exit_code == EX_CONFIG
    return str(caught.value)


# ---- every keyword and alias -----------------------------------------------------------------------------------------

KEYWORDS: list[tuple[str, str, Any]] = [
    ("hostname mail.example.org", "hostname", "mail.example.org"),
    ("host mail.example.org:25", "hostname", "mail.example.org:25"),
    ("username alice", "username", "alice"),
    ("user alice", "username", "alice"),
    ("password s3cret", "password", "s3cret"),
    ("pass s3cret", "password", "s3cret"),
    ("starttls enabled", "starttls", "enabled"),
    ("starttls required", "starttls", "required"),
    ("starttls disabled", "starttls", "disabled"),
    ("tls required", "starttls", "required"),
    ("certificate_passphrase 'key pass'", "certificate_passphrase", "key pass"),
    ("passphrase kp", "certificate_passphrase", "kp"),
    ("preconnect 'ssh -f -L 2525:localhost:25 gw sleep 5'", "preconnect", "ssh -f -L 2525:localhost:25 gw sleep 5"),
    ("postconnect 'echo done'", "postconnect", "echo done"),
    ("qualifydomain example.org", "qualifydomain", "example.org"),
    ("helo laptop.example.org", "helo", "laptop.example.org"),
    ("force reverse_path '%u@example.org'", "force_reverse_path", "%u@example.org"),
    ("force sender 'Me <me@example.org>'", "force_sender", "Me <me@example.org>"),
    ("message_id disabled", "message_id", False),
    ("message_id enabled", "message_id", True),
]


@pytest.mark.parametrize(("text", "attribute", "expected"), KEYWORDS)
def test_keyword_sets_identity_field(text: str, attribute: str, expected: Any) -> None:
    assert getattr(only(text), attribute) == expected


def test_identity_defaults() -> None:
    identity = only("")
    assert (identity.hostname, identity.username, identity.password) == (None, None, None)
    assert identity.starttls == "disabled"
    assert identity.message_id is True and identity.options == {}


@pytest.mark.parametrize(("text", "mda", "force_mda"), [
    ("mda '/usr/bin/procmail -d %T'", "/usr/bin/procmail -d %T", None),
    ("force_mda alice", None, "alice"),
    ("mda a\nmda b\nforce_mda x\nforce_mda y", "b", "y"),  # last wins
    ("identity a@x\nmda '/bin/cat'\nidentity b@x\nforce_mda bob", "/bin/cat", "bob"),  # always global
])
def test_mda_and_force_mda_are_global(text: str, mda: str | None, force_mda: str | None) -> None:
    config = parse(text)
    assert (config.mda, config.force_mda) == (mda, force_mda)
    assert all(i.options == {} for i in config.identities)


@pytest.mark.parametrize("text", [
    "hostname=x.example", "hostname = x.example", "hostname =x.example", "hostname= x.example",
    "hostname\n=\nx.example", "hostname\nx.example", "  hostname\tx.example  ",
])
def test_equals_sign_is_optional_and_newlines_are_spaces(text: str) -> None:
    assert only(text).hostname == "x.example"


def test_readme_samples() -> None:
    quick = parse('hostname = mail.myisp.com:25\nusername = "myself"\npassword = "secret"\nstarttls = enabled\n\n'
                  'mda "/usr/bin/procmail -d %T"\n')
    assert quick.default.server(587) == ("mail.myisp.com", 25)
    assert (quick.default.username, quick.default.password, quick.default.starttls) == ("myself", "secret", "enabled")
    assert quick.mda == "/usr/bin/procmail -d %T"
    several = parse(
        "identity myself@myisp.com\n\thostname mail.myisp.com:25\n\tusername \"myself\"\n\tpassword \"secret\"\n"
        "\tstarttls enabled\n\tdefault\n\nidentity myself@anotherisp.com\n\thostname smtp.anotherisp.com:25\n"
        "\tusername \"myself\"\n\tpassword \"secret\"\n\nmda \"/usr/bin/procmail -d %T\"\n"
    )
    assert [i.address for i in several.identities] == [None, "myself@myisp.com", "myself@anotherisp.com"]
    assert several.default.address == "myself@myisp.com"
    assert several.identity_for("myself@anotherisp.com").hostname == "smtp.anotherisp.com:25"
    assert several.identities[1].lineno == 1 and several.identities[2].lineno == 8


# ---- quoting, escapes, comments, continuation, line endings ----------------------------------------------------------

@pytest.mark.parametrize(("text", "helo"), [
    ('helo "two words"', "two words"),
    ("helo 'two words'", "two words"),
    ("helo 'say \"hi\"'", 'say "hi"'),
    ('helo "it\'s"', "it's"),
    ("helo it's", "it's"),  # a quote inside an unquoted word is an ordinary character
    ('helo ab"c"', 'ab"c"'),
    ('helo ""', ""),
    ('helo "multi\nline"', "multi\nline"),
    ('helo "a;b,c=d:e#f"', "a;b,c=d:e#f"),
    ('helo="x"', "x"),
    ('helo "x";', "x"),
    ('helo "x"# comment', "x"),
])
def test_quoting(text: str, helo: str) -> None:
    assert only(text).helo == helo


ESCAPES = [
    (r"a\\b", "a\\b"),
    (r"a\nb", "a\nb"),
    (r"a\tb", "a\tb"),
    (r"a\bb", "a\bb"),
    (r"a\rb", "a\rb"),
    (r"\x41\x42", "AB"),
    (r"\x4g", "\x04g"),  # at most two hex digits, at least one
    (r"\x414", "A4"),
    (r"\xg", "xg"),  # \x without a hex digit is just x
    (r"\0101", "A"),  # esmtp's octal form, \0ooo
    (r"\101", "A"),  # octal too (esmtp 1.2 read this as decimal 101 = 'e')
    (r"\0", "\0"),
    (r"\012", "\n"),
    (r"\7", "\x07"),
    (r"\1010", "A0"),  # three octal digits at most
    (r"\8", "8"),  # not an octal digit: any other \c is c
    (r"\18", "\x018"),  # esmtp 1.2: decimal 18
    (r"\q\"", 'q"'),
    (r"\é", "é"),
    (r"\xC3\xA9", "é"),  # escapes make bytes: this is one UTF-8 character
    (r"\377", "\udcff"),  # a byte that is not UTF-8 survives as a surrogate (like undecodable file bytes)
    ("abc\\", "abc\\"),  # a trailing lone backslash stays
]


@pytest.mark.parametrize(("written", "value"), ESCAPES)
def test_escapes_in_double_single_and_unquoted_values(written: str, value: str) -> None:
    if '"' not in written:
        assert only(f'password "{written}"').password == value
    if "'" not in written:
        assert only(f"password '{written}'").password == value
    assert only(f"password {written}").password == value


def test_escape_result_round_trips_to_bytes() -> None:
    assert only(r"password \xff\xfe").password.encode("utf-8", "surrogateescape") == b"\xff\xfe"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "value"), [
    ("password pa\\ ss", "pa ss"),  # a backslash escapes a separator in an unquoted word
    ("password a\\;b\\,c", "a;b,c"),
    ("password \\#x", "#x"),
    ("password 'a\\'", "a\\"),  # a quote cannot be escaped inside its own quotes: the value ends with a backslash
    ('password "a\\"', "a\\"),
])
def test_backslash_in_unquoted_words(text: str, value: str) -> None:
    assert only(text).password == value


@pytest.mark.parametrize(("text", "value"), [
    ("helo abc#def", "abc#def"),  # '#' inside a word is part of it
    ("helo abc # comment", "abc"),
    ("# first\nhelo abc # trailing\n# last", "abc"),
    ("helo abc\n#no newline at the end", "abc"),
    ("helo #comment\nabc", "abc"),  # a comment ends at the line's end, so the value is on the next line
    ("helo abc # comment \\\n", "abc"),  # a comment is not continued by a backslash
])
def test_comments(text: str, value: str) -> None:
    assert only(text).helo == value


@pytest.mark.parametrize(("text", "attribute", "value"), [
    ("hostname \\\n127.0.0.1:25", "hostname", "127.0.0.1:25"),
    ("helo abc\\\ndef", "helo", "abcdef"),
    ("he\\\nlo abc", "helo", "abc"),
    ("preconnect \"ssh -f gw \\\n  sleep 5\"", "preconnect", "ssh -f gw   sleep 5"),
    ("helo 'a\\\\\nb'", "helo", "a\\\nb"),  # an escaped backslash before the newline does not continue
    ("helo a\\\\\nuser b", "username", "b"),
])
def test_backslash_newline_joins_lines(text: str, attribute: str, value: str) -> None:
    assert getattr(only(text), attribute) == value


def test_crlf_values_and_line_numbers() -> None:
    identity = only(
        "hostname 127.0.0.1:25\r\nhelo crlf-helo\r\n# c\r\npassword 'two\r\nlines'\r\nusername a\\\r\nb\r\n"
    )
    assert (identity.hostname, identity.helo, identity.password, identity.username) == (
        "127.0.0.1:25", "crlf-helo", "two\nlines", "ab")
    assert error_of("helo x\r\n\r\n'two\r\nlines'\r\nstarttls yes\r\n").startswith("rc:3:")
    assert error_of("helo x\r\nhelo 'two\r\nlines'\r\nstarttls yes\r\n") == (
        "rc:4: starttls takes disabled, enabled or required, not 'yes'")


def test_byte_order_mark_is_ignored() -> None:
    assert only("\ufeffhelo x").helo == "x"


# ---- esmtp 1.2 parser bugs, fixed ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "attribute", "value"), [
    ("password 123456", "password", "123456"),  # esmtp: syntax error (NUMBER token)
    ("username 42", "username", "42"),
    ("helo -1", "helo", "-1"),
    ("helo default", "helo", "default"),  # esmtp: keyword-valued strings had to be quoted
    ("password enabled", "password", "enabled"),
    ("username identity", "username", "identity"),
    ("helo hostname", "helo", "hostname"),
    ("qualifydomain mda", "qualifydomain", "mda"),
    ("hostname [::1]:25", "hostname", "[::1]:25"),
    ("helo a:b", "helo", "a:b"),  # esmtp: ':' only in hostname/username/password/identity values
    ("preconnect /usr/local/bin/tunnel:up", "preconnect", "/usr/local/bin/tunnel:up"),
    ("password=abc=def", "password", "abc=def"),  # esmtp: syntax error at '='
    ("password ab==", "password", "ab=="),
])
def test_fixed_esmtp_value_bugs(text: str, attribute: str, value: str) -> None:
    assert getattr(only(text), attribute) == value


@pytest.mark.parametrize("text", ["starttls 'required'", 'tls="required"', "starttls\nrequired"])
def test_choices_may_be_quoted(text: str) -> None:
    assert only(text).starttls == "required"


def test_mda_unquoted_path() -> None:
    assert parse("mda /usr/bin/procmail").mda == "/usr/bin/procmail"


def test_semicolon_and_comma_are_silent_separators(capsys: pytest.CaptureFixture[str]) -> None:
    identity = only("hostname 127.0.0.1:25;\nhelo my,helo;name\n;;,,")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")  # esmtp 1.2 echoed ";,;" to stdout
    assert identity.hostname == "127.0.0.1:25"
    assert identity.helo == "name"  # 'helo my', then 'helo name': the same result as esmtp 1.2
    assert parse("hostname a;helo b").default.helo == "b"


def test_any_identity_block_may_be_empty() -> None:
    config = parse("identity a@x\nhostname h\nidentity b@x\nidentity c@x\n")  # esmtp: syntax error at end of input
    assert [i.address for i in config.identities] == [None, "a@x", "b@x", "c@x"]
    assert config.identity_for("c@x").hostname is None


# ---- identities and the default --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "default"), [
    ("", None),  # empty file: the global identity
    ("hostname h\nidentity a@x\nhostname h", None),  # global with a statement
    ("mda /bin/cat\nidentity a@x\nhelo a\nidentity b@x\nhelo b", "a@x"),  # global with only mda (def-mdaonly-global)
    ("force_mda bob\nidentity a@x\nhelo a", "a@x"),
    ("identity a@x\nhelo a\nidentity b@x\nhelo b", "a@x"),  # first identity with statements (def-first)
    ("identity a@x\nhelo a\nidentity b@x\nhelo b\ndefault", "b@x"),  # 'default' in a later block (def-keyword)
    ("identity a@x\ndefault\nhelo a\nidentity b@x\nhelo b", "a@x"),
    ("identity a@x\nidentity b@x\nhelo b", "b@x"),  # empty first identity (def-empty-first)
    ("identity a@x\nidentity b@x", "b@x"),  # nothing anywhere: the last created
    ("default\nidentity a@x\nhelo a", None),  # 'default' before any identity: the global one
    ("identity a@x\nhelo a\ndefault\nidentity b@x\ndefault", "b@x"),  # the last 'default' wins
    ("smtps enabled\nidentity a@x\nhelo a", "a@x"),  # extension keywords never choose the default
    ("identity a@x\nsite_tag 1\nidentity b@x\nhelo b", "b@x"),
])
def test_default_identity(text: str, default: str | None) -> None:
    config = parse(text)
    assert config.default.address == default
    assert config.default is config.identity_for(None)
    assert config.default in config.identities


def test_identity_for_is_exact() -> None:
    config = parse("hostname g\nidentity a@example.org\nhostname one\nidentity A@example.org\nhostname two\n"
                   "identity a@example.org\nhostname three\n")
    assert config.identity_for("a@example.org").hostname == "three"  # the last block with the address wins
    assert config.identity_for("A@example.org").hostname == "two"  # case-sensitive
    for other in ("<a@example.org>", " a@example.org", "a@example.org.", "", None):
        assert config.identity_for(other) is config.default
    assert config.default.hostname == "g"


def test_identities_do_not_inherit_from_global() -> None:
    config = parse("hostname relay.example:587\nusername u\nstarttls required\nidentity a@x\nhelo a\n")
    chosen = config.identity_for("a@x")
    assert (chosen.hostname, chosen.username, chosen.starttls) == (None, None, "disabled")
    assert chosen.server(587) == ("localhost", 25)


def test_no_way_back_to_global_section() -> None:
    config = parse("identity a@x\nhelo a\nhostname h\nmda m\ndisable_plugins queue\nsmtps enabled\n")
    glob, a = config.identities
    assert glob.hostname is None and a.hostname == "h"
    assert config.mda == "m" and config.options == {"disable_plugins": "queue"}
    assert a.options == {"smtps": "enabled"} and glob.options == {}


def test_identity_address_is_any_value() -> None:
    config = parse("identity 'Alice <a@x>'\nidentity ''\nidentity=default\nidentity b@x:25")
    assert [i.address for i in config.identities[1:]] == ["Alice <a@x>", "", "default", "b@x:25"]


# ---- errors name the file and the line -------------------------------------------------------------------------------

ERRORS = [
    ("starttls yes", "rc:1: starttls takes disabled, enabled or required, not 'yes'"),
    ("\ntls 'Enabled'", "rc:2: tls takes disabled, enabled or required, not 'Enabled'"),
    ("message_id on", "rc:1: message_id takes enabled or disabled, not 'on'"),
    ("starttls", "rc:1: 'starttls' needs one of disabled, enabled or required"),
    ("helo x\nhelo 'abc", "rc:2: unterminated quoted string: the ' opened here is never closed"),
    ('helo "abc\n\n', 'rc:1: unterminated quoted string: the " opened here is never closed'),
    ("identity", "rc:1: 'identity' needs an address"),
    ("identity =", "rc:1: 'identity' needs an address"),
    ("hostname x\nhelo", "rc:2: 'helo' needs a value"),
    ("mda", "rc:1: 'mda' needs a command"),
    ("helo = = x", "rc:1: unexpected second '=' after 'helo'"),
    ("= x", "rc:1: unexpected '=' where a keyword should be"),
    ("helo x\n'quoted'", "rc:2: a quoted string where a keyword should be"),
    ("force", "rc:1: 'force' needs 'reverse_path' or 'sender' after it"),
    ("force from x", "rc:1: 'force' must be followed by 'reverse_path' or 'sender', not 'from'"),
    ("force_sender x@y", "rc:1: 'force_sender' is two words: force sender ADDRESS"),
    ("force_reverse_path x@y", "rc:1: 'force_reverse_path' is two words: force reverse_path ADDRESS"),
    ("sender x", "rc:1: 'sender' only comes after 'force' (force sender ADDRESS)"),
    ("enabled", "rc:1: 'enabled' is a value, but a keyword should be here"),
    ("Hostname x", "rc:1: keywords are lower case: write 'hostname', not 'Hostname'"),
    ("SMTPS enabled", "rc:1: keywords are lower case: write 'smtps', not 'SMTPS'"),
    ("mda /usr/bin/procmail -d %T",
     "rc:1: '-d' is not a keyword (if it belongs to the value before it, put that value in quotes)"),
    ('helo "a"b', "rc:1: text directly after a closing quote; put a space after the quote or quote it all"),
    ('helo "a\nb"c', "rc:2: text directly after a closing quote; put a space after the quote or quote it all"),
    ("helo \\400", "rc:1: octal escape '\\400' is larger than \\377 (one byte)"),
    ("helo '\n\\0777'", "rc:2: octal escape '\\0777' is larger than \\377 (one byte)"),
    ("smtps yes", "rc:1: 'smtps' takes one of enabled, disabled, not 'yes'"),
    ("tls_min_version 1.4", "rc:1: 'tls_min_version' takes one of 1.0, 1.1, 1.2, 1.3, not '1.4'"),
    ("timeout soon", "rc:1: 'timeout' takes a number of seconds greater than 0, not 'soon'"),
    ("timeout 0", "rc:1: 'timeout' takes a number of seconds greater than 0, not '0'"),
    ("timeout nan", "rc:1: 'timeout' takes a number of seconds greater than 0, not 'nan'"),
    ("smtps\nhostname x", "rc:1: 'smtps' needs a value on the same line"),
    ("disable_plugins queue aliases",
     "rc:1: 'aliases' is not a keyword (if it belongs to the value before it, put that value in quotes)"),
    ("defualt\nidentity a@x",
     "rc:1: unknown keyword 'defualt' (a plugin's keyword needs a value on the same line)"),
    ("site_tag = = x", "rc:1: unexpected second '=' after 'site_tag'"),
    # line numbers stay right after multi-line quotes, continuations and comments (esmtp 1.2 said 3, 1, ...)
    ('hostname h\nhelo "multi\nline"\nstarttls yes', "rc:4: starttls takes disabled, enabled or required, not 'yes'"),
    ("password 'a\n\n\nb' starttls\nyes", "rc:5: starttls takes disabled, enabled or required, not 'yes'"),
    ("hostname \\\nh\n# c\n\nstarttls yes", "rc:5: starttls takes disabled, enabled or required, not 'yes'"),
    ("helo a\\\nb starttls yes", "rc:2: starttls takes disabled, enabled or required, not 'yes'"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_error_messages(text: str, message: str) -> None:
    assert error_of(text) == message


HOSTNAME_ERRORS = [
    ('""', "hostname is empty"),
    ("x:0", "hostname 'x:0': port 0 is not between 1 and 65535"),
    ("x:65536", "hostname 'x:65536': port 65536 is not between 1 and 65535"),
    ("x:nosuch", "hostname 'x:nosuch': 'nosuch' is neither a port number nor a service name"),
    ("x:", "hostname 'x:' has nothing after ':'; give a port number or leave out the ':'"),
    (":25", "hostname ':25' has no host name"),
    ("::1", "hostname '::1' has more than one ':'; write an IPv6 address in brackets: [2001:db8::1]:587"),
    ("2001:db8::1:25", "hostname '2001:db8::1:25' has more than one ':'; write an IPv6 address in brackets:"
                       " [2001:db8::1]:587"),
    ("[::1", "hostname '[::1' has no ']' after the IPv6 address"),
    ("[::1]25", "hostname '[::1]25': only ':port' may follow ']'"),
    ("[]:25", "hostname '[]:25' has no host name"),
    ("'mail example'", "hostname 'mail example' is not a host name"),
]


@pytest.mark.parametrize(("value", "message"), HOSTNAME_ERRORS)
def test_hostname_errors_at_parse_time(value: str, message: str) -> None:
    assert error_of(f"helo x\nhostname {value}") == f"rc:2: {message}"


def test_error_without_path_says_config() -> None:
    with pytest.raises(ConfigError, match=r"^config:1: starttls takes"):
        parse_config("starttls yes", None)


# ---- Identity.server() -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("hostname", "default_port", "server"), [
    (None, 587, ("localhost", 25)),  # no hostname: localhost:25, as esmtp
    (None, 465, ("localhost", 25)),
    ("mail.example.org", 587, ("mail.example.org", 587)),
    ("mail.example.org", 465, ("mail.example.org", 465)),
    ("mail.example.org:25", 587, ("mail.example.org", 25)),
    ("mail.example.org:0025", 587, ("mail.example.org", 25)),
    ("10.0.0.1:2525", 587, ("10.0.0.1", 2525)),
    ("mail.example.org:smtp", 587, ("mail.example.org", 25)),  # /etc/services name
    ("mail.example.org:submission", 25, ("mail.example.org", 587)),
    ("[::1]:2525", 587, ("::1", 2525)),
    ("[2001:db8::1]", 587, ("2001:db8::1", 587)),
    ("x:65535", 587, ("x", 65535)),
])
def test_identity_server(hostname: str | None, default_port: int, server: tuple[str, int]) -> None:
    assert Identity(address=None, hostname=hostname).server(default_port) == server
    if hostname is not None:
        assert parse(f"hostname {hostname}").default.server(default_port) == server


def test_identity_server_error_names_the_block() -> None:
    with pytest.raises(ConfigError, match=r"^rc:3: hostname 'x:0': port 0"):
        Identity(address="a@x", hostname="x:0", source="rc", lineno=3).server(587)
    with pytest.raises(ConfigError, match=r"^hostname is empty$"):
        Identity(address=None, hostname="").server(587)


def test_parse_hostname() -> None:
    assert parse_hostname("h") == ("h", None)
    assert parse_hostname("[fe80::1%eth0]:25") == ("fe80::1%eth0", 25)
    with pytest.raises(ValueError, match="port 99999"):
        parse_hostname("h:99999")


# ---- extension keywords ----------------------------------------------------------------------------------------------

PIN = "SHA256:" + ":".join(["AB"] * 32)


def test_core_extension_keywords_are_stored_by_scope() -> None:
    config = parse(
        "auth_mechanisms 'CRAM-MD5 PLAIN'\nauth_plaintext=enabled\ntimeout 12.5\ndisable_plugins queue,aliases\n"
        f"identity a@x\nsmtps enabled\ntls_min_version 1.3\ntls_fingerprint {PIN}\n"
    )
    glob, a = config.identities
    assert glob.options == {"auth_mechanisms": "CRAM-MD5 PLAIN", "auth_plaintext": "enabled", "timeout": "12.5"}
    assert a.options == {"smtps": "enabled", "tls_min_version": "1.3", "tls_fingerprint": PIN}
    assert (config.where("disable_plugins"), config.where("tls_fingerprint", a)) == ("rc:4", "rc:8")
    assert config.options == {"disable_plugins": "queue,aliases"}  # a comma stays in an extension keyword's value
    assert config.pending == []
    assert parse("disable_plugins 'queue aliases'").options == {"disable_plugins": "queue aliases"}
    assert parse("site_list a,b;smtps enabled").pending[0].value == "a,b"
    assert parse("helo a,helo b").default.helo == "b"  # but not in esmtp's own keywords (as esmtp 1.2)


def test_other_statements_wait_in_pending() -> None:
    config = parse("site_global = 'one two'\nidentity a@x\nhelo a\nsite_tag b  # comment\nsite-dash=enabled\n")
    glob, a = config.identities
    assert config.pending == [
        Statement("site_global", "one two", 1, glob),
        Statement("site_tag", "b", 4, a),
        Statement("site-dash", "enabled", 5, a),
    ]
    config.resolve_extensions([
        *CORE_KEYWORDS,
        KeywordSpec("site_global", scope="global"),
        KeywordSpec("site_tag", choices=("a", "b")),
        KeywordSpec("site-dash"),
    ])
    assert config.pending == []
    assert config.options == {"site_global": "one two"}
    assert a.options == {"site_tag": "b", "site-dash": "enabled"}


@pytest.mark.parametrize(("text", "message"), [
    ("helo x\nsite_tag zzz", "rc:2: 'site_tag' takes one of a, b, not 'zzz'"),
    ("\n\nno_such_keyword 1", "rc:3: unknown keyword 'no_such_keyword'"),
    ("port 25", "rc:1: unknown keyword 'port' (write the port in hostname: hostname mail.example.org:587)"),
])
def test_resolve_extensions_errors(text: str, message: str) -> None:
    config = parse(text)
    with pytest.raises(ConfigError) as caught:
        config.resolve_extensions([*CORE_KEYWORDS, KeywordSpec("site_tag", choices=("a", "b"))])
    assert str(caught.value) == message


def test_extension_value_may_spell_a_keyword() -> None:
    config = parse("site_tag default\nsite_other identity")
    assert [(s.keyword, s.value) for s in config.pending] == [("site_tag", "default"), ("site_other", "identity")]


# ---- finding and reading the file ------------------------------------------------------------------------------------

def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


@pytest.fixture
def system(tmp_path: Path) -> Path:
    return tmp_path / "etc-esmtprc"


def load(home: Path, system: Path, cli: str | None = None) -> Config:
    return load_config(cli, home=str(home), system_path=str(system))


def test_cli_file_wins_and_is_not_checked(home: Path, system: Path, tmp_path: Path) -> None:
    write(home / ".esmtprc", "helo user")
    write(system, "helo system")
    cli = write(tmp_path / "cli-rc", "helo cli", 0o666)
    config = load(home, system, str(cli))
    assert (config.default.helo, config.path) == ("cli", str(cli))


def test_cli_file_errors(home: Path, system: Path, tmp_path: Path) -> None:
    write(home / ".esmtprc", "helo user")
    missing = str(tmp_path / "missing")
    with pytest.raises(ConfigError) as caught:
        load(home, system, missing)
    assert str(caught.value) == f"open: {missing}: No such file or directory"
    assert not isinstance(caught.value, ConfigNotFound) and caught.value.exit_code == EX_CONFIG
    with pytest.raises(ConfigError, match=f"^open: {tmp_path}: Is a directory$"):
        load(home, system, str(tmp_path))


def test_dev_null_is_an_empty_config(home: Path, system: Path) -> None:
    config = load(home, system, os.devnull)
    assert config.default.address is None and config.default.server(587) == ("localhost", 25)


def test_user_file_before_system_file(home: Path, system: Path) -> None:
    user = write(home / ".esmtprc", "helo user")
    write(system, "helo system")
    config = load(home, system)
    assert (config.default.helo, config.path) == ("user", str(user))


def test_system_file_when_no_user_file_and_not_checked(home: Path, system: Path) -> None:
    write(system, "helo system", 0o644)
    config = load(home, system)
    assert (config.default.helo, config.path) == ("system", str(system))


def test_home_from_environment(home: Path, system: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".esmtprc", "helo from-env")
    monkeypatch.setenv("HOME", str(home) + "/")
    config = load_config(None, system_path=str(system))
    assert config.default.helo == "from-env" and config.path == f"{home}/.esmtprc"


def test_nothing_found(home: Path, system: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigNotFound) as caught:
        load(home, system)
    assert str(caught.value) == (f"No configuration file found at {home}/.esmtprc or {system}; or set ESMTP_HOSTNAME "
                                 "and the other ESMTP_<KEYWORD> variables")
    assert caught.value.exit_code == EX_CONFIG
    monkeypatch.delenv("HOME")
    with pytest.raises(ConfigNotFound, match=r"^No configuration file found at .*etc-esmtprc \(HOME is not set"):
        load_config(None, system_path=str(system))


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o710, 0o500, 0o610])
def test_private_modes_pass(home: Path, system: Path, mode: int) -> None:
    write(home / ".esmtprc", "helo ok", mode)
    assert load(home, system).default.helo == "ok"


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o604, 0o602, 0o601, 0o644, 0o660, 0o666, 0o777])
def test_modes_open_to_others_are_refused(home: Path, system: Path, mode: int) -> None:
    user = write(home / ".esmtprc", "password secret", mode)
    write(system, "helo system")  # never used instead: a refused user file is an error
    with pytest.raises(ConfigError) as caught:
        load(home, system)
    message = str(caught.value)
    assert message == (
        f"File {user} must not be readable or writable by others (it may hold a password), but its mode is "
        f"{mode:04o}. Fix it with: chmod 600 {user}"
    )
    assert "open:" not in message and "Success" not in message
    assert not isinstance(caught.value, ConfigNotFound)


def test_directory_and_fifo_are_refused(home: Path, system: Path) -> None:
    (home / ".esmtprc").mkdir()
    with pytest.raises(ConfigError, match=rf"^File {home}/\.esmtprc must be a regular file\.$"):
        load(home, system)
    (home / ".esmtprc").rmdir()
    os.mkfifo(home / ".esmtprc", 0o600)  # opening it must not wait for a writer
    with pytest.raises(ConfigError, match=rf"^File {home}/\.esmtprc must be a regular file\.$"):
        load(home, system)


def test_symlink_to_a_private_file_of_ours_is_followed(home: Path, system: Path, tmp_path: Path) -> None:
    """As msmtp does: dotfile managers (GNU stow, chezmoi) make ~/.esmtprc a symbolic link."""
    (tmp_path / "dotfiles").mkdir()
    target = write(tmp_path / "dotfiles" / "esmtprc", "helo linked")
    os.symlink(target, home / ".esmtprc")
    config = load(home, system)
    assert (config.default.helo, config.path) == ("linked", f"{home}/.esmtprc")


def test_symlink_to_anything_else_is_refused_naming_the_link(home: Path, system: Path, tmp_path: Path) -> None:
    link = home / ".esmtprc"
    shown = rf"File {link} \(a symbolic link to {tmp_path}(/\w+)?\)"
    os.symlink(tmp_path / "missing", link)
    write(system, "helo system")  # never used instead: a refused user file is an error
    with pytest.raises(ConfigError, match=rf"^{shown} points to a file that does not exist\.$"):
        load(home, system)
    os.unlink(link)
    os.symlink(tmp_path, link)
    with pytest.raises(ConfigError, match=rf"^{shown} must be a regular file\.$"):
        load(home, system)
    os.unlink(link)
    target = write(tmp_path / "shared", "password secret", 0o644)
    os.symlink(target, link)
    with pytest.raises(ConfigError, match=rf"^{shown} must not be readable .* mode is 0644\. Fix it with: "
                                          rf"chmod 600 {target}$"):
        load(home, system)
    if os.geteuid() == 0:
        target.chmod(0o600)
        os.chown(target, 12345, -1)
        with pytest.raises(ConfigError, match=rf"^{shown} must be owned by you\.$"):
            load(home, system)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_file_owned_by_someone_else_is_refused(home: Path, system: Path) -> None:
    user = write(home / ".esmtprc", "helo x")
    os.chown(user, 12345, -1)
    with pytest.raises(ConfigError, match=rf"^File {user} must be owned by you\.$"):
        load(home, system)


def test_lstat_failure(tmp_path: Path, system: Path) -> None:
    not_a_directory = write(tmp_path / "plain", "")
    with pytest.raises(ConfigError, match=rf"^lstat: {not_a_directory}/\.esmtprc: Not a directory$"):
        load_config(None, home=str(not_a_directory), system_path=str(system))


def test_system_file_open_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^open: {tmp_path}: Is a directory$"):
        load_config(None, home=str(home), system_path=str(tmp_path))


def test_parse_errors_name_the_file_read(home: Path, system: Path) -> None:
    user = write(home / ".esmtprc", "helo x\nstarttls maybe")
    with pytest.raises(ConfigError, match=rf"^{user}:2: starttls takes"):
        load(home, system)


def test_utf8_and_undecodable_bytes(home: Path, system: Path) -> None:
    user = home / ".esmtprc"
    user.write_bytes(b"password p\xc3\xa4ss\xff\nhelo 'caf\xc3\xa9'\n")
    os.chmod(user, 0o600)
    config = load(home, system)
    assert config.default.helo == "café"
    assert config.default.password is not None
    assert config.default.password.encode("utf-8", "surrogateescape") == b"p\xc3\xa4ss\xff"


# ---- through the installed command ----------------------------------------------------------------------------------

MESSAGE = b"Subject: config\n\nbody\n"


def test_command_reports_config_error_and_exits_78(run: Runner) -> None:
    path = run.write_config("hostname localhost:25\nstarttls yes\n")
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert result.stderr == f"sendmail: {path}:2: starttls takes disabled, enabled or required, not 'yes'\n"
    assert result.stdout == ""


def test_command_with_punctuation_and_numbers_sends_and_prints_nothing(run: Runner) -> None:
    server = start_server(users={"42": "123456"})
    try:
        run.write_config(f"hostname {server.hostport};\nhelo my,helo;name\npassword 123456 ;username 42\n"
                         "auth_plaintext enabled\n")
        result = run("-f", "a@example.org", "bob@example.net", input=MESSAGE)
    finally:
        server.controller.stop()
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert server.sink.messages[0].rcpt_tos == ["bob@example.net"]
    assert [user for _, user in server.sink.auths] == ["42"]  # and the password 123456 was accepted


def test_command_refuses_readable_config(run: Runner) -> None:
    path = run.write_config("hostname localhost:25\n")
    path.chmod(0o644)
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert result.stderr == (
        f"sendmail: File {path} must not be readable or writable by others (it may hold a password), but its mode "
        f"is 0644. Fix it with: chmod 600 {path}\n"
    )


@pytest.mark.skipif(os.path.exists("/etc/esmtprc"), reason="this machine has an /etc/esmtprc")
def test_command_without_any_config_exits_78(run: Runner) -> None:
    result = run("bob@example.net", input=MESSAGE)
    assert result.returncode == 78
    assert result.stderr == (f"sendmail: No configuration file found at {run.home}/.esmtprc or /etc/esmtprc; or set "
                             "ESMTP_HOSTNAME and the other ESMTP_<KEYWORD> variables\n")
