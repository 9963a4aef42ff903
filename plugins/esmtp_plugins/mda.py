"""Built-in plugin 'mda': the "mda" delivery agent, which pipes the message to the ``mda`` command for local names.

The command is the esmtprc ``mda`` value, with ``%T`` (the local recipients) and ``%F`` (the sender given with ``-f``
or the ``-t`` From:, as esmtp 1.2 did). Recipients and senders are data, never shell code: the command is split into
words as ``/bin/sh`` would split it, a word that is exactly ``%T`` becomes one argument per recipient, and the
command runs without a shell unless it uses shell syntax (pipes, redirections, ``$``, backquotes…). When it does, it
runs under ``/bin/sh -c`` and every substituted value is quoted with :func:`shlex.quote`, with any quote that
encloses the placeholder closed first. See docs/local-delivery.md.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from esmtp import hookimpl
from esmtp.addresses import check_argument
from esmtp.errors import EX_OSERR, EX_TEMPFAIL, ConfigError, LocalDeliveryError, NoDeliveryAgent
from esmtp.message import Message
from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, RunContext

Context = Literal["", "'", '"']

#: Characters that make a command need a shell when they appear outside quotes.
_OPERATORS = frozenset("|&;<>()\n")
_GLOBS = frozenset("*?[")
#: First words that only a shell understands (reserved words and built-ins that have no program on PATH).
_SHELL_WORDS = frozenset((
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while",
    ".", ":", "alias", "break", "cd", "command", "continue", "eval", "exec", "exit", "export", "readonly", "return",
    "set", "shift", "times", "trap", "ulimit", "umask", "unset",
))


@dataclass(frozen=True, slots=True)
class Slot:
    """A ``%T`` or ``%F`` in the command, and the quoting it appears in (none, single or double quotes)."""

    name: Literal["T", "F"]
    context: Context


Part = str | Slot


@dataclass(slots=True)
class Word:
    """One shell word: its source text (``raw``) and its value after quote removal (``value``)."""

    raw: list[Part] = field(default_factory=list)
    value: list[Part] = field(default_factory=list)

    def whole_slot(self) -> Slot | None:
        """The placeholder if it is the whole word (``%T``, ``'%T'``, ``"%T"``), else None."""
        parts = [part for part in self.value if part != ""]
        return parts[0] if len(parts) == 1 and isinstance(parts[0], Slot) else None


@dataclass(slots=True)
class MdaCommand:
    """The parsed ``mda`` value: words and the text between them, and whether it needs ``/bin/sh``."""

    template: str
    items: list[Word | str]
    needs_shell: bool

    @classmethod
    def parse(cls, template: str) -> MdaCommand:
        """Split ``template`` as POSIX sh would; raise ConfigError for an unterminated quote or an empty command."""
        return _Scanner(template).scan()

    @property
    def words(self) -> list[Word]:
        return [item for item in self.items if isinstance(item, Word)]

    def argv(self, recipients: list[str], sender: str) -> list[str]:
        """The argument vector to execute: ``/bin/sh -c <quoted command>`` or the words themselves."""
        if self.needs_shell:
            return ["/bin/sh", "-c", self.shell_text(recipients, sender)]
        argv: list[str] = []
        for word in self.words:
            slot = word.whole_slot()
            if slot is not None:
                argv += list(recipients) if slot.name == "T" else [sender]
            else:
                argv.append("".join(_value(part, recipients, sender) for part in word.value))
        return argv

    def shell_text(self, recipients: list[str], sender: str) -> str:
        """The command for ``sh -c``, each substituted value quoted so that the shell reads it as plain data."""
        out: list[str] = []
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
                continue
            slot = item.whole_slot()
            if slot is not None:
                values = recipients if slot.name == "T" else [sender]
                out.append(" ".join(shlex.quote(value) for value in values))
                continue
            for part in item.raw:
                if isinstance(part, str):
                    out.append(part)
                else:
                    # Close the enclosing quote, add the quoted value, reopen: 'a'"'"… style concatenation.
                    quoted = shlex.quote(_value(part, recipients, sender))
                    out.append(f"{part.context}{quoted}{part.context}")
        return "".join(out)

    def display(self, recipients: list[str], sender: str) -> str:
        """The command as it will run, for ``-v``."""
        if self.needs_shell:
            return self.shell_text(recipients, sender)
        return shlex.join(self.argv(recipients, sender))


def _value(part: Part, recipients: list[str], sender: str) -> str:
    if isinstance(part, str):
        return part
    # %T inside a larger word: one word, the recipients separated by spaces.
    return " ".join(recipients) if part.name == "T" else sender


class _Scanner:
    """A small POSIX sh word splitter that also notes placeholders and anything that needs a real shell."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.items: list[Word | str] = []
        self.word: Word | None = None
        self.first_word_assignment = False
        self.needs_shell = False

    def scan(self) -> MdaCommand:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t":
                self._end_word()
                self.items.append(char)
                self.pos += 1
            elif char in _OPERATORS:
                self.needs_shell = True
                self._end_word()
                self.items.append(char)
                self.pos += 1
            else:
                self._word_char(char)
        self._end_word()
        words = [item for item in self.items if isinstance(item, Word)]
        if not words:
            raise ConfigError("the 'mda' command is empty")
        first = "".join(part for part in words[0].value if isinstance(part, str))
        if first in _SHELL_WORDS or self.first_word_assignment:
            self.needs_shell = True
        return MdaCommand(self.text, self.items, self.needs_shell)

    def _current(self) -> Word:
        if self.word is None:
            self.word = Word()
        return self.word

    def _end_word(self) -> None:
        if self.word is not None:
            self.items.append(self.word)
            self.word = None

    def _slot_at(self, index: int) -> Literal["T", "F"] | None:
        if self.text.startswith("%T", index):
            return "T"
        if self.text.startswith("%F", index):
            return "F"
        return None

    def _word_char(self, char: str) -> None:
        starting = self.word is None
        word = self._current()
        text = self.text
        if starting and char in "#~":
            self.needs_shell = True  # a comment, or tilde expansion
        if char == "'":
            end = text.find("'", self.pos + 1)
            if end < 0:
                raise ConfigError(f"unterminated ' quote in the 'mda' command: {text}")
            word.raw.append("'")
            self._quoted(word, self.pos + 1, end, "'")
            word.raw.append("'")
            self.pos = end + 1
        elif char == '"':
            self._double_quoted(word)
        elif char == "\\":
            if self.pos + 1 >= len(text):
                raise ConfigError(f"the 'mda' command ends with a backslash: {text}")
            word.raw.append(text[self.pos : self.pos + 2])
            word.value.append(text[self.pos + 1])
            self.needs_shell = self.needs_shell or text[self.pos + 1] == "\n"
            self.pos += 2
        elif (name := self._slot_at(self.pos)) is not None:
            slot = Slot(name, "")
            word.raw.append(slot)
            word.value.append(slot)
            self.pos += 2
        else:
            if char in "$`" or char in _GLOBS:
                self.needs_shell = True
            elif char == "=" and not any(isinstance(item, Word) for item in self.items):
                self.first_word_assignment = True  # NAME=value before the command: an environment assignment
            word.raw.append(char)
            word.value.append(char)
            self.pos += 1

    def _quoted(self, word: Word, start: int, end: int, context: Context) -> None:
        """Text between quotes, cut at placeholders (single quotes: nothing else is special)."""
        index = start
        while index < end:
            name = self._slot_at(index)
            if name is not None and index + 2 <= end:
                slot = Slot(name, context)
                word.raw.append(slot)
                word.value.append(slot)
                index += 2
            else:
                word.raw.append(self.text[index])
                word.value.append(self.text[index])
                index += 1

    def _double_quoted(self, word: Word) -> None:
        text = self.text
        index = self.pos + 1
        word.raw.append('"')
        while True:
            if index >= len(text):
                raise ConfigError(f'unterminated " quote in the \'mda\' command: {text}')
            char = text[index]
            if char == '"':
                break
            if char == "\\" and index + 1 < len(text) and text[index + 1] in '$`"\\\n':
                word.raw.append(text[index : index + 2])
                word.value.append(text[index + 1])
                index += 2
                continue
            if char in "$`":
                self.needs_shell = True
            name = self._slot_at(index)
            if name is not None:
                slot = Slot(name, '"')
                word.raw.append(slot)
                word.value.append(slot)
                index += 2
                continue
            word.raw.append(char)
            word.value.append(char)
            index += 1
        word.raw.append('"')
        self.pos = index + 1


def lf_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The message with LF line endings, as MDAs expect (CRLF becomes LF; a lone CR is kept)."""
    pending_cr = False
    for chunk in chunks:
        if pending_cr:
            chunk = b"\r" + chunk
            pending_cr = False
        if chunk.endswith(b"\r"):
            chunk, pending_cr = chunk[:-1], True  # maybe half of a CRLF split across chunks
        if chunk:
            yield chunk.replace(b"\r\n", b"\n")
    if pending_cr:
        yield b"\r"




class MdaAgent:
    """Runs the ``mda`` command once per message for all local recipients, with the message on its stdin."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def describe(self, envelope: Envelope, recipients: list[str]) -> str:
        """The command line exactly as it would run (``--pretend``), or why it would not."""
        template = self.context.config.mda
        if not template:
            return "none configured: local delivery would fail (set 'mda', or 'qualifydomain')"
        return MdaCommand.parse(template).display(recipients, envelope.given_sender or "")

    def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
        template = self.context.config.mda
        if not template:
            raise NoDeliveryAgent("mda", recipients)
        command = MdaCommand.parse(template)
        sender = envelope.given_sender or ""
        for recipient in recipients:
            check_argument(recipient, "local recipient")
        check_argument(sender, "sender")
        argv = command.argv(recipients, sender)
        self.context.trace.info(f"running the MDA: {command.display(recipients, sender)}")
        status = run_mda(argv, message, template)
        described = describe_status(template, status)
        if status == 0:
            return DeliveryResult("mda", recipients, described)
        temporary = status == EX_TEMPFAIL  # the MDA's own word (procmail, maildrop: a full or locked mailbox)
        suffix = " (a temporary failure)" if temporary else ""
        raise LocalDeliveryError(f"local delivery to {', '.join(recipients)} failed: {described}{suffix}",
                                 temporary=temporary)


def describe_status(template: str, status: int) -> str:
    if status < 0:
        return f"MDA `{template}` was killed by signal {-status}"
    return f"MDA `{template}` exited with status {status}"


def run_mda(argv: list[str], message: Message, template: str) -> int:
    """Start the MDA, stream the message to its stdin and return its exit status (negative: killed by a signal).

    An MDA that exits before reading everything (EPIPE) is not an error by itself: its exit status decides.
    """
    import subprocess

    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE)
    except OSError as error:
        raise LocalDeliveryError(f"cannot run the MDA `{template}`: {error.strerror or error}",
                                 exit_code=EX_OSERR) from error
    assert process.stdin is not None
    try:
        try:
            for chunk in lf_chunks(message.chunks()):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # it stopped reading; its exit status says whether that was a failure
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process.wait()


@hookimpl
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """The "mda" agent (local names without '@', or every recipient with ``force_mda``)."""
    return [DeliveryAgent("mda", MdaAgent)]


__all__ = ["MdaAgent", "MdaCommand", "lf_chunks"]
