"""Delivering the queue: entries grouped by identity and smarthost, one SMTP session (one login) per group.

Loaded only when a flush runs; it is the one queue module that imports asyncio and the SMTP client.

Per entry: lock it, re-route its stored envelope (the stored message is final: no header fix-ups run again), send
each leg, then record the outcome in one state change: delivered (the entry is marked, then removed), deferred
(retry later with exponential backoff), or failed (moved to ``failed/``, with a bounce when the configuration asks
for one). The outcome of a message is recorded before the data of the next one is sent.

Duplicates: a message is sent twice only if the process dies (or the connection breaks) after the final dot was
written and before the entry was marked delivered, which is the unavoidable window of every MTA: the server may have
accepted the message without our knowing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from esmtp.config import Config, Identity
from esmtp.errors import EX_NOINPUT, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EsmtpError
from esmtp.message import CHUNK, Message
from esmtp.plugins import Hooks
from esmtp.smtp import RecipientsRejected, SmtpSession
from esmtp.trace import Trace
from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, Route, RunContext

from .queue_bounce import EXPIRED, make_bounce, wants_bounce
from .queue_store import Claim, Delivered, Entry, ErrorKind, QueueStore, Settings, crashpoint, is_due

#: How many times a connection may break during a transaction before a run defers the rest of that group.
MAX_BREAKS_PER_GROUP = 3
#: The background run waits this long for more mail (a burst from one script shares the connection).
LINGER = 0.5
_POLL = 0.2
#: Delivered ids are handed to the removal worker this many at a time (each id is ~20 bytes: one atomic pipe write).
TIDY_BATCH = 64


class QueuedMessage(Message):
    """A message read back from ``<id>.eml``, streamed from the entry's locked file descriptor.

    The header fields are parsed for hooks and agents that look at them; while nobody changes them, the file is sent
    as stored, header block included, in as few reads and writes as possible: a message of up to 64 KiB is read
    with one system call, when the entry is prepared.
    """

    __slots__ = ("_end", "_fd", "_start", "_stored", "body_offset")

    def __init__(self, fd: int, entry: Entry, path: str) -> None:
        newline = entry.newline.encode("ascii")
        self._start = os.pread(fd, max(min(entry.size, CHUNK), entry.header_size), 0) if entry.size else b""
        block = self._start[: entry.header_size]
        super().__init__(
            split_fields(block[: len(block) - len(newline)] if block else b""),
            path,
            entry.size - entry.header_size,
            eight_bit=entry.eight_bit,
            newline=newline,
        )
        self.detach_spool()  # the queue owns the file: closing this message must never delete it
        self._fd = fd
        self._end = entry.size
        self._stored = tuple(self.headers)
        self.body_offset = entry.header_size

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        start = self._start
        if tuple(self.headers) == self._stored:
            first = start  # the header block as stored: sent with the body
        else:
            head = self.header_bytes()
            if head:
                yield head + self.newline
            first = start[self.body_offset :]
        if first:
            yield first
        offset = max(len(start), self.body_offset)
        while offset < self._end and (chunk := os.pread(self._fd, min(chunk_size, self._end - offset), offset)):
            offset += len(chunk)
            yield chunk


def split_fields(block: bytes) -> list[bytes]:
    """A header block as raw fields (continuation lines kept with their field)."""
    fields: list[bytes] = []
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end + 1
        line = block[start:end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        start = end
    return fields


def connection_key(identity: Identity) -> tuple[object, ...]:
    """What a session depends on: entries whose identities agree on all of it share one connection and login."""
    return (
        identity.hostname, identity.username, identity.password, identity.starttls, identity.helo,
        identity.certificate_passphrase, identity.preconnect, identity.postconnect,
        tuple(sorted(identity.options.items())),
    )


@dataclass(slots=True)
class Report:
    """What a flush did."""

    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    busy: int = 0
    missing: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EX_UNAVAILABLE
        if self.deferred:
            return EX_TEMPFAIL
        return EX_NOINPUT if self.missing else EX_OK

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered", f"{self.deferred} deferred", f"{self.failed} failed"]
        if self.bounced:
            parts.append(f"{self.bounced} bounced")
        if self.busy:
            parts.append(f"{self.busy} being delivered by another run")
        return ", ".join(parts)


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one (cron, pipes, the background run)."""

    THRESHOLD = 10

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self._shown = 0.0

    def add(self, count: int) -> None:
        self.total += count

    def step(self, report: Report, force: bool = False) -> None:
        self.done += 1
        if not self.enabled or self.total < self.THRESHOLD:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.1 and self.done < self.total:
            return
        self._shown = now
        width = 30
        filled = width * min(self.done, self.total) // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\rflushing [{bar}] {self.done}/{self.total}: {report.summary()}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.total >= self.THRESHOLD:
            self.stream.write("\n")
            self.stream.flush()


class GroupSession:
    """The connection of one group, opened on first use and opened again when the session drops it (after a refusal
    that followed a pipelined DATA, or a broken connection).

    Each connection is bracketed by the identity's commands, as in direct delivery (and esmtp 1.2): ``preconnect``
    runs before it is opened (an ssh tunnel, a VPN, a dial-up link; its failure defers the rest of the group, nothing
    sent), ``postconnect`` after it ends if the server accepted at least one message over it (its failure is only a
    warning: the mail is sent).
    """

    def __init__(self, identity: Identity, flusher: Flusher) -> None:
        self.identity = identity
        self.flusher = flusher
        self.session: SmtpSession | None = None
        self.error: EsmtpError | None = None
        self.breaks = 0
        #: Messages the server accepted over the current connection (postconnect runs only after one at least).
        self.accepted = 0
        #: A transaction announced while no session was open, for the next one.
        self.upcoming: tuple[Envelope, Message, list[str]] | None = None
        self.lock = asyncio.Lock()

    def announce(self, envelope: Envelope, message: Message, recipients: list[str]) -> None:
        """The transaction that comes next (:meth:`SmtpSession.pipeline_next`), for the session that is open or,
        before the first message, for the one about to be opened."""
        if self.session is not None and self.session.is_open:
            self.session.pipeline_next(envelope, message, recipients)
            self.upcoming = None
        else:
            self.upcoming = (envelope, message, recipients)

    def broke(self, error: EsmtpError) -> None:
        """The connection failed during a transaction; after a few times, give up on this server for the run."""
        self.breaks += 1
        if self.breaks >= MAX_BREAKS_PER_GROUP:
            self.error = error

    async def get(self) -> SmtpSession:
        """The open session. Raises the connection error (for this and every later entry of the run)."""
        if self.session is not None:
            if self.session.is_open:
                return self.session
            await self.session.abort()  # dropped by us or hung up by the server: free what is left of it
            self.session = None
            await self._ended()  # the session dropped the connection
        if self.error is not None:
            raise self.error
        try:
            if self.identity.preconnect:
                from esmtp.smtp_agent import preconnect

                # In a thread: the command may take seconds (a tunnel, a link) while other groups are sending.
                await asyncio.to_thread(preconnect, self.identity.preconnect, self.flusher.trace)
            session = SmtpSession(self.identity, self.flusher.mechanisms, self.flusher.trace, self.flusher.hooks.secret)
            await session.open()
        except EsmtpError as error:
            self.error = error
            raise
        self.session = session
        if self.upcoming is not None:
            session.pipeline_next(*self.upcoming)
            self.upcoming = None
        return session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
            await self._ended()

    async def _ended(self) -> None:
        """A connection is over: run ``postconnect`` if the server accepted mail over it."""
        accepted, self.accepted = self.accepted, 0
        command = self.identity.postconnect
        if not accepted or not command:
            return
        warning = await asyncio.to_thread(_postconnect, command, self.flusher.trace)
        if warning:
            self.flusher.errors.write(f"esmtp: queue: warning: {warning} (the mail was sent)\n")


def _postconnect(command: str, trace: Trace) -> str | None:
    """Run ``postconnect`` (as :func:`esmtp.smtp_agent.postconnect` does); return a warning if it failed.

    The warning goes where the flush reports its errors (``flush.log`` for the background run), not to our stderr.
    """
    from esmtp.smtp_agent import run_command

    trace.info(f"Executing post-connect command: {command}")
    try:
        status = run_command(command)
    except OSError as error:
        return f"Error executing post-connect command: {error.strerror or error}"
    if status == 0:
        return None
    how = f"received signal {-status}" if status < 0 else f"exited with non-zero status {status}"
    return f'Post-connect command "{command}" {how}'


class Tidier:
    """Removes the files of delivered entries in a worker process, with one directory fsync per batch.

    A delivery's commit point (the delivered mark, :meth:`QueueStore.forget`) happens in the flusher, before the next
    message is sent: after a kill, nothing delivered is sent again. Removing the files costs more than sending the
    message on most file systems (a journal transaction each, then a disk flush for the fsync), so a child process
    does it in parallel: the flusher writes the delivered ids to a pipe, a batch at a time, and the child removes
    what it has read and syncs the directory once for all of it (group commit). :meth:`finish` waits for the
    child, so when a flush ends its removals are durable. A power failure before that can bring back delivered
    entries (to be sent again), and lose none. Without the child (fork failed) the flusher removes the files
    itself.
    """

    def __init__(self, store: QueueStore, errors: TextIO) -> None:
        self.store = store
        self.errors = errors
        self.pid = 0
        self.pipe = -1
        self.pending: list[str] = []
        try:
            read, write = os.pipe()
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # the child: only the pipe stays open (not the runner lock, not the caller's files)
            code = 1
            try:
                os.closerange(3, read)
                os.closerange(read + 1, os.sysconf("SC_OPEN_MAX"))
                os.nice(10)  # housekeeping: the sending process (and a local server) come first
                _tidy_worker(store, read)
                code = 0
            finally:
                os._exit(code)
        os.close(read)
        self.pid, self.pipe = pid, write

    def add(self, entry_id: str) -> None:
        """A delivered (marked) entry, whose files are to go (handed to the worker in batches)."""
        self.pending.append(entry_id)
        if len(self.pending) >= TIDY_BATCH:
            self._hand_over()

    def _hand_over(self) -> None:
        ids, self.pending = self.pending, []
        if self.pipe >= 0:
            try:
                os.write(self.pipe, "".join(f"{entry_id}\n" for entry_id in ids).encode("ascii"))  # < PIPE_BUF
                return
            except OSError:
                self._stop()
        try:
            self.store.tidy(ids)
        except OSError as error:
            self.errors.write(f"esmtp: queue: could not remove delivered entries {', '.join(ids)}: {error}\n")

    def finish(self) -> None:
        """Wait until every removal is done and durable."""
        if self.pending:
            self._hand_over()
        self._stop()

    def _stop(self) -> None:
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            if status != 0:
                self.errors.write("esmtp: queue: could not remove some delivered entries (the next flush will)\n")


def _tidy_worker(store: QueueStore, pipe: int) -> None:
    dir_fd = os.open(store.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    pending = b""
    while data := os.read(pipe, 1 << 16):
        *lines, pending = (pending + data).split(b"\n")
        store.tidy([line.decode("ascii") for line in lines], dir_fd)


class Flusher:
    """Delivers entries of one queue with one configuration. One instance per run; sessions live for the run."""

    def __init__(self, store: QueueStore, settings: Settings, config: Config, hooks: Hooks, trace: Trace, *,
                 selected: list[str] | None = None, progress: Progress | None = None,
                 errors: TextIO | None = None) -> None:
        self.store = store
        self.settings = settings
        self.config = config
        self.hooks = hooks
        self.trace = trace
        self.selected = set(selected) if selected is not None else None
        self.context = RunContext(config, hooks, trace)
        self.mechanisms = hooks.sasl_mechanisms()
        self.agents: dict[str, DeliveryAgent] = hooks.delivery_agents()
        self.sessions: dict[tuple[object, ...], GroupSession] = {}
        self.report = Report()
        self.progress = progress or Progress(sys.stderr, False)
        self.errors = errors or sys.stderr
        self.tidier: Tidier | None = None

    # ---- selection -----------------------------------------------------------------------------------------------

    def wanted(self, entry: Entry, now: float) -> bool:
        """Selected by id, or else due (:func:`is_due`)."""
        if self.selected is not None:
            return entry.id in self.selected
        return is_due(entry, now)

    def identity(self, entry: Entry) -> Identity:
        return self.config.identity_for(entry.identity) if entry.identity is not None else self.config.default

    def envelope(self, entry: Entry) -> Envelope:
        return Envelope(
            sender=entry.sender, recipients=list(entry.recipients), identity=self.identity(entry),
            full_name=entry.full_name, notify=entry.notify, ret=entry.ret, envid=entry.envid,
            body_type=entry.body_type, from_headers=entry.from_headers, given_sender=entry.given_sender,
        )

    # ---- running -------------------------------------------------------------------------------------------------

    async def deliver(self, entries: list[Entry]) -> None:
        """Deliver ``entries``: one task per group, at most ``concurrency`` groups at a time."""
        groups: dict[tuple[object, ...], deque[Entry]] = {}
        for entry in entries:
            identity = self.identity(entry)
            key = connection_key(identity)
            groups.setdefault(key, deque()).append(entry)
            if key not in self.sessions:
                self.sessions[key] = GroupSession(identity, self)
        self.progress.add(len(entries))
        limit = asyncio.Semaphore(self.settings.concurrency)
        await asyncio.gather(*(self._group(self.sessions[key], work, limit) for key, work in groups.items()))

    async def close(self) -> None:
        for group in self.sessions.values():
            await group.close()
        self.sessions.clear()

    async def _group(self, group: GroupSession, work: deque[Entry], limit: asyncio.Semaphore) -> None:
        """Deliver a group's entries in order over its session.

        Two entries are kept ready (locked, read and routed) ahead of the one being sent: the next one, whose MAIL,
        RCPT and DATA go out with the final dot of the current message (:meth:`SmtpSession.pipeline_next`), and one
        more, prepared while the server decides on the current message, so that the flusher's file and bookkeeping
        work overlaps the server's instead of adding to it.
        """
        async with limit, group.lock:
            ready: deque[Job] = deque()
            failures: list[BaseException] = []

            def prepare_more() -> None:  # called while the server works on the message in flight
                if not failures:
                    try:
                        self._fill(ready, work, 2)
                    except BaseException as error:  # raised once the message in flight is recorded
                        failures.append(error)

            try:
                self._fill(ready, work, 2)
                while ready:
                    job = ready.popleft()
                    if ready:
                        self._announce(group, ready[0])
                    await self._run(job, group, work, prepare_more)
                    if failures:
                        raise failures[0]
                    self._fill(ready, work, 2)  # no SMTP leg (or no connection), or a bounce was queued meanwhile
            finally:
                for job in ready:
                    job.claim.release()

    def _fill(self, ready: deque[Job], work: deque[Entry], count: int) -> None:
        while len(ready) < count and (job := self._next_job(work)) is not None:
            ready.append(job)

    @staticmethod
    def _announce(group: GroupSession, job: Job) -> None:
        """Let the group's session pipeline ``job``'s commands with the final dot of the message before it."""
        pairs = job.legs.get("smtp")
        if pairs:
            group.announce(job.envelope, job.message, _routed(pairs))

    def _next_job(self, work: deque[Entry]) -> Job | None:
        """Lock and prepare the next entry of ``work`` that is not busy elsewhere and is wanted."""
        while work:
            entry = work.popleft()
            claim = self.store.claim(entry)
            if claim is None:
                if os.path.exists(self.store.json_path(entry.id)):  # not delivered or removed meanwhile: locked
                    self.report.busy += 1
                self.progress.step(self.report)
                continue
            now = time.time()
            if not self.wanted(claim.entry, now):
                claim.release()
                self.progress.step(self.report)
                continue
            try:
                return self._prepare(claim, now)
            except BaseException:
                claim.release()
                raise
        return None

    def _prepare(self, claim: Claim, now: float) -> Job:
        entry = claim.entry
        envelope = self.envelope(entry)
        message = QueuedMessage(claim.fd, entry, self.store.eml(entry.id))
        route = self.hooks.route(envelope, self.config)
        self.hooks.before_deliver(envelope, message, route, self.config)
        return Job(claim, envelope, message, self._legs(route, entry, envelope), now)

    async def _run(self, job: Job, group: GroupSession, work: deque[Entry], meanwhile: Callable[[], None]) -> None:
        claim = job.claim
        try:
            attempt = Attempt()
            for agent, pairs in job.legs.items():
                if agent == "smtp":
                    await self._smtp_leg(group, job.envelope, job.message, pairs, attempt, meanwhile)
                else:
                    self._agent_leg(agent, job.envelope, job.message, pairs, attempt)
            self.hooks.after_deliver(job.envelope, attempt.results, self.config)
            try:
                delivered = self._record(claim, attempt, job.now, work)
            except OSError as error:  # a full disk, say: the entry stays as it was and is tried again later
                why = error.strerror or str(error)
                self.errors.write(f"esmtp: queue entry {claim.entry.id}: could not record this try: {why}\n")
                self.report.deferred += 1
                delivered = False
            if delivered:
                if self.tidier is None:
                    self.store.tidy([claim.entry.id])
                else:
                    self.tidier.add(claim.entry.id)
        finally:
            claim.release()
            self.progress.step(self.report)

    def start(self) -> None:
        """Start the worker that removes delivered entries (before the event loop: it forks)."""
        if self.tidier is None:
            self.tidier = Tidier(self.store, self.errors)

    def finish(self) -> None:
        """Wait until the files of the delivered entries are removed for good."""
        if self.tidier is not None:
            self.tidier.finish()
            self.tidier = None

    def _legs(self, route: Route, entry: Entry, envelope: Envelope) -> dict[str, list[tuple[str, str]]]:
        """Each leg's (routed address, stored address) pairs, so that outcomes map back to the stored recipients.

        The core router keeps addresses as they are unless it qualifies local names (or ``force_mda`` replaces them
        all), so each recipient is routed on its own only when the addresses changed. Several stored recipients may
        then share one routed address; :func:`_routed` hands it to the agent once.
        """
        routed = [address for addresses in route.legs.values() for address in addresses]
        if sorted(routed) == sorted(entry.recipients):
            return {agent: [(a, a) for a in addresses] for agent, addresses in route.legs.items() if addresses}
        legs: dict[str, list[tuple[str, str]]] = {}
        for stored in entry.recipients:
            single = dataclasses.replace(envelope, recipients=[stored])
            for agent, addresses in self.hooks.route(single, self.config).legs.items():
                legs.setdefault(agent, []).extend((address, stored) for address in addresses)
        return legs

    async def _smtp_leg(self, group: GroupSession, envelope: Envelope, message: Message,
                        pairs: list[tuple[str, str]], attempt: Attempt, meanwhile: Callable[[], None]) -> None:
        pending = list(pairs)
        while pending:
            try:
                session = await group.get()
            except EsmtpError as error:
                self.hooks.deliver_error(envelope, error, self.config)
                attempt.temporary(pending, error, "connect")
                return
            try:
                crashpoint("flush-before-send")
                reply = await session.send(envelope, message, _routed(pending), meanwhile=meanwhile)
            except RecipientsRejected as error:
                self.hooks.deliver_error(envelope, error, self.config)
                refused = [(r, s) for r, s in pending if r in error.rejected]
                if not refused:  # the server stopped answering before naming anybody: retry the lot later
                    attempt.temporary(pending, error, "reply")
                    return
                for routed, stored in refused:
                    reply_text = error.rejected[routed]
                    if reply_text.startswith("4"):
                        attempt.temporary([(routed, stored)], error, "reply")
                    else:
                        attempt.permanent([(routed, stored)], f"{session.server}: {reply_text}")
                pending = [(r, s) for r, s in pending if r not in error.rejected]
                continue  # nothing was sent: the others are tried again at once
            except EsmtpError as error:
                self.hooks.deliver_error(envelope, error, self.config)
                if error.exit_code == EX_TEMPFAIL:
                    answered = getattr(error, "code", None) is not None
                    if not answered:
                        group.broke(error)
                    attempt.temporary(pending, error, "reply" if answered else "connect")
                else:
                    attempt.permanent(pending, str(error))
                return
            crashpoint("flush-after-send")
            group.accepted += 1
            attempt.ok(pending, DeliveryResult("smtp", _routed(pending), reply))
            return

    def _agent_leg(self, name: str, envelope: Envelope, message: Message, pairs: list[tuple[str, str]],
                   attempt: Attempt) -> None:
        from esmtp.pipeline import _no_agent

        recipients = _routed(pairs)
        try:
            agent = self.agents.get(name)
            if agent is None:
                raise _no_agent(name, recipients)
            result = agent.factory(self.context).deliver(envelope, message, recipients)
        except EsmtpError as error:
            self.hooks.deliver_error(envelope, error, self.config)
            if error.exit_code == EX_TEMPFAIL:
                attempt.temporary(pairs, error, "local")
            else:
                attempt.permanent(pairs, str(error))
            return
        attempt.ok(pairs, result)

    # ---- recording the outcome -----------------------------------------------------------------------------------

    def _record(self, claim: Claim, attempt: Attempt, now: float, work: deque[Entry]) -> bool:
        entry = claim.entry
        expires = entry.created + self.settings.max_age
        if (attempt.kind == "connect" and entry.last_error_kind == "connect" and not attempt.delivered
                and not attempt.failed and now < expires):
            # The server is still out of reach: nothing to write. During an outage, each run would otherwise
            # rewrite every queued entry just to count one more try.
            self.report.deferred += 1
            return False
        entry.delivered += [r for r in entry.recipients if r in attempt.delivered]
        entry.failed.update(attempt.failed)
        entry.recipients = [r for r in entry.recipients if r not in attempt.delivered and r not in attempt.failed]
        entry.last_attempt = now
        if entry.recipients:
            entry.attempts += 1
            error = attempt.error
            entry.last_error = " ".join(str(error).split()) if error is not None else "temporary failure"
            entry.last_error_kind = attempt.kind
            if now < expires:
                entry.next_retry = min(now + self.settings.backoff(entry.attempts), expires)
                self.store.save(entry)
                self.report.deferred += 1
                self.trace.info(f"queue: {entry.id} deferred until {time.ctime(entry.next_retry)}: {entry.last_error}")
                return False
            lifetime = _duration(self.settings.max_age)
            for recipient in entry.recipients:
                entry.failed[recipient] = f"{EXPIRED}not delivered within {lifetime}; last error: {entry.last_error}"
            entry.recipients = []
        if not entry.failed:
            self.store.forget(entry.id, claim.json_fd)
            self.report.delivered += 1
            self.trace.info(f"queue: {entry.id} delivered to {', '.join(entry.delivered)}")
            return True
        self._fail(claim, work)
        return False

    def _fail(self, claim: Claim, work: deque[Entry]) -> None:
        entry = claim.entry
        reasons = "; ".join(f"{r}: {why}" for r, why in entry.failed.items())
        entry.failure = reasons
        note = ""
        if self.settings.bounce and wants_bounce(entry):
            # Queued before the original moves, so a crash in between can repeat the bounce but never lose it.
            header_block = os.pread(claim.fd, entry.header_size, 0)
            bounce, parts = make_bounce(entry, self.store.eml(entry.id), header_block,
                                        hostname=self.identity(entry).helo)
            self.store.enqueue(bounce, parts)
            work.append(bounce)
            self.progress.add(1)
            self.report.bounced += 1
            note = f"; bounce {bounce.id} queued to <{entry.sender}>"
        self.store.move_to_failed(entry)
        self.report.failed += 1
        self.errors.write(f"esmtp: queue entry {entry.id} failed: {reasons}{note}\n")


@dataclass(slots=True)
class Job:
    """An entry locked and routed, ready to be sent."""

    claim: Claim
    envelope: Envelope
    message: QueuedMessage
    legs: dict[str, list[tuple[str, str]]]
    now: float


@dataclass(slots=True)
class Attempt:
    """Outcomes of one try of one entry, by stored recipient."""

    delivered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    results: list[DeliveryResult] = field(default_factory=list)
    error: EsmtpError | None = None
    kind: ErrorKind | None = None

    def ok(self, pairs: list[tuple[str, str]], result: DeliveryResult) -> None:
        self.delivered.update(stored for _, stored in pairs)
        self.results.append(result)

    def permanent(self, pairs: list[tuple[str, str]], reason: str) -> None:
        for _, stored in pairs:
            self.failed[stored] = " ".join(reason.split())

    def temporary(self, pairs: list[tuple[str, str]], error: EsmtpError, kind: ErrorKind) -> None:
        # A reply from a server outranks "could not connect" when deciding how soon to retry.
        if self.error is None or (self.kind == "connect" and kind != "connect"):
            self.error, self.kind = error, kind


def _routed(pairs: list[tuple[str, str]]) -> list[str]:
    """A leg's routed addresses, each once: several stored recipients can route to one address (``force_mda``
    routes everybody to its one name; ``qualifydomain`` turns ``alice`` into an ``alice@domain`` that may be there
    already), and the agent must get it once, as in direct delivery."""
    return list(dict.fromkeys(routed for routed, _ in pairs))


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ---- the runs ------------------------------------------------------------------------------------------------------


def _prepare(store: QueueStore, delivered: list[str]) -> list[Entry]:
    """Clean up after crashes, then list the entries: finish interrupted moves to failed/, remove the files of
    entries that were delivered by a run killed before it removed them, collect old left-overs."""
    store.repair()
    entries = list(store.scan(delivered=delivered))
    if delivered:
        store.tidy(delivered)
    store.collect_garbage()
    return entries


async def _flush(flusher: Flusher) -> None:
    store = flusher.store
    now = time.time()
    delivered: list[str] = []
    entries = [entry for entry in _prepare(store, delivered) if flusher.wanted(entry, now)]
    if flusher.selected is not None:
        present = {entry.id for entry in entries}
        flusher.report.missing = [i for i in sorted(flusher.selected) if i not in present]
    try:
        if entries:
            await flusher.deliver(entries)
    finally:
        await flusher.close()


def flush(store: QueueStore, settings: Settings, config: Config, hooks: Hooks, trace: Trace, *,
          selected: list[str] | None = None) -> Report:
    """``esmtp --flush`` / ``sendmail -q``: deliver the due entries (or the selected ones) now, in the foreground."""
    progress = Progress(sys.stderr, sys.stderr.isatty() and not trace.verbose)
    flusher = Flusher(store, settings, config, hooks, trace, selected=selected, progress=progress)
    flusher.start()
    try:
        asyncio.run(_flush(flusher))
    finally:
        flusher.finish()
        progress.finish()
    return flusher.report


# ---- the background run --------------------------------------------------------------------------------------------


def try_lock(path: str) -> int | None:
    """Take the runner lock without waiting; the fd holds it (None: another run holds it)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _background(flusher: Flusher, lock_fd: int) -> None:
    """Deliver what is due, wait ``LINGER`` for more, release the runner lock, and look once more.

    Whoever queues a message either gets the runner lock (and starts a run) or finds it held; in the second case
    the holder's look after releasing sees the new entry. So no new entry is left waiting for the next flush.
    """
    store = flusher.store
    _prepare(store, [])
    seen: set[str] = set()
    fd: int | None = lock_fd
    try:
        while fd is not None:
            idle_since = time.monotonic()
            while True:
                now = time.time()
                batch = [e for e in _new_entries(store, seen) if flusher.wanted(e, now)]
                seen.update(e.id for e in batch)
                if batch:
                    await flusher.deliver(batch)
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= LINGER:
                    break
                else:
                    await asyncio.sleep(_POLL)
            await flusher.close()
            os.close(fd)
            fd = None
            if any(e.attempts == 0 for e in _new_entries(store, seen)):
                fd = try_lock(os.path.join(store.path, "runner.lock"))
    finally:
        await flusher.close()
        if fd is not None:
            os.close(fd)


def _new_entries(store: QueueStore, seen: set[str]) -> list[Entry]:
    entries = []
    for entry_id in store.ids():
        if entry_id in seen:
            continue
        try:
            entry = store.load(entry_id)
        except (Delivered, OSError, ValueError, TypeError):
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def background_main(argv: list[str]) -> int:
    """The detached run started after a message is queued: ``CONFIG-PATH QUEUE-DIR LOCK-FD`` (the lock is held).

    Its output goes to ``flush.log`` in the queue directory, never to the terminal of whoever queued the mail.
    """
    config_path, queue_dir, lock_fd = argv
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    # Line by line: whoever waits for the runner lock to be released finds every line in the log by then.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        from esmtp.config import load_config
        from esmtp.plugins import Hooks, make_plugin_manager, resolve_config

        config = load_config(config_path or None)
        hooks = Hooks(make_plugin_manager(config))
        resolve_config(config, hooks)
        settings = Settings.from_options(config.options)
        store = QueueStore(queue_dir)
        flusher = Flusher(store, settings, config, hooks, Trace(), errors=sys.stdout)
        flusher.start()
        try:
            asyncio.run(_background(flusher, int(lock_fd)))
        finally:
            flusher.finish()
    except EsmtpError as error:
        print(f"{stamp} [{os.getpid()}] background run failed: {error}", flush=True)
        return error.exit_code
    except Exception as error:  # the log is the only place anybody will see it
        print(f"{stamp} [{os.getpid()}] background run failed: {type(error).__name__}: {error}", flush=True)
        return 70
    report = flusher.report
    if report.delivered or report.deferred or report.failed:
        print(f"{stamp} [{os.getpid()}] {report.summary()}", flush=True)
    return report.exit_code
