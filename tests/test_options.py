"""The sendmail command line: every flag, every real caller's argv (peers survey §4), every error message."""

from __future__ import annotations

from typing import Any

import pytest

from esmtp.errors import EX_USAGE, UsageError
from esmtp.options import Options, parse_args


def parse(*words: str, prog: str = "sendmail") -> Options:
    return parse_args([prog, *words])


def usage_error(*words: str, prog: str = "sendmail") -> str:
    with pytest.raises(UsageError) as info:
        parse(*words, prog=prog)
    assert info.value.exit_code == EX_USAGE
    return str(info.value)


def fields(opts: Options, **expected: Any) -> None:
    """Assert the given fields; every field not named must keep its default."""
    default = Options(mode=opts.mode)
    for name in Options.__dataclass_fields__:
        want = expected.get(name, getattr(default, name))
        assert getattr(opts, name) == want, name


# --- real callers, verbatim --------------------------------------------------------------------------------------

CALLERS: list[tuple[str, list[str], dict[str, Any]]] = [
    (
        "neomutt/mutt full",
        ["/usr/sbin/sendmail", "-oem", "-oi", "-B8BITMIME", "-f", "me@example.org", "-N", "failure,delay",
         "-R", "hdrs", "--", "to@example.net", "cc@example.net", "bcc@example.net"],
        dict(sender="me@example.org", body_type="8BITMIME", notify="FAILURE,DELAY", ret="HDRS",
             recipients=["to@example.net", "cc@example.net", "bcc@example.net"], ignored=["-oem"]),
    ),
    (
        "mutt default",
        ["/usr/sbin/sendmail", "-oem", "-oi", "--", "to@example.net"],
        dict(recipients=["to@example.net"], ignored=["-oem"]),
    ),
    (
        "git send-email (no --)",
        ["/usr/sbin/sendmail", "-i", "-f", "dev@example.org", "r1@example.net", "r2@example.net"],
        dict(sender="dev@example.org", recipients=["r1@example.net", "r2@example.net"]),
    ),
    (
        "git send-email, no envelope sender",
        ["/usr/sbin/sendmail", "-i", "r1@example.net"],
        dict(recipients=["r1@example.net"]),
    ),
    (
        "cronie",
        ["/usr/sbin/sendmail", "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "user"],
        dict(full_name="CronDaemon", read_recipients=True, sender="user", ignored=["-odi", "-oem"]),
    ),
    (
        "Debian cron",
        ["/usr/sbin/sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        dict(full_name="CronDaemon", body_type="8BITMIME", recipients=["root"], ignored=["-oem"]),
    ),
    ("PHP mail()", ["/usr/sbin/sendmail", "-t", "-i"], dict(read_recipients=True)),
    (
        "PHP mail() with 5th argument",
        ["/usr/sbin/sendmail", "-t", "-i", "-f", "www@example.org"],
        dict(read_recipients=True, sender="www@example.org"),
    ),
    (
        "PHP mail() with glued 5th argument",
        ["/usr/sbin/sendmail", "-t", "-i", "-fwww@example.org"],
        dict(read_recipients=True, sender="www@example.org"),
    ),
    (
        "s-nail",
        ["sendmail", "-i", "-m", "-v", "-F", "Jane Doe", "-f", "jane@example.org", "--", "rcpt@example.net"],
        dict(verbose=1, full_name="Jane Doe", sender="jane@example.org", recipients=["rcpt@example.net"],
             ignored=["-m"]),
    ),
    (
        "bsd-mailx",
        ["sendmail", "-i", "rcpt@example.net"],
        dict(recipients=["rcpt@example.net"]),
    ),
    (
        "GNU mailutils",
        ["/usr/sbin/sendmail", "-oi", "-f", "u@h.example", "-t"],
        dict(sender="u@h.example", read_recipients=True),
    ),
    ("logwatch", ["/usr/sbin/sendmail", "-t"], dict(read_recipients=True)),
    ("mdadm", ["/usr/sbin/sendmail", "-t"], dict(read_recipients=True)),
    ("unattended-upgrades / Python scripts", ["/usr/sbin/sendmail", "-oi", "-t"], dict(read_recipients=True)),
    (
        "anacron",
        ["/usr/sbin/sendmail", "-FAnacron", "-odi", "root"],
        dict(full_name="Anacron", recipients=["root"], ignored=["-odi"]),
    ),
    ("atd", ["/usr/sbin/sendmail", "-i", "user"], dict(recipients=["user"])),
]


@pytest.mark.parametrize(("argv", "expected"), [(c[1], c[2]) for c in CALLERS], ids=[c[0] for c in CALLERS])
def test_real_callers(argv: list[str], expected: dict[str, Any]) -> None:
    opts = parse_args(argv)
    assert opts.mode == "deliver"
    fields(opts, **expected)


def test_neomutt_user_words_after_its_double_dash_are_recipients() -> None:
    opts = parse_args(["sendmail", "-oem", "-oi", "-f", "me@x.example", "--", "-weird@x.example", "b@y.example"])
    assert opts.recipients == ["-weird@x.example", "b@y.example"]


# --- program names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prog", "mode"),
    [
        ("mailq", "mailq"),
        ("/usr/bin/mailq", "mailq"),
        ("./mailq", "mailq"),
        ("newaliases", "newaliases"),
        ("/usr/bin/newaliases", "newaliases"),
        ("deliver", "flush"),
        ("/usr/local/bin/deliver", "flush"),
    ],
)
def test_program_name_selects_mode(prog: str, mode: str) -> None:
    opts = parse(prog=prog)
    assert opts.mode == mode
    assert opts.recipients == []


@pytest.mark.parametrize("prog", ["sendmail", "/usr/sbin/sendmail", "esmtp", "/usr/bin/esmtp", "mail-sender", ""])
def test_other_program_names_behave_as_sendmail(prog: str) -> None:
    assert parse("bob@example.net", prog=prog).mode == "deliver"
    assert usage_error(prog=prog) == "Recipient names must be specified"


def test_empty_argv_behaves_as_sendmail() -> None:
    with pytest.raises(UsageError, match="Recipient names must be specified"):
        parse_args([])


def test_mailq_dash_q_flushes() -> None:
    assert parse("-q", prog="/usr/bin/mailq").mode == "flush"


def test_last_mode_option_wins() -> None:
    assert parse("-bp", prog="newaliases").mode == "mailq"
    assert parse("-bm", "bob@x.example", prog="mailq").mode == "deliver"
    assert parse("-bp", "-bm", "bob@x.example").mode == "deliver"
    assert parse("-q", "-bp").mode == "mailq"


def test_mailq_and_newaliases_ignore_operands() -> None:
    opts = parse("bob@example.net", prog="mailq")
    fields(opts, mode="mailq", ignored=["bob@example.net"])
    assert parse("-bi", "x").mode == "newaliases"
    assert parse("-I").mode == "newaliases"


# --- option syntax: glued, separate, grouped, permuted, after -- ---------------------------------------------------

WITH_ARGUMENT: list[tuple[str, str, dict[str, Any]]] = [
    ("f", "a@example.org", dict(sender="a@example.org")),
    ("r", "a@example.org", dict(sender="a@example.org")),
    ("F", "Full Name", dict(full_name="Full Name")),
    ("N", "success", dict(notify="SUCCESS")),
    ("R", "full", dict(ret="FULL")),
    ("V", "envid42", dict(envid="envid42")),
    ("B", "7BIT", dict(body_type="7BIT")),
    ("C", "/etc/other.rc", dict(config_file="/etc/other.rc")),
    ("X", "/tmp/trace.log", dict(transcript="/tmp/trace.log")),
    ("b", "m", dict()),
]
IGNORED_WITH_ARGUMENT = ["A", "d", "e", "h", "L", "M", "o", "O", "p"]


@pytest.mark.parametrize(("letter", "value", "expected"), WITH_ARGUMENT, ids=[w[0] for w in WITH_ARGUMENT])
@pytest.mark.parametrize("style", ["separate", "glued", "grouped", "after-recipient"])
def test_options_with_argument(letter: str, value: str, expected: dict[str, Any], style: str) -> None:
    argv = {
        "separate": [f"-{letter}", value, "bob@example.net"],
        "glued": [f"-{letter}{value}", "bob@example.net"],
        "grouped": [f"-v{letter}", value, "bob@example.net"],
        "after-recipient": ["bob@example.net", f"-{letter}", value],
    }[style]
    opts = parse(*argv)
    extra = {"verbose": 1} if style == "grouped" else {}
    fields(opts, recipients=["bob@example.net"], **expected, **extra)


@pytest.mark.parametrize("letter", [w[0] for w in WITH_ARGUMENT])
def test_options_after_double_dash_are_recipients(letter: str) -> None:
    opts = parse("bob@example.net", "--", f"-{letter}x@y.example", "-t")
    fields(opts, recipients=["bob@example.net", f"-{letter}x@y.example", "-t"])


@pytest.mark.parametrize("letter", IGNORED_WITH_ARGUMENT)
def test_ignored_options_with_argument(letter: str) -> None:
    fields(parse(f"-{letter}", "x1", "bob@example.net"), recipients=["bob@example.net"], ignored=[f"-{letter} x1"])
    fields(parse(f"-{letter}x1", "bob@example.net"), recipients=["bob@example.net"], ignored=[f"-{letter}x1"])
    fields(parse("bob@example.net", f"-t{letter}x1"), recipients=["bob@example.net"], read_recipients=True,
           ignored=[f"-{letter}x1"])


@pytest.mark.parametrize("letter", ["c", "G", "m", "n", "s", "T", "U", "x"])
def test_ignored_flags(letter: str) -> None:
    fields(parse(f"-{letter}", "bob@example.net"), recipients=["bob@example.net"], ignored=[f"-{letter}"])
    fields(parse("bob@example.net", f"-i{letter}t"), recipients=["bob@example.net"], read_recipients=True,
           ignored=[f"-{letter}"])


def test_O_is_accepted_and_ignored() -> None:
    """esmtp 1.2 rejected -O although its manual said "ignored" (E2)."""
    fields(parse("-O", "DeliveryMode=b", "bob@x.example"), recipients=["bob@x.example"], ignored=["-O DeliveryMode=b"])


@pytest.mark.parametrize("argv", [["-i"], ["-oi"], ["-o", "i"], ["-ti"], ["-it"]])
def test_dash_i_spellings_are_accepted_silently(argv: list[str]) -> None:
    opts = parse(*argv, "-t")
    fields(opts, read_recipients=True)


@pytest.mark.parametrize(("argv", "verbose"), [(["-v"], 1), (["-vv"], 2), (["-v", "-v", "-v"], 3), (["-vtv"], 2)])
def test_verbose_counts(argv: list[str], verbose: int) -> None:
    assert parse(*argv, "bob@x.example").verbose == verbose


def test_grouped_flags_end_at_an_option_with_argument() -> None:
    opts = parse("-tif", "a@x.example")
    fields(opts, read_recipients=True, sender="a@x.example")
    opts = parse("-tifa@x.example")
    fields(opts, read_recipients=True, sender="a@x.example")
    # "it" is -o's argument, not -i -t: so there is no -t and a recipient is needed.
    fields(parse("-oit", "b@x.example"), ignored=["-oit"], recipients=["b@x.example"])
    assert usage_error("-oit") == "Recipient names must be specified"


def test_an_option_argument_is_never_a_recipient() -> None:
    # Like getopt: the word after a flag that takes an argument is that argument, whatever it looks like.
    fields(parse("-f", "-t", "bob@x.example"), sender="-t", recipients=["bob@x.example"])
    fields(parse("-F", "--", "bob@x.example"), full_name="--", recipients=["bob@x.example"])
    fields(parse("-f", "bob@x.example", "-t"), sender="bob@x.example", read_recipients=True)


def test_last_sender_wins() -> None:
    assert parse("-f", "first@x.example", "-r", "second@x.example", "b@y.example").sender == "second@x.example"


def test_double_dash_ends_options() -> None:
    opts = parse("-t", "--", "-f", "--", "--version")
    fields(opts, read_recipients=True, recipients=["-f", "--", "--version"])


def test_single_dash_is_an_operand() -> None:
    assert parse("-").recipients == ["-"]


# --- sender (-f / -r) ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sender"),
    [
        ("a@b.example", "a@b.example"),
        ("<a@b.example>", "a@b.example"),
        (" <a@b.example> ", "a@b.example"),
        ("Cron Daemon <root@h.example>", "root@h.example"),
        ("root", "root"),
        ("", ""),
        ("<>", ""),
        (" < > ", ""),
        ('"john doe"@x.example', '"john doe"@x.example'),
    ],
)
def test_sender_forms(value: str, sender: str) -> None:
    assert parse("-f", value, "-t").sender == sender
    assert parse("-r", value, "-t").sender == sender


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a@x.example,b@y.example", "option -f takes exactly one address, not 'a@x.example,b@y.example'"),
        ("a b", "invalid sender address (-f) 'a b'"),
        ("<<a@b.example>>", "invalid sender address (-f) '<<a@b.example>>'"),
        ("a@x.example\r\nRCPT TO:<e@x>", "sender address (-f) contains a line break: 'a@x.example\\r\\nRCPT TO:<e@x>'"),
        ("a@x.example\0", "sender address (-f) contains a NUL byte: 'a@x.example\\x00'"),
        ("a@x.example\x0b", "sender address (-f) contains a control character: 'a@x.example\\x0b'"),
        # A TAB is refused wherever it is, never squeezed out of the address with the blanks around it.
        ("a\tb@example.org", "sender address (-f) contains a control character: 'a\\tb@example.org'"),
        ("..\t`@!$", "sender address (-f) contains a control character: '..\\t`@!$'"),
        ("bad@@x", "invalid sender address (-f) 'bad@@x'"),
        ("a@x y", "invalid sender address (-f) 'a@x y'"),
        ("a..b@x.example", "invalid sender address (-f) 'a..b@x.example': the address has a local part that is not a "
                           "dot-atom: 'a..b' (quote it)"),
        ('a""', "invalid sender address (-f) 'a\"\"'"),
    ],
)
def test_bad_senders(value: str, message: str) -> None:
    assert usage_error("-f", value, "-t") == message


# --- recipients ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "recipients"),
    [
        (["Bob <b@x.example>"], ["b@x.example"]),
        (["a@x.example,b@y.example"], ["a@x.example", "b@y.example"]),
        (["a@x.example, b@y.example,"], ["a@x.example", "b@y.example"]),
        (['"Doe, Jane" <jane@x.example>, c@d.example'], ["jane@x.example", "c@d.example"]),
        (["a@b.example (Bob)"], ["a@b.example"]),
        ([" bob@x.example "], ["bob@x.example"]),
        (["root"], ["root"]),
        (['"john doe"@x.example'], ['"john doe"@x.example']),
        (["user@[192.0.2.1]"], ["user@[192.0.2.1]"]),
        (["björn@exämple.org"], ["björn@exämple.org"]),
        (["c@x.example", "a@x.example", "b@x.example"], ["c@x.example", "a@x.example", "b@x.example"]),
        (["a@x.example", "a@x.example"], ["a@x.example", "a@x.example"]),
    ],
)
def test_recipient_forms(words: list[str], recipients: list[str]) -> None:
    assert parse(*words).recipients == recipients


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("", "empty recipient address ''"),
        ("  ", "empty recipient address '  '"),
        (",", "empty recipient address ','"),
        ("<>", "empty recipient address in '<>'"),
        ("a b", "invalid recipient address 'a b'"),
        ("root admin", "invalid recipient address 'root admin'"),
        ("a<b", "invalid recipient address 'a<b'"),
        ("a>b", "invalid recipient address 'a>b'"),
        ("Bob <b@x.example", "invalid recipient address 'Bob <b@x.example'"),
        ("<b@x.example> c", "invalid recipient address '<b@x.example> c'"),
        ("a@b@c", "invalid recipient address 'a@b@c'"),
        ("@x.example", "invalid recipient address '@x.example'"),
        ("x@", "invalid recipient address 'x@'"),
        ('"unterminated@x', "invalid recipient address '\"unterminated@x': unterminated quote or comment"),
        ("a@x.example (comment", "invalid recipient address 'a@x.example (comment': unterminated quote or comment"),
    ],
)
def test_bad_recipients(word: str, message: str) -> None:
    assert usage_error("ok@x.example", word) == message


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("bob@x.example\nBcc: victim@y.example", "a line break"),
        ("bob@x.example\r", "a line break"),
        ("bob@x.example\rRCPT TO:<x@y>", "a line break"),
        ("bob@x.example\0", "a NUL byte"),
        ("bob@x.example\x1b", "a control character"),
        ("bob@x.example\u2028", "a control character"),
        ("bob@x.example\x85", "a control character"),
    ],
)
def test_recipient_injection_is_rejected(word: str, kind: str) -> None:
    assert usage_error(word) == f"recipient address contains {kind}: {word!r}"


@pytest.mark.parametrize("name", ["Cron\nBcc: x@y", "Cron\r", "Cron\0"])
def test_full_name_injection_is_rejected(name: str) -> None:
    message = usage_error("-F", name, "-t")
    assert message.startswith("full name (-F) contains a ")


def test_full_name_may_be_empty_or_unicode() -> None:
    assert parse("-F", "", "-t").full_name == ""
    assert parse("-F", "Jürgen Ä. Doe", "-t").full_name == "Jürgen Ä. Doe"


def test_recipients_are_not_required_with_t() -> None:
    fields(parse("-t"), read_recipients=True)


def test_command_line_recipients_are_kept_with_t() -> None:
    fields(parse("-t", "extra@x.example"), read_recipients=True, recipients=["extra@x.example"])


def test_no_recipients_is_a_usage_error() -> None:
    assert usage_error() == "Recipient names must be specified"
    assert usage_error("-f", "a@b.example", "-oi") == "Recipient names must be specified"


# --- -N, -R, -B, -V ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "notify"),
    [
        ("never", "NEVER"),
        ("NEVER", "NEVER"),
        ("Never", "NEVER"),
        ("success", "SUCCESS"),
        ("failure,delay", "FAILURE,DELAY"),
        ("delay,success", "SUCCESS,DELAY"),
        ("DELAY,Failure,success", "SUCCESS,FAILURE,DELAY"),
        ("failure, delay", "FAILURE,DELAY"),
        ("failure,failure", "FAILURE"),
    ],
)
def test_notify_normalisation(value: str, notify: str) -> None:
    assert parse("-N", value, "b@x.example").notify == notify
    assert parse(f"-N{value}", "b@x.example").notify == notify


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus", "invalid -N value 'bogus': use never, or a list of success, failure, delay"),
        ("success,bogus", "invalid -N value 'bogus': use never, or a list of success, failure, delay"),
        ("never,success", "-N never cannot be combined with success, failure or delay"),
        ("", "option -N requires never or a comma-separated list of success, failure, delay"),
        (",", "option -N requires never or a comma-separated list of success, failure, delay"),
    ],
)
def test_bad_notify(value: str, message: str) -> None:
    assert usage_error("-N", value, "b@x.example") == message


@pytest.mark.parametrize(("value", "ret"), [("full", "FULL"), ("FULL", "FULL"), ("hdrs", "HDRS"), ("Hdrs", "HDRS")])
def test_ret_normalisation(value: str, ret: str) -> None:
    assert parse("-R", value, "b@x.example").ret == ret


def test_ret_last_wins_instead_of_or_ing() -> None:
    """esmtp 1.2 OR-ed the values and sent RET=(null) (E14)."""
    assert parse("-R", "full", "-R", "hdrs", "b@x.example").ret == "HDRS"


@pytest.mark.parametrize("value", ["bogus", "", "headers"])
def test_bad_ret(value: str) -> None:
    assert usage_error("-R", value, "b@x.example") == f"invalid -R value {value!r}: use full or hdrs"


@pytest.mark.parametrize(
    ("value", "body"), [("7BIT", "7BIT"), ("7bit", "7BIT"), ("8BITMIME", "8BITMIME"), ("8bitmime", "8BITMIME")]
)
def test_body_type_normalisation(value: str, body: str) -> None:
    assert parse("-B", value, "b@x.example").body_type == body


@pytest.mark.parametrize("value", ["BINARYMIME", "8bit", ""])
def test_bad_body_type(value: str) -> None:
    assert usage_error("-B", value, "b@x.example") == f"Unsupported body type {value}"


@pytest.mark.parametrize("envid", ["myenvid", "m+x=y z", "id+x", "pqr", "envid", "abc", "sss", "<20260101.x@h>"])
def test_envid_has_no_mode_fall_through(envid: str) -> None:
    """esmtp 1.2 read -V's first character as a -b mode (E1): "pqr" listed the queue, "envid" failed."""
    fields(parse("-V", envid, "b@x.example"), envid=envid, recipients=["b@x.example"])


@pytest.mark.parametrize("envid", ["caf\u00e9", "a\tb", "a\nb", "a\0b", "a\x7fb"])
def test_envid_must_be_printable_ascii(envid: str) -> None:
    assert usage_error("-V", envid, "b@x.example") == (
        f"invalid -V envelope id {envid!r}: only printable ASCII characters are allowed"
    )


def test_envid_must_not_be_empty() -> None:
    assert usage_error("-V", "", "b@x.example") == "option -V requires a non-empty envelope id"


# --- files ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("letter", ["C", "X"])
def test_file_options_reject_empty_and_nul(letter: str) -> None:
    assert usage_error(f"-{letter}", "", "b@x.example") == f"option -{letter} requires a file name"
    assert usage_error(f"-{letter}", "a\0b", "b@x.example") == f"file name for -{letter} contains a NUL byte"


def test_file_options_last_wins_and_keep_relative_paths() -> None:
    opts = parse("-C", "first.rc", "-Csecond.rc", "-X", "log1", "-Xlog2", "b@x.example")
    fields(opts, config_file="second.rc", transcript="log2", recipients=["b@x.example"])


# --- -b modes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["-bm", "b@x.example"], "deliver"),
        (["-b", "m", "b@x.example"], "deliver"),
        (["-bp"], "mailq"),
        (["-b", "p"], "mailq"),
        (["-bi"], "newaliases"),
        (["-bpx"], "mailq"),  # esmtp 1.2's first-character rule
    ],
)
def test_b_modes(argv: list[str], mode: str) -> None:
    assert parse(*argv).mode == mode


def test_bs_is_an_smtp_dialogue_that_needs_no_recipients() -> None:
    assert parse("-bs").mode == "smtp"
    assert parse("-b", "s").mode == "smtp"
    # Symfony Mailer may add -f; words that are not options mean nothing: the dialogue gives the envelope.
    options = parse("-bs", "-f", "a@example.org", "b@example.net")
    assert (options.mode, options.recipients, options.ignored) == ("smtp", [], ["b@example.net"])


@pytest.mark.parametrize("letter", list("adDhHlPtv"))
def test_unsupported_b_modes(letter: str) -> None:
    assert usage_error(f"-b{letter}", "b@x.example") == f"Unsupported operation mode -b{letter}"


@pytest.mark.parametrize("word", ["z", "", "X", "1"])
def test_invalid_b_modes(word: str) -> None:
    assert usage_error("-b", word, "b@x.example") == f"Invalid operation mode -b{word}"


# --- -q and the queue ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "queue_ids", "ignored"),
    [
        (["-q"], [], []),
        (["-qf"], [], []),
        (["-q30m"], [], ["-q30m"]),
        (["-q1h"], [], ["-q1h"]),
        (["-qRexample.net"], [], ["-qRexample.net"]),
        (["-qSsender"], [], ["-qSsender"]),
        (["-qIABC123"], ["ABC123"], []),
        (["-qIa", "-qIb"], ["a", "b"], []),
        (["-vq"], [], []),
    ],
)
def test_q_forms(argv: list[str], queue_ids: list[str], ignored: list[str]) -> None:
    opts = parse(*argv)
    assert (opts.mode, opts.queue_ids, opts.ignored) == ("flush", queue_ids, ignored)


def test_bare_q_does_not_swallow_the_next_word() -> None:
    """esmtp 1.2 needed an argument, so ``-q bob@x`` ate the word and exited 0 (E3). Here it is a queue id."""
    opts = parse("-q", "ABC123")
    assert (opts.mode, opts.queue_ids, opts.recipients) == ("flush", ["ABC123"], [])


def test_q_takes_the_rest_of_a_group() -> None:
    assert parse("-qv").ignored == ["-qv"]
    assert parse("-qv").verbose == 0


def test_qI_needs_an_id() -> None:
    assert usage_error("-qI") == "option -qI requires a queue id"


@pytest.mark.parametrize(
    ("argv", "mode", "ids"),
    [
        (["--flush"], "flush", []),
        (["--flush", "id1", "id2"], "flush", ["id1", "id2"]),
        (["id1", "--flush"], "flush", ["id1"]),
        (["--flush", "-v", "id1"], "flush", ["id1"]),
        (["--remove", "id1"], "remove", ["id1"]),
        (["--remove", "id1", "id2", "-v"], "remove", ["id1", "id2"]),
        (["--remove", "--", "-odd-id"], "remove", ["-odd-id"]),
    ],
)
def test_flush_and_remove(argv: list[str], mode: str, ids: list[str]) -> None:
    opts = parse(*argv)
    assert (opts.mode, opts.queue_ids, opts.recipients) == (mode, ids, [])


def test_deliver_program_takes_ids() -> None:
    opts = parse("id1", prog="deliver")
    assert (opts.mode, opts.queue_ids) == ("flush", ["id1"])


def test_remove_needs_an_id() -> None:
    assert usage_error("--remove") == "--remove requires at least one queue id"
    assert usage_error("--remove", "-v") == "--remove requires at least one queue id"


@pytest.mark.parametrize("qid", ["", ".", "..", "../etc", "a/b", "a b", "a\nb"])
def test_bad_queue_ids(qid: str) -> None:
    assert usage_error("--remove", qid) == f"invalid queue id {qid!r}"


# --- long options --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("word", "mode"), [("--version", "version"), ("--help", "help")])
def test_version_and_help(word: str, mode: str) -> None:
    assert parse(word).mode == mode
    assert parse(word, prog="/usr/bin/mailq").mode == mode
    assert parse("-v", word).mode == mode


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["--vers"], "unknown option --vers"),
        (["--version=1"], "option --version does not take an argument"),
        (["--remove=ID"], "option --remove does not take an argument"),
        (["-z", "b@x.example"], "unknown option -z"),
        (["-tz", "b@x.example"], "unknown option -z"),
        (["b@x.example", "-D"], "unknown option -D"),
        (["-?"], "unknown option -?"),
    ],
)
def test_unknown_options(argv: list[str], message: str) -> None:
    assert usage_error(*argv) == message


@pytest.mark.parametrize("letter", sorted("ABbCdeFfhLMNOopRrVX"))
def test_missing_argument(letter: str) -> None:
    assert usage_error("b@x.example", f"-{letter}") == f"option -{letter} requires an argument"
    assert usage_error("b@x.example", f"-t{letter}") == f"option -{letter} requires an argument"


@pytest.mark.parametrize(
    ("argv", "mode", "identity", "device"),
    [
        (["esmtp", "--store-password"], "store-password", None, False),
        (["esmtp", "--store-password", "--identity", "me@example.org"], "store-password", "me@example.org", False),
        (["esmtp", "--oauth2-login", "--identity=me@example.org"], "oauth2-login", "me@example.org", False),
        (["esmtp", "--device", "--oauth2-login"], "oauth2-login", None, True),
    ],
)
def test_credential_commands(argv: list[str], mode: str, identity: str | None, device: bool) -> None:
    opts = parse_args(argv)
    assert (opts.mode, opts.identity, opts.device) == (mode, identity, device)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["esmtp", "--oauth2-login", "--identity"], "option --identity requires an argument"),
        (["esmtp", "--identity", "x@example.org", "-bp"], "--identity goes with a send"),
        (["esmtp", "--store-password", "--device"], "--device goes with --oauth2-login"),
        (["esmtp", "--oauth2-login", "--device=yes"], "option --device does not take an argument"),
    ],
)
def test_credential_command_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


# --- the front end's scan (esmtp.front) agrees with the parser ------------------------------------------------------

#: Arguments that the front end's scan could mistake for a mode or a configuration file if it split them wrongly.
_TRICKY = ["bp", "bm", "bs", "Cfile", "-bp", "-Cother", "qI1", "x@example.org"]


def test_front_end_option_table_is_the_parsers() -> None:
    """esmtp.front cannot import esmtp.options (start-up cost), so it keeps a copy of the table: the same letters."""
    from esmtp import front, options

    assert set(front._WITH_ARGUMENT) == options._WITH_ARGUMENT


@pytest.mark.parametrize("letter", sorted("aABbCdeFfhLMNOopRrVXcGIimnsTtUvxq"))
def test_front_end_scan_agrees_with_the_parser_glued_and_apart(letter: str) -> None:
    """For every option, glued to its argument or apart from it: when the parser accepts the command, the front
    end hands over the mode and ``-C`` file the parser found, or runs the command here (None); never another one.
    (``-abpx@example.org`` was once read as ``-bp``: the message went out empty through the warm relay.)"""
    from esmtp.front import scan_argv

    for argument in _TRICKY:
        for words in ([f"-{letter}{argument}", "rcpt@example.net"], [f"-{letter}", argument, "rcpt@example.net"]):
            argv = ["sendmail", *words]
            try:
                opts = parse_args(argv)
            except UsageError:
                continue
            scanned = scan_argv(argv)
            if scanned is None:
                continue  # run here: always right
            assert opts.mode in ("deliver", "mailq"), argv
            assert scanned == (opts.mode, opts.config_file), argv
