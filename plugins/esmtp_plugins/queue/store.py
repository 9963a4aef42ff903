"""The queue's files: durable enqueue, per-entry locks, state changes and the failed area. No SMTP here.

Layout of the queue directory (mode 0700)::

    <id>.eml        the message as it will be sent (headers after fix-ups, blank line, body); never changes
    <id>.json       the envelope and the delivery state; its presence is what makes the entry exist
    tmp/            files being written; renamed into place once complete and fsynced
    failed/         entries that failed permanently or expired (<id>.json and <id>.eml)
    runner.lock     held (flock) by the background run, so that bursts of mail share one run
    flush.log       what background runs printed

Rules that make it crash-safe (kill -9 or power loss at any point):

* enqueue writes both files in ``tmp/``, fsyncs them, renames the message then the envelope into place and fsyncs
  the directory. An entry is visible only once its ``.json`` is; a partial enqueue leaves only files that
  :func:`QueueStore.collect_garbage` removes later.
* a flusher locks ``<id>.eml`` (flock, released by the kernel when the process dies, so no lock is ever stale) and
  re-reads the envelope if it changed since the directory was listed. Two flushers never hold the same entry.
* a state change is one atomic rename of a fsynced file (``.json``), or one unlink followed by one directory fsync
  (delivered: ``.json`` first, so that a half-removed entry is an orphan message, never an envelope without one).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from esmtp.crashpoints import crashpoint

from . import clock
from .entry import DELIVERED_MARK, Delivered, Entry

if TYPE_CHECKING:
    pass

#: Files in tmp/ and orphan messages older than this are left-overs of a crash, never work in progress.
GARBAGE_AGE = 3600.0
_COPY_CHUNK = 1 << 20
_READ_CHUNK = 1 << 16


class QueueError(OSError):
    """A queue file operation failed (the message says which and why)."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    """A whole (small) regular file. A short read is its end, so an envelope usually takes one system call."""
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, _READ_CHUNK, offset)
        chunks.append(chunk)
        offset += len(chunk)
        if len(chunk) < _READ_CHUNK:
            return b"".join(chunks)


def _copy_file(src_path: str, dst_fd: int) -> int:
    """Append all of ``src_path`` to ``dst_fd`` (in the kernel when it can); return the number of bytes."""
    copied = 0
    with open(src_path, "rb") as src:
        src_fd = src.fileno()
        try:
            while sent := os.sendfile(dst_fd, src_fd, None, _COPY_CHUNK):
                copied += sent
            return copied
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or copied:
                raise
        while chunk := src.read(_COPY_CHUNK):
            _write_all(dst_fd, chunk)
            copied += len(chunk)
    return copied


@dataclass(slots=True)
class Claim:
    """An entry locked by this process. ``release`` (or the process dying) unlocks it."""

    entry: Entry
    #: The message file, which holds the lock.
    fd: int
    #: The envelope file as it was under the lock (for the delivered mark). Only the holder of the claim replaces
    #: the envelope (:meth:`QueueStore.save`); after that this descriptor is stale.
    json_fd: int = -1

    def release(self) -> None:
        if self.json_fd >= 0:
            os.close(self.json_fd)
            self.json_fd = -1
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class QueueStore:
    """The files of one queue directory.

    ``owner``: the system service's queue as one local account sees it (``mailq``, ``--remove``): only the entries
    it submitted (:attr:`Entry.submitter`) are listed or removed; None: every entry.
    """

    def __init__(self, path: str, owner: int | None = None) -> None:
        self.path = path
        self.tmp = os.path.join(path, "tmp")
        self.failed_dir = os.path.join(path, "failed")
        self.owner = owner

    # ---- paths ---------------------------------------------------------------------------------------------------

    def eml(self, entry_id: str, *, failed: bool = False) -> str:
        return os.path.join(self.failed_dir if failed else self.path, f"{entry_id}.eml")

    def json_path(self, entry_id: str, *, failed: bool = False) -> str:
        return os.path.join(self.failed_dir if failed else self.path, f"{entry_id}.json")

    def ensure(self) -> None:
        """Create the directories (0700: the queue holds other people's mail addresses and your messages)."""
        for path in (self.path, self.tmp, self.failed_dir):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise QueueError(errno.ENOTDIR, f"{path} exists and is not a directory") from None
            except FileNotFoundError:
                os.makedirs(path, 0o700, exist_ok=True)

    # ---- enqueue -------------------------------------------------------------------------------------------------

    def enqueue(self, entry: Entry, parts: Iterable[bytes | str]) -> Entry:
        """Store a new entry durably. The message is the concatenation of ``parts``: bytes, or paths of files to copy.

        When this returns, the entry survives a crash or power loss. On any error nothing is left in the queue
        (partial files are removed) and the OSError propagates.
        """
        self.ensure()
        tmp_eml = os.path.join(self.tmp, f"{entry.id}.eml")
        tmp_json = os.path.join(self.tmp, f"{entry.id}.json")
        final_eml = self.eml(entry.id)
        created: list[str] = []
        try:
            fd = os.open(tmp_eml, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            created.append(tmp_eml)
            try:
                size = 0
                for part in parts:
                    if isinstance(part, str):
                        size += _copy_file(part, fd)
                    else:
                        _write_all(fd, part)
                        size += len(part)
                crashpoint("enqueue-written")
                os.fsync(fd)
            finally:
                os.close(fd)
            entry.size = size
            self._write_json(tmp_json, entry, exclusive=True)
            created.append(tmp_json)
            os.rename(tmp_eml, final_eml)
            created[0] = final_eml
            crashpoint("enqueue-message-renamed")
            os.rename(tmp_json, self.json_path(entry.id))  # the commit point
            created.pop()
            crashpoint("enqueue-committed")
            _fsync_dir(self.path)
        except BaseException:
            # Once the .json is in place the entry exists: only the directory fsync failed, and removing the entry
            # now would be worse than keeping it. Before that, undo.
            if not os.path.exists(self.json_path(entry.id)):
                for path in created:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            raise
        return entry

    def _write_json(self, path: str, entry: Entry, *, exclusive: bool = False) -> None:
        entry.rev = os.urandom(4).hex()
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        try:
            _write_all(fd, entry.to_json())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)

    # ---- reading -------------------------------------------------------------------------------------------------

    def load(self, entry_id: str, *, failed: bool = False) -> Entry | None:
        """Read one entry, or None if it does not exist. Raises :class:`Delivered` for a delivered entry whose files
        are not removed yet, ValueError (or OSError) for an unreadable one."""
        try:
            fd = os.open(self.json_path(entry_id, failed=failed), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return Entry.from_json(_read_all(fd))
        finally:
            os.close(fd)

    def ids(self, *, failed: bool = False) -> list[str]:
        """Ids of the entries present, oldest first (ids sort by creation time)."""
        try:
            names = os.listdir(self.failed_dir if failed else self.path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name[:-5] for name in names if name.endswith(".json"))

    def scan(self, *, failed: bool = False, delivered: list[str] | None = None,
             unreadable: list[str] | None = None) -> Iterator[Entry]:
        """Every readable entry, oldest first. Delivered entries not yet removed and unreadable envelopes are
        skipped; their ids are appended to ``delivered`` and ``unreadable`` when given."""
        for entry_id in self.ids(failed=failed):
            try:
                entry = self.load(entry_id, failed=failed)
            except Delivered:
                if delivered is not None:
                    delivered.append(entry_id)
                continue
            except (OSError, ValueError, TypeError):
                if unreadable is not None:
                    unreadable.append(entry_id)
                continue
            if entry is not None and self.owner in (None, entry.submitter):
                yield entry

    # ---- locking -------------------------------------------------------------------------------------------------

    def claim(self, entry: Entry) -> Claim | None:
        """Lock ``entry`` for delivery; None if another process holds it, or it is gone or delivered meanwhile.

        The envelope is checked again under the lock (another flusher may have changed it since ``entry`` was
        listed): read again when it is another file (every save renames a new one into place), and in any case its
        first byte, which is the delivered mark.
        """
        try:
            fd = os.open(self.eml(entry.id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        claim = Claim(entry, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Removed between our open and our lock? Every removal takes the envelope first, so then it is gone.
            claim.json_fd = os.open(self.json_path(entry.id), os.O_RDWR | os.O_CLOEXEC)
            claim.entry = self._reread(entry, claim.json_fd)
        except (BlockingIOError, FileNotFoundError, Delivered, ValueError, TypeError):
            claim.release()
            return None
        except BaseException:
            claim.release()
            raise
        return claim

    @staticmethod
    def _reread(entry: Entry, json_fd: int) -> Entry:
        expected = entry.prefix()
        head = os.pread(json_fd, len(expected), 0)
        if head[:1] == DELIVERED_MARK:
            raise Delivered(entry.id)
        if head == expected:
            return entry
        return Entry.from_json(_read_all(json_fd))

    # ---- state changes (the caller holds the claim) --------------------------------------------------------------

    def save(self, entry: Entry) -> None:
        """Replace the entry's state (a fsynced file renamed over the old one)."""
        tmp = os.path.join(self.tmp, f"{entry.id}.json")
        self._write_json(tmp, entry)
        crashpoint("save-before-rename")
        os.rename(tmp, self.json_path(entry.id))

    def delete(self, entry_id: str) -> None:
        """Remove a delivered entry for good: mark it, remove both files, one directory fsync."""
        self.forget(entry_id)
        self.tidy([entry_id])

    def forget(self, entry_id: str, json_fd: int = -1) -> None:
        """The commit point of a delivery: mark the envelope delivered, so that no flusher sends the entry again.

        One byte written in place (microseconds; an unlink costs a hundred times more on a journalling file system).
        It survives the process being killed at once; :meth:`tidy` then makes it durable by removing the files.
        ``json_fd`` is the claim's envelope descriptor (:attr:`Claim.json_fd`), which saves opening the file again.
        """
        if json_fd >= 0:
            os.pwrite(json_fd, DELIVERED_MARK, 0)
        else:
            fd = os.open(self.json_path(entry_id), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, DELIVERED_MARK, 0)
            finally:
                os.close(fd)
        crashpoint("delivered-marked")

    def tidy(self, entry_ids: Iterable[str], dir_fd: int | None = None, *, fsync: bool = True) -> None:
        """Remove the files of delivered entries (envelope first), then one directory fsync for all of them
        (``fsync=False``: the caller syncs the directory itself, once for several calls)."""
        for entry_id in entry_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.json_path(entry_id))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.eml(entry_id))
        if not fsync:
            return
        if dir_fd is None:
            _fsync_dir(self.path)
        else:
            os.fsync(dir_fd)

    def move_to_failed(self, entry: Entry) -> None:
        """Move an entry to the failed area with its final state.

        Order: the new ``failed/<id>.json`` (the commit point), the message, then the old envelope. A crash in
        between leaves an entry present in both places, which :meth:`repair` completes.
        """
        self.ensure()
        tmp = os.path.join(self.tmp, f"{entry.id}.json")
        self._write_json(tmp, entry)
        os.rename(tmp, self.json_path(entry.id, failed=True))
        crashpoint("fail-committed")
        self._finish_move(entry.id)

    def _finish_move(self, entry_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.eml(entry_id), self.eml(entry_id, failed=True))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.json_path(entry_id))
        _fsync_dir(self.failed_dir)
        _fsync_dir(self.path)

    def remove(self, entry_id: str) -> Literal["removed", "busy", "missing"]:
        """Delete a queued or failed entry (``esmtp --remove``). An entry being delivered is not touched."""
        for failed in (False, True):
            if not os.path.exists(self.json_path(entry_id, failed=failed)):
                continue
            if self.owner is not None and not self._owned(entry_id, failed):
                return "missing"  # another account's: not even its existence is told
            try:
                fd = os.open(self.eml(entry_id, failed=failed), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            try:
                if fd >= 0:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        return "busy"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.json_path(entry_id, failed=failed))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.eml(entry_id, failed=failed))
                _fsync_dir(self.failed_dir if failed else self.path)
                return "removed"
            finally:
                if fd >= 0:
                    os.close(fd)
        return "missing"

    def _owned(self, entry_id: str, failed: bool) -> bool:
        try:
            entry = self.load(entry_id, failed=failed)
        except (Delivered, OSError, ValueError, TypeError):
            return False
        return entry is not None and entry.submitter == self.owner

    # ---- recovery ------------------------------------------------------------------------------------------------

    def recover(self, delivered: list[str]) -> list[Entry]:
        """Clean up after crashes, then list the entries: finish interrupted moves to failed/, remove the files of
        entries that were delivered by a run killed before it removed them (their ids are appended to
        ``delivered``), collect old left-overs."""
        self.repair()
        entries = list(self.scan(delivered=delivered))
        if delivered:
            self.tidy(delivered)
        self.collect_garbage()
        return entries

    def repair(self) -> None:
        """Finish moves to the failed area that a crash interrupted (the entry is then in both places)."""
        failed = set(self.ids(failed=True))
        for entry_id in self.ids():
            if entry_id in failed:
                self._finish_move(entry_id)

    def collect_garbage(self, now: float | None = None) -> int:
        """Remove left-overs of crashes: old files in tmp/, and old messages whose envelope never arrived or was
        already removed (a delivered entry killed between its two unlinks). Returns how many files went."""
        now = clock.now() if now is None else now
        removed = 0
        failed = set(self.ids(failed=True))
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return 0
        present = {name[:-5] for name in names if name.endswith(".json")}
        for name in names:
            if not name.endswith(".eml") or name[:-4] in present:
                continue
            entry_id = name[:-4]
            if entry_id in failed:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.eml(entry_id), self.eml(entry_id, failed=True))
                continue
            removed += self._remove_if_old(os.path.join(self.path, name), now, lock=True)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.tmp):
                removed += self._remove_if_old(os.path.join(self.tmp, name), now, lock=False)
        return removed

    @staticmethod
    def _remove_if_old(path: str, now: float, *, lock: bool) -> int:
        try:
            if now - os.stat(path).st_mtime < GARBAGE_AGE:
                return 0
            if lock:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(path)
                finally:
                    os.close(fd)
            else:
                os.unlink(path)
        except (BlockingIOError, FileNotFoundError):
            return 0
        return 1
