"""The ESMTP server dialogue: :class:`Dialogue`, the protocol's state machine, and :class:`StdioServer`, which runs
it on standard input and output (``sendmail -bs``).

:class:`Dialogue` does no I/O: it is given each command line and queues its replies, so the blocking ``-bs`` loop
below and the asyncio listener (:mod:`esmtp.server.listener`) share one implementation of SMTP. What may block (a
delivery, a password check) is left in :attr:`Dialogue.blocking` for the driver to run where it can wait; the DATA
is read by the driver (:mod:`esmtp.server.input` has the line and DATA rules and limits). What happens to an
envelope (the local checks at RCPT, the pipeline after the final dot) is the :class:`Relay`'s job
(:mod:`esmtp.server.relay`).

Why not aiosmtpd, the usual asyncio SMTP server: it is built for sockets. Over stdio it needs two pipe transports
glued under one ``StreamReaderProtocol`` (it asks its transport for a peer name and writes through the read side's
writer); its DATA handler must return its reply from inside the event loop, while our pipeline is synchronous (MDA
child processes, the queue, an SMTP client that drives its own loop), so each message would go to a worker thread;
it keeps the whole message in memory where esmtp spools it; it refuses DSN parameters (RET, ENVID, NOTIFY) with
555 unless the parser is overridden; it has no header-size limit and no "421 after too many errors"; and it would
become a runtime dependency with two more (attrs, atpublic). One caller on one pipe needs none of its concurrency:
the protocol below is a plain loop over a buffered file descriptor, and the message goes straight from the DATA
stream into :func:`esmtp.message.read_message`, as standard input does for a command-line message.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from esmtp.addresses import address_problem, unsafe_character
from esmtp.errors import EX_IOERR, EX_PROTOCOL, EX_TEMPFAIL, DataError
from esmtp.message import read_message
from esmtp.progname import printable
from esmtp.server.input import DataStream, IdleTimeout, LineReader, Reject

if TYPE_CHECKING:
    from collections.abc import Callable

    from esmtp.message import Message

#: RFC 5321 4.5.3.1.4 allows 512 octets for a command line; SMTPUTF8 addresses and DSN parameters need more.
COMMAND_LIMIT = 2048
#: The SIZE we advertise and enforce.
MAX_SIZE = 64 << 20
MAX_RECIPIENTS = 1000
#: Syntax and sequence errors tolerated before "421 ... too many errors" ends the session.
MAX_ERRORS = 10
#: RFC 5321 4.5.3.2.7: a server waits at least 5 minutes for the next command.
IDLE_TIMEOUT = 300.0

#: Replies that count as the caller's errors (syntax, sequence, unknown or refused commands).
_ERRORS = ("500", "501", "502", "503", "504", "555")
_NOTIFY = re.compile(r"NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY))*")
_XTEXT = re.compile(r"\+([0-9A-F]{2})")


@dataclass(slots=True)
class Transaction:
    """What MAIL and RCPT said for one message. Addresses are bare (no angle brackets); "" is the null sender."""

    sender: str
    body: str | None = None
    ret: str | None = None
    envid: str | None = None
    recipients: list[str] = field(default_factory=list)
    #: The NOTIFY of the transaction's recipients (an envelope has one); None when none was given.
    notify: str | None = None
    #: The client's address (the listener), for the envelope and the delivery log; None on the ``-bs`` pipe.
    client: str | None = None
    #: The ``Received:`` field's value the server adds at the top of the message (the listener), without the name.
    received: str | None = None


class Relay(Protocol):
    """What the server does with envelopes and messages."""

    def check_recipient(self, transaction: Transaction, address: str) -> str | None:
        """A reply refusing ``address`` (checks that need no server), or None to accept it."""

    def deliver(self, transaction: Transaction, message: Message) -> tuple[str, int]:
        """Send ``message`` through the pipeline; return the reply to the final dot and the exit status it means."""


def _xtext_decode(value: str) -> str:
    return _XTEXT.sub(lambda match: chr(int(match.group(1), 16)), value)


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def _path(argument: str, keyword: str) -> tuple[str, list[str]]:
    """``FROM:<path> params`` → the bare address and the parameters. Lenient: blanks after the colon, no brackets."""
    head, colon, rest = argument.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise Reject(f"501 5.5.4 Syntax: {'MAIL FROM' if keyword == 'FROM' else 'RCPT TO'}:<address>")
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise Reject("501 5.1.7 Unbalanced '<' in the address")
        address, params = rest[1:end], rest[end + 1 :].split()
    else:
        address, *params = rest.split() or [""]
    if address.startswith("@") and ":" in address:
        address = address.split(":", 1)[1]  # an RFC 5321 source route: ignored, as the RFC asks
    return address, params


def check_syntax(address: str) -> None:
    """Refuse what cannot be a mailbox: :func:`esmtp.addresses.address_problem`, the command line's check too."""
    problem = address_problem(address)
    if problem is not None:
        shown = "" if unsafe_character(address) or "\t" in address else f" <{address}>"
        raise Reject(f"501 5.1.3 Bad address syntax:{shown} the address {problem}"[:400])


def _params(params: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        found[name.upper()] = value
    return found


class Dialogue:
    """One ESMTP session's state machine: :meth:`handle` takes each command line, :meth:`output` gives the replies.

    The driver that owns the connection reads lines (within :data:`COMMAND_LIMIT`), passes them in, writes the
    output before it waits for more input (RFC 2920: pipelined replies are flushed then), and after each line
    looks at :attr:`data_for` (DATA was accepted: read the message, then call :meth:`message` or
    :meth:`data_refused`) and :attr:`blocking` (work that may block: run it, then go on). Subclasses add what a
    connection offers beyond a pipe (AUTH, STARTTLS, a sender policy: :mod:`esmtp.server.listener`).
    """

    #: The word after ESMTP in the greeting.
    banner = "ESMTP esmtp"

    def __init__(self, relay: Relay, *, hostname: str, max_size: int = MAX_SIZE,
                 max_recipients: int = MAX_RECIPIENTS) -> None:
        self.relay = relay
        self.hostname = hostname
        self.max_size = max_size
        self.max_recipients = max_recipients
        self.pending: list[bytes] = []
        self.transaction: Transaction | None = None
        self.extended = False
        self.helo = ""
        self.errors = 0
        #: The exit status so far (see :meth:`note`).
        self.status = 0
        #: Set by DATA after 354: the transaction whose message the driver must now read.
        self.data_for: Transaction | None = None
        #: Work that may block (a delivery, a password check), for the driver to run before the next line.
        self.blocking: Callable[[], None] | None = None
        #: Set by a command that takes more lines (AUTH): the next line goes here instead of being a command.
        self.continuation: Callable[[str], bool] | None = None

    # ---- output --------------------------------------------------------------------------------------------------

    def reply(self, text: str) -> None:
        """Queue a reply; several lines become a multi-line reply (``250-...``)."""
        lines = text.split("\n")
        code = lines[0][:3]
        for index, line in enumerate(lines):
            body = line[4:] if line[:3] == code else line
            separator = " " if index == len(lines) - 1 else "-"
            self.pending.append(f"{code}{separator}{body}\r\n".encode())

    def output(self) -> bytes:
        """The replies queued since the last call."""
        data = b"".join(self.pending)
        self.pending.clear()
        return data

    def note(self, status: int) -> None:
        """Keep the most serious exit status: a permanent failure's, then 76 (protocol), then 75, then 0."""
        if status and (self.status in (0, EX_TEMPFAIL) or (self.status == EX_PROTOCOL and status != EX_TEMPFAIL)):
            self.status = status

    # ---- the session ---------------------------------------------------------------------------------------------

    def greet(self) -> None:
        self.reply(f"220 {self.hostname} {self.banner}")

    def timed_out(self, seconds: float) -> None:
        self.reply(f"421 4.4.2 {self.hostname} Timeout: nothing received for {seconds:g} seconds")
        self.note(EX_TEMPFAIL)

    def handle(self, line: bytes) -> bool:
        """Answer one command line (with its line ending); False when the session is over."""
        try:
            text = line.rstrip(b"\r\n").decode("utf-8")
        except UnicodeDecodeError:
            self.continuation = None
            return self.refuse("500 5.5.2 Command is not valid UTF-8")
        if self.continuation is not None:
            continuation, self.continuation = self.continuation, None
            return self._answer(continuation, text)
        verb, _, argument = text.strip().partition(" ")
        handler = getattr(self, f"smtp_{verb.upper()}", None) if verb.isalpha() else None
        if handler is None:
            return self.refuse(f"500 5.5.2 Command not recognised: {verb[:20]!r}")
        return self._answer(handler, argument.strip())

    def _answer(self, handler: Callable[[str], bool], argument: str) -> bool:
        try:
            return bool(handler(argument))
        except Reject as refused:
            if refused.reply[:3] in _ERRORS:
                return self.refuse(refused.reply)
            self.reply(refused.reply)
            return True

    def refuse(self, reply: str) -> bool:
        """Answer the caller's error (a bad command, a line too long); False after too many of them."""
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.reply(f"421 4.7.0 {self.hostname} Too many errors; closing the session")
            self.note(EX_PROTOCOL)
            return False
        self.reply(reply)
        return True

    def data_refused(self, error: Reject | DataError | OSError) -> None:
        """The message was not taken (a limit, bad data, or the spool failed); the rest of it has been skipped."""
        if isinstance(error, Reject):
            self.reply(error.reply)
        elif isinstance(error, DataError):
            self.reply(f"554 5.6.0 {error}")
        else:  # the spool file (a full disk)
            self.reply(f"451 4.3.0 cannot spool the message: {error.strerror or error}; try again later")
            self.note(EX_TEMPFAIL)

    def message(self, transaction: Transaction, message: Message) -> None:
        """Deliver a message read in full and queue the reply to its final dot (this blocks: see :attr:`blocking`)."""
        reply, status = self.relay.deliver(transaction, message)
        self.note(status)
        self.reply(reply)

    # ---- commands (each returns True to go on) -------------------------------------------------------------------

    def smtp_HELO(self, argument: str) -> bool:
        return self._greet(argument, "HELO")

    def smtp_EHLO(self, argument: str) -> bool:
        return self._greet(argument, "EHLO")

    def extensions(self) -> list[str]:
        """The EHLO keywords offered now."""
        return ["PIPELINING", "8BITMIME", "SMTPUTF8", f"SIZE {self.max_size}", "DSN", "ENHANCEDSTATUSCODES", "HELP"]

    def _greet(self, argument: str, verb: str) -> bool:
        if not argument:
            raise Reject(f"501 5.5.4 Syntax: {verb} hostname")
        self.transaction = None
        self.extended = verb == "EHLO"
        self.helo = argument.split()[0][:255]
        if not self.extended:
            self.reply(f"250 {self.hostname}")
            return True
        greets = printable(argument)  # no control character of the caller's goes back (a CR would split the line)
        self.reply("\n".join([f"250 {self.hostname} greets {greets}", *(f"250 {e}" for e in self.extensions())]))
        return True

    def check_sender(self, address: str) -> None:
        """Raise Reject when this session may not use ``address`` in MAIL FROM (nothing to check on a pipe)."""

    def smtp_MAIL(self, argument: str) -> bool:
        if self.transaction is not None:
            raise Reject("503 5.5.1 Error: nested MAIL command")
        address, params = _path(argument, "FROM")
        if address:
            check_syntax(address)
        self.check_sender(address)
        transaction = Transaction(address)
        for name, value in _params(params).items():
            self._mail_param(transaction, name, value)
        self.transaction = transaction
        self.reply("250 2.1.0 Ok")
        return True

    def _mail_param(self, transaction: Transaction, name: str, value: str) -> None:
        if not self.extended:
            raise Reject("555 5.5.4 MAIL parameters need EHLO")
        if name == "SIZE" and value.isascii() and value.isdigit():  # not "²", which int() refuses
            if int(value) > self.max_size:
                raise Reject(f"552 5.3.4 Message larger than the maximum size of {self.max_size} bytes")
        elif name == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
            transaction.body = value.upper()
        elif name == "SMTPUTF8" and not value:
            pass  # UTF-8 addresses are accepted with or without it; the smarthost gets it when they need it
        elif name == "RET" and value.upper() in ("FULL", "HDRS"):
            transaction.ret = value.upper()
        elif name == "ENVID" and value and _printable(envid := _xtext_decode(value)):
            transaction.envid = envid
        elif name == "AUTH":
            pass  # RFC 4954 5: the identity the caller claims for the message; it is not passed on
        else:
            raise Reject(f"555 5.5.4 Unsupported MAIL parameter {name}{'=' if value else ''}{value}"[:200])

    def smtp_RCPT(self, argument: str) -> bool:
        transaction = self.transaction
        if transaction is None:
            raise Reject("503 5.5.1 Error: need MAIL command")
        address, params = _path(argument, "TO")
        check_syntax(address)
        notify: str | None = None
        for name, value in _params(params).items():
            if not self.extended:
                raise Reject("555 5.5.4 RCPT parameters need EHLO")
            if name == "NOTIFY":
                if not _NOTIFY.fullmatch(value.upper()):
                    raise Reject("501 5.5.4 NOTIFY takes NEVER, or a list of SUCCESS, FAILURE, DELAY")
                notify = ",".join(w for w in ("SUCCESS", "FAILURE", "DELAY") if w in value.upper()) or "NEVER"
            elif name != "ORCPT":  # ORCPT is accepted and not passed on
                raise Reject(f"555 5.5.4 Unsupported RCPT parameter {name}"[:200])
        if len(transaction.recipients) >= self.max_recipients:
            raise Reject(f"452 4.5.3 Too many recipients (at most {self.max_recipients} per message)")
        if transaction.recipients and notify != transaction.notify:
            raise Reject("452 4.5.3 A different NOTIFY needs another transaction: send this recipient again later")
        refused = self.relay.check_recipient(transaction, address)
        if refused is not None:
            self.reply(refused)
            return True
        transaction.notify = notify
        if address not in transaction.recipients:
            transaction.recipients.append(address)
        self.reply("250 2.1.5 Ok")
        return True

    def smtp_DATA(self, argument: str) -> bool:
        transaction = self.transaction
        if argument:
            raise Reject("501 5.5.4 Syntax: DATA")
        if transaction is None:
            raise Reject("503 5.5.1 Error: need MAIL command")
        if not transaction.recipients:
            raise Reject("554 5.5.1 Error: no valid recipients")
        self.reply("354 End data with <CR><LF>.<CR><LF>")  # no enhanced code: RFC 3463 has no class 3
        self.transaction = None
        self.data_for = transaction
        return True

    def smtp_RSET(self, argument: str) -> bool:
        self.transaction = None
        self.reply("250 2.0.0 Ok")
        return True

    def smtp_NOOP(self, argument: str) -> bool:
        self.reply("250 2.0.0 Ok")
        return True

    def smtp_QUIT(self, argument: str) -> bool:
        self.reply(f"221 2.0.0 {self.hostname} Bye")
        return False

    def smtp_HELP(self, argument: str) -> bool:
        self.reply("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY EXPN (see man esmtp)")
        return True

    def smtp_VRFY(self, argument: str) -> bool:
        self.reply("252 2.5.2 Cannot VRFY the user; send some mail and the smarthost will tell")
        return True

    def smtp_EXPN(self, argument: str) -> bool:
        raise Reject("502 5.5.1 EXPN is not supported")

    def smtp_AUTH(self, argument: str) -> bool:
        raise Reject("502 5.5.1 No AUTH on the local pipe: the caller is the local user")

    def smtp_STARTTLS(self, argument: str) -> bool:
        raise Reject("502 5.5.1 No STARTTLS on the local pipe")


class StdioServer(Dialogue):
    """One ESMTP session with the caller over two file descriptors (``sendmail -bs``), driven by a blocking loop."""

    banner = "ESMTP esmtp (sendmail -bs)"

    def __init__(self, infd: int, outfd: int, relay: Relay, *, hostname: str, timeout: float = IDLE_TIMEOUT) -> None:
        super().__init__(relay, hostname=hostname)
        self.out = outfd
        self.reader = LineReader(infd, timeout, self.flush)
        #: The caller stopped reading replies (see :meth:`flush`).
        self.stalled = False

    def flush(self) -> None:
        """Write the pending replies, each wait for the caller to read bounded by the idle timeout: a caller that
        stops reading ends the session as a broken pipe would (OSError), never blocks it."""
        import select

        data = self.output()
        while data and not self.stalled:
            _, ready, _ = select.select([], [self.out], [], self.reader.timeout)
            if not ready:
                self.stalled = True  # nothing more is written: the last flush must not wait again
                raise TimeoutError(f"the caller read no reply for {self.reader.timeout:g} seconds")
            # At most PIPE_BUF bytes, which a writable pipe takes without blocking.
            data = data[os.write(self.out, data[: select.PIPE_BUF]) :]

    def run(self) -> int:
        """Greet, then answer commands until QUIT, end of input, the idle timeout or too many errors."""
        try:
            self.greet()
            while self._command():
                pass
        except EOFError:
            pass  # end of input between commands: nothing is owed
        except IdleTimeout:
            self.timed_out(self.reader.timeout)
        except OSError:
            self.note(EX_IOERR)  # the pipe broke: the caller is gone
        except BaseException:
            # A bug (or an interrupt): the replies already earned still go out (a delivered message's 250 among
            # them, or the caller would send it again); the error is then reported as any other.
            with contextlib.suppress(OSError):
                self.flush()
            raise
        with contextlib.suppress(OSError):  # the caller is gone
            self.flush()
        return self.status

    def _command(self) -> bool:
        try:
            line = self.reader.line(COMMAND_LIMIT)
        except Reject as refused:
            return self.refuse(refused.reply)
        going_on = self.handle(line)
        if self.data_for is not None:
            transaction, self.data_for = self.data_for, None
            self._data(transaction)
        if self.blocking is not None:
            work, self.blocking = self.blocking, None
            work()
        return going_on

    def _data(self, transaction: Transaction) -> None:
        stream = DataStream(self.reader, self.max_size)
        try:
            # EOFError and IdleTimeout end the session here: a message cut short is never delivered.
            message = read_message(cast("BinaryIO", stream))
        except EOFError:
            self.note(EX_TEMPFAIL)
            raise
        except (Reject, DataError, OSError) as refused:  # if our input broke instead of the spool, skip() raises again
            self._skip(stream)
            self.data_refused(refused)
            return
        with message:
            self._skip(stream)  # the dot itself, if read_message stopped before it
            # The replies earned so far go out before a delivery that may take minutes (or be killed): a pipelined
            # earlier message's 250 must not wait behind this one. A caller already gone gets nothing delivered.
            self.flush()
            self.message(transaction, message)

    def _skip(self, stream: DataStream) -> None:
        """The rest of the data, to the final dot. Input that ends first leaves a message unanswered: 75."""
        try:
            stream.skip()
        except EOFError:
            self.note(EX_TEMPFAIL)
            raise
