"""The MDA plugin: command building (no shell injection), real MDA subprocesses, exit statuses.

The procmail/maildrop/formail stand-ins are small scripts that behave like the real programs as far as esmtp can see
(arguments, standard input, mailbox files, exit status); the cat-style MDAs are the real ``cat`` under ``/bin/sh``.
"""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from esmtp_plugins.mda import MdaCommand, lf_chunks
from support import Runner

from esmtp.errors import ConfigError

MESSAGE = b"From: Alice <alice@example.org>\nTo: bob\nSubject: local\n\nHello Bob.\n"

# A procmail look-alike: "procmail [-f sender] -d user...": appends the message to $HOME/Mail/<user> (mbox, with a
# From_ line as procmail writes) and logs its argv and stdin to $HOME/mda-calls.jsonl. Exits with $FAKE_MDA_EXIT.
FAKE_MDA = """\
import json, os, sys, time
args = sys.argv[1:]
sender, users = "MAILER-DAEMON", []
i = 0
while i < len(args):
    if args[i] == "-f":
        sender = args[i + 1] or "MAILER-DAEMON"
        i += 2
    elif args[i] == "-d":
        users = args[i + 1:]
        break
    else:
        i += 1
data = sys.stdin.buffer.read()
home = os.environ["HOME"]
with open(os.path.join(home, "mda-calls.jsonl"), "a") as log:
    record = {"prog": os.path.basename(sys.argv[0]), "argv": args, "stdin": data.decode("latin-1")}
    log.write(json.dumps(record) + "\\n")
os.makedirs(os.path.join(home, "Mail"), exist_ok=True)
for user in users:
    with open(os.path.join(home, "Mail", user.replace("/", "_")), "ab") as box:
        box.write(f"From {sender} {time.asctime()}\\n".encode() + data.replace(b"\\nFrom ", b"\\n>From ") + b"\\n")
sys.exit(int(os.environ.get("FAKE_MDA_EXIT", "0")))
"""

# formail -a "Header: value": adds the header when the message lacks it (what the README's pipeline relies on).
FAKE_FORMAIL = """\
import sys
args = sys.argv[1:]
data = sys.stdin.buffer.read()
head, sep, body = data.partition(b"\\n\\n")
for flag, field in zip(args[::2], args[1::2]):
    name = field.split(":", 1)[0].lower().encode()
    if flag == "-a" and not any(line.lower().startswith(name + b":") for line in head.split(b"\\n")):
        head += b"\\n" + field.encode()
sys.stdout.buffer.write(head + sep + body)
"""


def install_script(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return path


def fake_bin(run: Runner) -> Path:
    """$HOME/bin with procmail, maildrop, deliver and formail stand-ins."""
    directory = run.home / "bin"
    for name in ("procmail", "maildrop", "deliver"):
        install_script(directory, name, FAKE_MDA)
    install_script(directory, "formail", FAKE_FORMAIL)
    return directory


def path_env(run: Runner, **extra: str) -> dict[str, str]:
    """The runner's environment with the stand-ins first on PATH, as they would be in /usr/bin."""
    return run.env(PATH=f"{fake_bin(run)}:{os.environ.get('PATH', '/usr/bin:/bin')}", **extra)


def calls(run: Runner) -> list[dict[str, Any]]:
    log = run.home / "mda-calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def mailbox_messages(run: Runner, user: str) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(run.home / "Mail" / user, create=False)
    try:
        return list(box)
    finally:
        box.close()


def mda_config(mda: str, extra: str = "") -> str:
    """An esmtprc with an MDA and no reachable server. The value is single-quoted with esmtprc's C-style escapes."""
    quoted = mda.replace("\\", "\\\\").replace("'", "\\x27")
    return f"hostname 127.0.0.1:9\nmda '{quoted}'\n{extra}"


# --------------------------------------------------------------------------------------------------------------------
# Building the command
# --------------------------------------------------------------------------------------------------------------------

EVIL = [
    "x;touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b",
    'q"uote',
    "it's \"both\"",
    "x|touch PWNED",
    "x&&touch PWNED",
    "back\\slash",
    "$HOME",
    "*",
    "~root",
    "a\tb c",
    "#comment",
    "'",
    "",
]


@pytest.mark.parametrize(
    ("template", "shell", "argv"),
    [
        ("procmail -d %T", False, ["procmail", "-d", "alice", "bob"]),
        ("/usr/bin/procmail -f %F -d %T", False, ["/usr/bin/procmail", "-f", "s@x", "-d", "alice", "bob"]),
        ("maildrop -d %T", False, ["maildrop", "-d", "alice", "bob"]),
        ("/usr/lib/mail.local %T", False, ["/usr/lib/mail.local", "alice", "bob"]),
        ("/usr/bin/deliver", False, ["/usr/bin/deliver"]),
        ("procmail -d '%T'", False, ["procmail", "-d", "alice", "bob"]),
        ('mda --to="%T" --from=%F', False, ["mda", "--to=alice bob", "--from=s@x"]),
        ("mda 50%% %s %X", False, ["mda", "50%%", "%s", "%X"]),
        ("mda \\%T", False, ["mda", "%T"]),
    ],
)
def test_readme_forms_run_without_a_shell(template: str, shell: bool, argv: list[str]) -> None:
    command = MdaCommand.parse(template)
    assert command.needs_shell is shell
    assert command.argv(["alice", "bob"], "s@x") == argv


@pytest.mark.parametrize(
    "template",
    [
        "/usr/bin/formail -a \"Date: `date -R`\" | /usr/bin/procmail -d %T",
        "cat > /tmp/out-%T",
        "MDA_EXIT=3 mda %T",
        "kill -9 $$",
        "exec procmail -d %T",
        "procmail -d %T 2>/dev/null",
        "deliver %T; true",
        "cd ~ && deliver",
        "deliver *.box",
    ],
)
def test_shell_syntax_runs_under_sh(template: str) -> None:
    argv = MdaCommand.parse(template).argv(["alice"], "")
    assert argv[:2] == ["/bin/sh", "-c"]


@pytest.mark.parametrize("template", ["procmail -d 'alice", 'procmail -d "%T', "procmail -d %T \\", "", "   "])
def test_broken_commands_are_configuration_errors(template: str) -> None:
    with pytest.raises(ConfigError, match="mda"):
        MdaCommand.parse(template)


def _printed_args(argv: list[str], cwd: Path) -> list[str]:
    """Run argv (a command that prints each argument as [arg]) and parse what it printed."""
    out = subprocess.run(argv, cwd=cwd, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    text = out.decode()
    assert text.startswith("[") and text.endswith("]"), text
    return text[1:-1].split("][")


@pytest.mark.parametrize(
    ("template", "expect"),
    [
        # Placeholder as a whole word, unquoted and quoted; inside a word unquoted, in '…', in "…"; in a pipeline.
        ("printf [%%s] %T %F", lambda r, f: [*r, f]),
        ("printf [%%s] '%T' \"%F\"", lambda r, f: [*r, f]),
        ("printf [%%s] pre-%T-post x%Fy", lambda r, f: [f"pre-{' '.join(r)}-post", f"x{f}y"]),
        ("printf [%%s] 'in single %T quotes' 'and %F'", lambda r, f: [f"in single {' '.join(r)} quotes", f"and {f}"]),
        ('printf [%%s] "in double %T quotes" "and ${NOPE-unset} %F"',
         lambda r, f: [f"in double {' '.join(r)} quotes", f"and unset {f}"]),
        ("true | printf [%%s] %T %F", lambda r, f: [*r, f]),
        ("printf [%%s] a'b'%T\"c\"%F", lambda r, f: [f"ab{' '.join(r)}c{f}"]),
    ],
)
@pytest.mark.parametrize("through_shell", [False, True])
def test_injected_values_arrive_as_data(tmp_path: Path, template: str, expect: Any, through_shell: bool) -> None:
    """Every hostile value reaches the program as exactly the text it was, and nothing else runs."""
    template = template.replace("[%%s]", "'[%s]'")
    if through_shell:
        template += " | cat"  # the same command, now needing /bin/sh
    command = MdaCommand.parse(template)
    assert command.needs_shell is (through_shell or "|" in template or "$" in template)
    for value in EVIL:
        recipients = [value, "plain"]
        argv = command.argv(recipients, value)
        if not command.needs_shell:
            argv = ["/bin/sh", "-c", '"$0" "$@"', *argv]  # still run in tmp_path; proves nothing is re-parsed
        assert _printed_args(argv, tmp_path) == expect(recipients, value), (template, value)
    assert list(tmp_path.iterdir()) == []


def test_lf_chunks_converts_crlf_split_across_chunks() -> None:
    chunks = [b"A: 1\r", b"\nB: 2\r\n\r", b"\nbody\rnot a break\r\n", b"end\r"]
    assert b"".join(lf_chunks(chunks)) == b"A: 1\nB: 2\n\nbody\rnot a break\nend\r"


# --------------------------------------------------------------------------------------------------------------------
# Real MDA processes, through the installed sendmail command
# --------------------------------------------------------------------------------------------------------------------


def test_procmail_style_delivery_gets_the_fixed_up_message(run: Runner) -> None:
    run.write_config(mda_config("procmail -f %F -d %T"))
    cron = b"To: root\r\nSubject: Cron <root@host> backup\r\nBcc: secret@example.net\r\n\r\nbackup done\r\n"
    result = run("-f", "root@host.example", "root", "alice", input=cron, env=path_env(run))
    assert result.returncode == 0, result.stderr
    [call] = calls(run)
    assert call["argv"] == ["-f", "root@host.example", "-d", "root", "alice"]
    for user in ("root", "alice"):
        [message] = mailbox_messages(run, user)
        assert message.get_from().startswith("root@host.example ")
        assert message["Subject"] == "Cron <root@host> backup"
        assert message["Date"] and message["Message-ID"]  # the README's "no Date" gap is closed
        assert message["From"] == "root@host.example"
        assert message["Bcc"] is None
        assert message.get_payload() == "backup done\n"
    assert "\r" not in call["stdin"]  # LF line endings, as MDAs expect


def test_readme_formail_pipeline(run: Runner) -> None:
    run.write_config(mda_config('formail -a "Date: `date -R`" -a "X-Via: formail" | procmail -d %T'))
    result = run("alice", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    [message] = mailbox_messages(run, "alice")
    assert message["X-Via"] == "formail"
    assert len(message.get_all("Date") or []) == 1  # esmtp already added one; formail -a keeps it
    assert message.get_payload() == "Hello Bob.\n"


def test_maildrop_gets_one_argument_per_recipient(run: Runner) -> None:
    run.write_config(mda_config("maildrop -d %T"))
    result = run("bob", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert [(c["prog"], c["argv"]) for c in calls(run)] == [("maildrop", ["-d", "bob"])]
    assert not calls(run)[0]["stdin"].startswith("From ")  # maildrop refuses a leading From_ line


def test_cat_style_mda_under_the_shell(run: Runner) -> None:
    run.write_config(mda_config('cat >> "$HOME/inbox"'))
    result = run("-i", "bob", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    data = (run.home / "inbox").read_bytes()
    assert data.startswith(b"From: Alice <alice@example.org>\nTo: bob\nSubject: local\n")
    assert b"\nDate: " in data and b"\nMessage-ID: " in data
    assert data.endswith(b"\n\nHello Bob.\n")


def test_cat_style_mda_with_the_recipient_in_a_file_name(run: Runner) -> None:
    run.write_config(mda_config("cat > $HOME/out-%T"))
    result = run("bob", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert (run.home / "out-bob").read_bytes().endswith(b"Hello Bob.\n")


INJECTION_RECIPIENTS = ["x|touch${IFS}PWNED", "`touch${IFS}PWNED`", "a'b", "x&&touch${IFS}PWNED"]
INJECTION_HEADER = b'To: "x;touch PWNED", "$(touch PWNED)", "q\\"uote", "it\'s"\nSubject: x\n\nbody\n'


@pytest.mark.parametrize("mda", ["procmail -f %F -d %T", 'procmail -d %T 2>"$HOME/err"', "cat > $HOME/box-%T"])
def test_hostile_recipients_run_no_shell_code(run: Runner, mda: str) -> None:
    run.write_config(mda_config(mda))
    env = path_env(run)
    result = run("-t", "-f", "\"$(touch PWNED)\"@x", *INJECTION_RECIPIENTS, input=INJECTION_HEADER, env=env)
    assert result.returncode == 0, result.stderr
    expected = ['"x;touch PWNED"', '"$(touch PWNED)"', '"q\\"uote"', "it's", *INJECTION_RECIPIENTS]
    if mda.startswith("cat"):
        [box] = run.home.glob("box-*")
        assert box.name == "box-" + " ".join(expected)
    else:
        [call] = calls(run)
        assert call["argv"][-len(expected):] == expected
        if "-f" in call["argv"]:
            assert call["argv"][:2] == ["-f", "\"$(touch PWNED)\"@x"]
    # The proof: no PWNED anywhere the MDA or a shell could have created it.
    assert not list(run.home.rglob("PWNED")) and not Path("PWNED").exists()


def test_a_recipient_that_looks_like_an_option_is_refused(run: Runner) -> None:
    run.write_config(mda_config("procmail -d %T"))
    result = run("-t", input=b"To: -oQ/tmp\n\nbody\n", env=path_env(run))
    assert result.returncode == 65
    assert "local recipient '-oQ/tmp' starts with '-'" in result.stderr
    assert calls(run) == []


def test_f_empty_gives_an_empty_argument(run: Runner) -> None:
    run.write_config(mda_config("procmail -f %F -d %T"))
    result = run("-f", "", "bob", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert calls(run)[0]["argv"] == ["-f", "", "-d", "bob"]


def test_f_is_the_given_sender_only(run: Runner) -> None:
    """As esmtp 1.2: %F is -f (or the -t From:), not the identity's address or the computed default."""
    run.write_config(mda_config("procmail -f %F -d %T"))
    assert run("bob", input=MESSAGE, env=path_env(run)).returncode == 0
    assert run("-t", input=b"From: Carol <carol@example.org>\nTo: bob\n\nhi\n", env=path_env(run)).returncode == 0
    assert [c["argv"][:2] for c in calls(run)] == [["-f", ""], ["-f", "carol@example.org"]]


@pytest.mark.parametrize(
    ("mda", "code", "text"),
    [
        ("sh -c 'exit 3'", 71, "MDA `sh -c 'exit 3'` exited with status 3"),
        ("sh -c 'cat >/dev/null; exit 75'", 75, "exited with status 75 (a temporary failure)"),
        ("kill -9 $$", 71, "MDA `kill -9 $$` was killed by signal 9"),
        ("/nonexistent/procmail -d %T", 71, "cannot run the MDA `/nonexistent/procmail -d %T`: No such file"),
    ],
)
def test_mda_failures_are_reported(run: Runner, mda: str, code: int, text: str) -> None:
    run.write_config(mda_config(mda))
    result = run("bob", input=MESSAGE)
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert "local delivery to bob failed" in result.stderr or "cannot run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("mda", "code"), [("sh -c 'exit 0'", 0), ("sh -c 'head -c 10 >/dev/null; exit 1'", 71)])
def test_mda_that_stops_reading_early(run: Runner, mda: str, code: int) -> None:
    """A big message and an MDA that exits without reading it: EPIPE is not an error, its exit status decides."""
    big = MESSAGE + b"x" * 78 + b"\n" * 1 + (b"y" * 999 + b"\n") * 4000
    run.write_config(mda_config(mda))
    result = run("bob", input=big)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr


def test_local_recipient_without_mda(run: Runner) -> None:
    run.write_config("hostname 127.0.0.1:9\n")
    result = run("bob", input=MESSAGE)
    assert result.returncode == 72
    assert "Local delivery not possible without a MDA" in result.stderr


def test_verbose_shows_the_command_as_run(run: Runner) -> None:
    run.write_config(mda_config("procmail -d %T"))
    result = run("-v", "bob", "a'b", input=MESSAGE, env=path_env(run))
    assert result.returncode == 0, result.stderr
    assert "running the MDA: procmail -d bob 'a'\"'\"'b'" in result.stderr
