"""The identity's connection commands: ``preconnect`` runs before a connection is opened (an ssh tunnel, a VPN, a
dial-up link), ``postconnect`` after a connection over which the server accepted mail. Both are the user's own shell
commands and run under ``/bin/sh -c`` as esmtp 1.2 ran them with ``system()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from esmtp.errors import EX_OSERR, DeliveryError, TemporaryFailure

if TYPE_CHECKING:
    from esmtp.trace import Trace


def run_command(command: str) -> int:
    """Run ``command`` with ``/bin/sh -c``; return its exit status (negative: the signal that killed it).

    Standard input is /dev/null (ours has been read to end of file); standard output and error are inherited, as
    with ``system()``.
    """
    import subprocess

    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, check=False).returncode


def _outcome(status: int) -> str:
    return f"received signal {-status}" if status < 0 else f"exited with non-zero status {status}"


def preconnect(command: str, trace: Trace) -> None:
    """Run the ``preconnect`` command. Its failure is temporary: nothing was sent, and a later try may succeed.

    esmtp 1.2 exited 70 here; this implementation raises TemporaryFailure (75), so the queue can keep the message.
    """
    trace.info(f"Executing pre-connect command: {command}")
    try:
        status = run_command(command)
    except OSError as error:
        raise DeliveryError(f"Error executing pre-connect command: {error.strerror or error}",
                            exit_code=EX_OSERR) from error
    if status != 0:
        raise TemporaryFailure(f'Pre-connect command "{command}" {_outcome(status)}; nothing was sent')


def postconnect(command: str, trace: Trace) -> str | None:
    """Run the ``postconnect`` command after a session in which the server accepted mail; return a warning if it
    failed. The mail is already sent, so a failure only warns (esmtp 1.2 exited 70, which made callers retry a
    message that had been delivered); the caller says where the warning goes."""
    trace.info(f"Executing post-connect command: {command}")
    try:
        status = run_command(command)
    except OSError as error:
        return f"Error executing post-connect command: {error.strerror or error}"
    if status != 0:
        return f'Post-connect command "{command}" {_outcome(status)}'
    return None
