"""Delivering the queue: entries grouped by identity and smarthost, one SMTP session (one login) per group.

Loaded only when a flush runs (in the foreground, or the background run); with the modules it uses (sessions,
message, tidier, bounce), it is the part of the queue that imports asyncio and the SMTP client.

Per entry: lock it, re-route its stored envelope (the stored message is final: no header fix-ups run again), sign it
(``esmtp_sign_message``: a signature is made when the message is sent, not when it was queued), send each leg, then
record the outcome in one state change: delivered (the entry is marked, then removed), deferred (retry later with
exponential backoff), or failed (moved to ``failed/``, with a bounce when the configuration asks for one). The
outcome of a message is recorded before the data of the next one is sent.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from esmtp.config.model import Config, Identity
from esmtp.crashpoints import crashpoint
from esmtp.delivery_log import record
from esmtp.errors import (
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EsmtpError,
    NoDeliveryAgent,
    PermanentFailure,
    RecipientsRejected,
)
from esmtp.plugins import Hooks
from esmtp.progname import name as program_name
from esmtp.smtp import failover
from esmtp.smtp.kept import KeepPolicy, KeptSession, connection_key
from esmtp.smtp.ratelimit import RateLimited, give_back, take_slot
from esmtp.trace import Trace
from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, Route, RunContext

from . import clock
from .bounce import EXPIRED, make_bounce, wants_bounce, wants_double_bounce
from .entry import Entry, ErrorKind, error_kind, is_due
from .message import QueuedMessage
from .settings import Settings, format_duration
from .store import Claim, QueueStore
from .tidier import Tidier

#: A flush sends without pause and drives its own retries: a connection that breaks is opened again for the next
#: entry (after ``preconnect``), and after three breaks the rest of the group waits for the next run.
QUEUE_POLICY = KeepPolicy(idle=float("inf"), resend_after_drop=False, bracketed=True, max_breaks=3)


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
        self.agents: dict[str, DeliveryAgent] = hooks.delivery_agents()
        self.sessions: dict[tuple[object, ...], KeptSession] = {}
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
        if entry.identity is None:
            return self.config.default
        from esmtp.config.identities import named_identity

        # The block the entry was queued with, by its name (its first address, perhaps a pattern).
        return named_identity(self.config, entry.identity) or self.config.identity_for(entry.identity)

    def envelope(self, entry: Entry) -> Envelope:
        return entry.to_envelope(self.identity(entry))

    # ---- running -------------------------------------------------------------------------------------------------

    async def deliver(self, entries: list[Entry]) -> None:
        """Deliver ``entries``: one task per group, at most ``concurrency`` groups at a time."""
        groups: dict[tuple[object, ...], deque[Entry]] = {}
        for entry in entries:
            identity = self.identity(entry)
            key = connection_key(identity)
            groups.setdefault(key, deque()).append(entry)
            if key not in self.sessions:
                self.sessions[key] = KeptSession(identity, self.hooks, self.trace, QUEUE_POLICY, warn=self._warn)
        self.progress.add(len(entries))
        limit = asyncio.Semaphore(self.settings.concurrency)
        await asyncio.gather(*(self._group(self.sessions[key], work, limit) for key, work in groups.items()))

    async def close(self) -> None:
        for group in self.sessions.values():
            await group.close()
        self.sessions.clear()

    async def _group(self, group: KeptSession, work: deque[Entry], limit: asyncio.Semaphore) -> None:
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
                    except BaseException as error:  # noqa: BLE001  (raised once the message in flight is recorded)
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
    def _announce(group: KeptSession, job: Job) -> None:
        """Let the group's session pipeline ``job``'s commands with the final dot of the message before it."""
        pairs = job.legs.get("smtp")
        # Not under a rate_limit: the next message's commands would go out before it has its slot.
        if pairs and "rate_limit" not in group.identity.options:
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
            now = clock.now()
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
        self.hooks.sign_message(envelope, message, self.config, self.trace)  # now: a fresh signature for this try
        return Job(claim, envelope, message, self._legs(route, entry, envelope), now)

    async def _run(self, job: Job, group: KeptSession, work: deque[Entry], meanwhile: Callable[[], None]) -> None:
        claim = job.claim
        try:
            attempt = Attempt()
            for agent, pairs in job.legs.items():
                if agent == "smtp":
                    await self._smtp_leg(group, job, pairs, attempt, meanwhile)
                else:
                    self._agent_leg(agent, job, pairs, attempt)
            self.hooks.after_deliver(job.envelope, attempt.results, self.config)
            try:
                delivered = self._record(claim, attempt, job.now, work)
            except OSError as error:  # a full disk, say: the entry stays as it was and is tried again later
                why = error.strerror or str(error)
                self.errors.write(f"{program_name()}: queue entry {claim.entry.id}: could not record this try: {why}\n")
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

    async def _smtp_leg(self, group: KeptSession, job: Job, pairs: list[tuple[str, str]], attempt: Attempt,
                        meanwhile: Callable[[], None]) -> None:
        envelope, message = job.envelope, job.message
        pending = list(pairs)
        switches = len(failover.candidates(group.identity)) - 1  # other servers this message may move to
        while pending:
            started = time.monotonic()
            try:
                stamp = take_slot(group.identity)  # the identity's rate_limit: RateLimited when the window is full
            except EsmtpError as error:
                self._log(job, "smtp", pending, started, error=error)
                attempt.temporary(pending, error, "reply")
                return
            try:
                session = await group.get(envelope.sender)
            except EsmtpError as error:
                give_back(group.identity, stamp)
                self.hooks.deliver_error(envelope, error, self.config)
                self._log(job, "smtp", pending, started, error=error)
                if await self._fallback(group.identity, job, pending, attempt, error):
                    return
                attempt.temporary(pending, error, "connect")
                return
            try:
                crashpoint("flush-before-send")
                reply = await session.send(envelope, message, _routed(pending), meanwhile=meanwhile)
            except RecipientsRejected as error:
                give_back(group.identity, stamp)
                self.hooks.deliver_error(envelope, error, self.config)
                self._log(job, "smtp", pending, started, error=error)
                refused = [(r, s) for r, s in pending if r in error.rejected]
                if not refused:  # the server stopped answering before naming anybody: retry the lot later
                    attempt.temporary(pending, error, "reply")
                    return
                for routed, stored in refused:
                    if error.refused_for_now(routed):
                        attempt.temporary([(routed, stored)], error, "reply")
                    else:
                        attempt.permanent([(routed, stored)], f"{session.server}: {error.rejected[routed]}")
                pending = [(r, s) for r, s in pending if r not in error.rejected]
                continue  # nothing was sent: the others are tried again at once
            except EsmtpError as error:
                if not session.data_started:
                    give_back(group.identity, stamp)
                if switches > 0 and failover.may_fail_over(error):
                    # 4xx to MAIL, RCPT or DATA, or to the final dot: the next server gets it, as a send would.
                    switches -= 1
                    failover.remember(session.identity)
                    self.trace.info(f"{error}; trying the next server")
                    await group.close()
                    continue
                self.hooks.deliver_error(envelope, error, self.config)
                self._log(job, "smtp", pending, started, error=error)
                if error.temporary:
                    kind = error_kind(error)
                    if kind != "reply":
                        group.broke(error)
                    attempt.temporary(pending, error, kind)
                else:
                    attempt.permanent(pending, str(error))
                return
            crashpoint("flush-after-send")
            group.accepted += 1
            result = DeliveryResult("smtp", _routed(pending), reply)
            self._log(job, "smtp", pending, started, result=result)
            attempt.ok(pending, result)
            return

    async def _fallback(self, identity: Identity, job: Job, pending: list[tuple[str, str]], attempt: Attempt,
                        error: EsmtpError) -> bool:
        """Every server of ``identity`` is out of reach: send through its ``fallback_identity``, as a send would, on a
        connection of its own (not kept: the fallback's own group may hold its kept session). True when that
        settled the leg (delivered, or refused for good); False to keep the entry for a later try."""
        try:
            fallback = failover.fallback_of(identity, self.config)
        except EsmtpError:
            return False
        if fallback is None or not failover.may_fail_over(error):
            return False
        started = time.monotonic()
        recipients = _routed(pending)
        self.trace.info(f"{error}; trying fallback_identity {fallback.address}")
        kept = KeptSession(fallback, self.hooks, self.trace, KeepPolicy(resend_after_drop=False), warn=self._warn)
        try:
            stamp = take_slot(fallback)
            try:
                reply = await kept.send(job.envelope, job.message, recipients)
                taken = kept.session.server if kept.session is not None else str(fallback.hostname)
            except EsmtpError as failure:
                if not failure.data_started:
                    give_back(fallback, stamp)
                raise
            finally:
                await kept.close()
        except EsmtpError as failure:
            self.hooks.deliver_error(job.envelope, failure, self.config)
            self._log(job, "smtp", pending, started, error=failure)
            if failure.temporary:
                return False
            attempt.permanent(pending, str(failure))
            return True
        result = DeliveryResult("smtp", recipients, reply, server=f"{taken} (fallback_identity {fallback.address})")
        self._log(job, "smtp", pending, started, result=result)
        attempt.ok(pending, result)
        return True

    def _agent_leg(self, name: str, job: Job, pairs: list[tuple[str, str]], attempt: Attempt) -> None:
        envelope, recipients, started = job.envelope, _routed(pairs), time.monotonic()
        try:
            agent = self.agents.get(name)
            if agent is None:
                raise NoDeliveryAgent(name, recipients)
            result = agent.factory(self.context).deliver(envelope, job.message, recipients)
        except EsmtpError as error:
            self.hooks.deliver_error(envelope, error, self.config)
            self._log(job, name, pairs, started, error=error)
            if error.temporary:
                attempt.temporary(pairs, error, "local")
            else:
                attempt.permanent(pairs, str(error))
            return
        self._log(job, name, pairs, started, result=result)
        attempt.ok(pairs, result)

    def _warn(self, warning: str) -> None:
        self.errors.write(f"{program_name()}: queue: warning: {warning} (the mail was sent)\n")

    def _log(self, job: Job, agent: str, pairs: list[tuple[str, str]], started: float, *,
             result: DeliveryResult | None = None, error: EsmtpError | None = None) -> None:
        """This try of a leg, in the delivery log (``logfile``/``syslog``, when configured), with the entry's id."""
        record(self.config, job.envelope, job.message.size, agent, _routed(pairs), started, result=result,
               error=error, queue_id=job.claim.entry.id)

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
        if entry.recipients and isinstance(attempt.error, RateLimited) and now < expires:
            # Not a failed try: the entry waits for a free slot of the identity's rate_limit, and no longer.
            entry.last_error = str(attempt.error)
            entry.next_retry = min(now + attempt.error.retry_after, expires)
            self.store.save(entry)
            self.report.deferred += 1
            self.trace.info(f"queue: {entry.id} deferred until {time.ctime(entry.next_retry)}: {entry.last_error}")
            return False
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
            lifetime = format_duration(self.settings.max_age)
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
        bounce_id = None
        admin = self.config.options.get("admin_address")
        double = self.settings.bounce and wants_double_bounce(entry, admin)
        if (self.settings.bounce and wants_bounce(entry)) or double:
            # Queued before the original moves, so a crash in between can repeat the bounce but never lose it.
            header_block = os.pread(claim.fd, entry.header_size, 0)
            bounce, parts = make_bounce(entry, self.store.eml(entry.id), header_block,
                                        hostname=_helo(self.identity(entry).helo), to=admin if double else None)
            self.store.enqueue(bounce, parts)
            work.append(bounce)
            self.progress.add(1)
            self.report.bounced += 1
            note = f"; bounce {bounce.id} queued to <{bounce.recipients[0]}>"
            bounce_id = bounce.id
        self.store.move_to_failed(entry)
        self.report.failed += 1
        self.errors.write(f"{program_name()}: queue entry {entry.id} failed: {reasons}{note}\n")
        # The queue gives up: one line (host=queue) with the reasons, the time spent queued and the bounce's id.
        record(self.config, self.envelope(entry), entry.size, "queue", list(entry.failed),
               time.monotonic() - (clock.now() - entry.created), error=PermanentFailure(reasons), queue_id=entry.id,
               bounce_id=bounce_id)


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


# ---- the runs ------------------------------------------------------------------------------------------------------


async def _flush(flusher: Flusher) -> None:
    store = flusher.store
    now = clock.now()
    delivered: list[str] = []
    entries = [entry for entry in store.recover(delivered) if flusher.wanted(entry, now)]
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




def _helo(helo: str | None) -> str | None:
    """The identity's ``helo`` with %H and %D expanded (the bounce's own sender has no domain: the host name)."""
    from esmtp.config.model import helo_name

    return None if helo is None else helo_name(helo)
