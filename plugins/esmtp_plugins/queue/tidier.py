"""The removal worker: a child process that removes the files of delivered entries, a batch at a time."""

from __future__ import annotations

import os
from typing import TextIO

from esmtp.progname import name as program_name

from .store import QueueStore

#: Delivered ids are handed to the removal worker this many at a time (each id is ~20 bytes: one atomic pipe write).
TIDY_BATCH = 64


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
            self.errors.write(
                f"{program_name()}: queue: could not remove delivered entries {', '.join(ids)}: {error}\n"
            )

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
                self.errors.write(
                    f"{program_name()}: queue: could not remove some delivered entries (the next flush will)\n"
                )


def _tidy_worker(store: QueueStore, pipe: int) -> None:
    dir_fd = os.open(store.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    pending = b""
    while data := os.read(pipe, 1 << 16):
        *lines, pending = (pending + data).split(b"\n")
        store.tidy([line.decode("ascii") for line in lines], dir_fd)
