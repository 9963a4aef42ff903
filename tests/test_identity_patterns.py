"""Identities with several addresses and shell-style patterns, the ``defaults`` section, ``helo`` with %H and %D, and
``--check ADDRESS`` (issue 23). The pattern rule is also checked as properties against :mod:`fnmatch`."""

from __future__ import annotations

import fnmatch
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import Runner, ScriptedServer

from esmtp.config.identities import choose_identity, matches, weight
from esmtp.config.model import CORE_KEYWORDS, Config, helo_name
from esmtp.config.parser import parse_config
from esmtp.errors import ConfigError

MESSAGE = b"Subject: hi\n\nbody\n"


def parsed(text: str) -> Config:
    config = parse_config(text, "rc")
    config.resolve_extensions(CORE_KEYWORDS)
    return config


PATTERNS = """\
identity alice@example.org, alice+*@example.org, *@alice.example
  hostname alice-relay
identity *@example.org
  hostname domain-relay
identity bob@example.org
  hostname bob-relay
"""


@pytest.mark.parametrize(("sender", "hostname", "why"), [
    ("alice@example.org", "alice-relay", "is 'identity alice@example.org' at rc:1"),
    ("alice+lists@EXAMPLE.org", "alice-relay", "matches 'identity alice+*@example.org' at rc:1"),
    ("anyone@Alice.Example", "alice-relay", "is in the domain of 'identity *@alice.example' at rc:1"),
    ("bob@example.org", "bob-relay", "is 'identity bob@example.org' at rc:5"),
    ("carol@example.org", "domain-relay", "is in the domain of 'identity *@example.org' at rc:3"),
    ("Alice@example.org", "domain-relay", "is in the domain of"),  # the local part is compared exactly
])
def test_the_most_specific_address_or_pattern_wins(sender: str, hostname: str, why: str) -> None:
    choice = choose_identity(parsed(PATTERNS), sender)
    assert choice.identity.hostname == hostname
    assert why in choice.reason


def test_a_longer_pattern_beats_a_shorter_one_whatever_the_order() -> None:
    for text in ("identity *@example.org\nhelo short\nidentity *+*@example.org\nhelo long\n",
                 "identity *+*@example.org\nhelo long\nidentity *@example.org\nhelo short\n"):
        assert parsed(text).identity_for("a+b@example.org").helo == "long"
        assert parsed(text).identity_for("a@example.org").helo == "short"


def test_the_same_address_in_two_blocks_is_still_the_last_one_wins() -> None:
    config = parsed("identity *@example.org\nhelo one\nidentity *@EXAMPLE.org\nhelo two\n")
    assert config.identity_for("x@example.org").helo == "two"


def test_equally_specific_patterns_that_overlap_are_an_error_naming_both_lines() -> None:
    with pytest.raises(ConfigError) as error:
        parsed("identity a*@example.org\nhelo one\n\nidentity *a@example.org\nhelo two\n")
    text = str(error.value)
    assert text.startswith("rc:4: 'identity *a@example.org' and 'identity a*@example.org' at rc:1")
    assert "such as a@example.org" in text


def test_equally_specific_patterns_that_cannot_overlap_are_fine() -> None:
    config = parsed("identity a*@example.org\nhelo a\nidentity b*@example.org\nhelo b\n")
    assert config.identity_for("bert@example.org").helo == "b"


def test_a_comma_after_an_identity_still_separates_statements_as_in_esmtp_1_2() -> None:
    config = parsed("identity bob@x.org, hostname h2, username bob\n")
    assert config.identities[1].addresses == ["bob@x.org"]
    assert config.identities[1].hostname == "h2"
    assert config.identities[1].username == "bob"


def test_an_identity_list_may_continue_on_the_next_line() -> None:
    config = parsed("identity a@x.org,\n    b@x.org, 'c d@x.org'\n  hostname h\n")
    assert config.identities[1].addresses == ["a@x.org", "b@x.org", "c d@x.org"]
    assert config.identity_for("b@x.org").hostname == "h"


def test_identity_names_any_of_the_listed_addresses() -> None:
    config = parsed(PATTERNS)
    assert choose_identity(config, None, "alice+*@example.org").identity.hostname == "alice-relay"


# ---- defaults --------------------------------------------------------------------------------------------------


DEFAULTS = """\
defaults
  hostname smtp.example.org:587
  starttls required
  timeout 30
  username shared

identity alice@example.org
  username alice
identity bob@example.org
  hostname other.example.org:465
  smtps enabled
"""


def test_every_identity_inherits_what_it_does_not_set_itself() -> None:
    config = parsed(DEFAULTS)
    alice, bob = config.identity_for("alice@example.org"), config.identity_for("bob@example.org")
    assert (alice.hostname, alice.starttls, alice.username, alice.options) == (
        "smtp.example.org:587", "required", "alice", {"timeout": "30"})
    assert (bob.hostname, bob.starttls, bob.username, bob.options) == (
        "other.example.org:465", "required", "shared", {"timeout": "30", "smtps": "enabled"})
    assert config.defaults is not None and config.defaults not in config.identities
    assert config.where("timeout", bob) == "rc:4"  # an error about it names the line in the defaults section


def test_without_a_defaults_section_nothing_is_inherited() -> None:
    config = parsed("hostname global:25\nidentity a@x.org\nusername a\n")
    assert config.identity_for("a@x.org").hostname is None


def test_the_defaults_section_does_not_become_the_default_identity() -> None:
    config = parsed("defaults\nhostname h\nidentity a@x.org\nidentity b@x.org\nhelo b\n")
    assert config.default.address == "b@x.org"


def test_plugin_keywords_are_inherited_too(run: Runner) -> None:
    path = run.write_config("defaults\n  password_command 'echo pw'\nidentity a@x.org\n  hostname h:25\n")
    result = run("--check", "-C", str(path), program="esmtp")
    assert result.returncode == 0, result.stderr
    assert f"password_command `echo pw` ({path}:2)" in result.stdout.split("\n")[0]


def test_default_in_the_defaults_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"rc:3: 'default' .* cannot be in the 'defaults' section"):
        parsed("defaults\nhostname h\ndefault\n")


# ---- --check ADDRESS -------------------------------------------------------------------------------------------


def test_check_says_which_identity_an_address_gets_and_why(run: Runner) -> None:
    path = run.write_config(PATTERNS)
    result = run("--check", "-C", str(path), "alice+x@example.org", "zed@nowhere.example", program="esmtp")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (f"sender alice+x@example.org: identity alice@example.org: the sender alice+x@example.org matches "
            f"'identity alice+*@example.org' at {path}:1") in "\n".join(lines)
    assert "sender zed@nowhere.example: identity alice@example.org: no identity matches" in "\n".join(lines)


# ---- helo %H and %D --------------------------------------------------------------------------------------------


def test_helo_expands_the_host_name_and_the_senders_domain() -> None:
    host = socket.gethostname()
    assert helo_name("%H", "a@b.example") == host
    assert helo_name("mx.%D", "a@b.example") == "mx.b.example"
    assert helo_name("%D", None) == host  # no sender domain: the host name
    assert helo_name("100%% %x", "a@b") == "100% %x"
    assert helo_name(None, "a@b") == host


def test_the_server_sees_the_expanded_helo(run: Runner, scripted_server: type[ScriptedServer]) -> None:
    server = scripted_server()
    run.write_config(f"identity *@alice.example\n  hostname {server.hostport}\n  helo client.%D\n")
    result = run("-f", "me@alice.example", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert server.commands[0] == "EHLO client.alice.example"
    assert b"@client.alice.example>" in server.messages[0].data  # the Message-ID's domain too


# ---- properties --------------------------------------------------------------------------------------------------

_LOCAL = st.text(alphabet="ab+.", min_size=1, max_size=5)
_DOMAIN = st.sampled_from(["x.org", "y.org", "X.org"])
_ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", _LOCAL, _DOMAIN)
_PATTERN = st.builds(lambda local, domain: f"{local}@{domain}",
                     st.text(alphabet="ab+*?", min_size=1, max_size=5), st.sampled_from(["x.org", "y.org", "*"]))


def _reference(pattern: str, address: str) -> bool:
    local, _, domain = address.rpartition("@")
    plocal, _, pdomain = pattern.rpartition("@")
    return fnmatch.fnmatchcase(f"{local}@{domain.lower()}", f"{plocal}@{pdomain.lower()}")


@given(_PATTERN, _ADDRESS)
def test_patterns_match_as_fnmatch_does_with_the_domain_in_any_case(pattern: str, address: str) -> None:
    assert matches(pattern, address) == _reference(pattern, address)


@given(st.lists(st.lists(st.one_of(_PATTERN, _ADDRESS), min_size=1, max_size=3), min_size=1, max_size=4), _ADDRESS)
def test_the_chosen_identity_is_a_most_specific_match_and_ties_are_refused(
        blocks: list[list[str]], sender: str) -> None:
    text = "".join(f"identity {', '.join(addresses)}\n  helo block{index}\n" for index, addresses in enumerate(blocks))
    try:
        config = parsed(text)
    except ConfigError as error:
        # A tie: two blocks have different, equally specific patterns with a common match (which the error shows).
        witness = str(error).split("such as ")[1].split(")")[0]
        named = sorted({p for addresses in blocks for p in addresses if f"'identity {p}'" in str(error)})
        assert len(named) == 2 and all(_reference(p, witness) for p in named)
        assert weight(named[0]) == weight(named[1])
        return
    candidates = [(weight(p), index) for index, addresses in enumerate(blocks) for p in addresses
                  if (matches(p, sender))]
    chosen = choose_identity(config, sender).identity
    if not candidates:
        assert chosen is config.default
        return
    best = max(score for score, _ in candidates)
    assert chosen.helo in {f"block{index}" for score, index in candidates if score == best}
