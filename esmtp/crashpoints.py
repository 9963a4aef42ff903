"""Test-only crash points: places where the crash tests make the process kill itself (SIGKILL), to show that nothing
is lost and nothing sent twice whatever the moment of death.

Armed by the environment, read once, when a point is first reached (never at import): ``ESMTP_QUEUE_CRASH_AT`` names
the queue's points (comma-separated), ``ESMTP_RELAY_TEST_CRASH`` one point of the warm relay. Both are part of the
warm relay's fingerprint (:data:`esmtp.front.FINGERPRINT_VARS`), so a resident process never serves a caller
armed differently.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Iterator

    from esmtp.message import Message

#: The variables that arm crash points.
VARIABLES = ("ESMTP_QUEUE_CRASH_AT", "ESMTP_RELAY_TEST_CRASH")
_armed: frozenset[str] | None = None


def armed(name: str) -> bool:
    """Whether the environment asks to die at the point ``name``."""
    global _armed
    if _armed is None:
        points = [*os.environ.get("ESMTP_QUEUE_CRASH_AT", "").split(","), os.environ.get("ESMTP_RELAY_TEST_CRASH", "")]
        _armed = frozenset(filter(None, points))
    return name in _armed


def crashpoint(name: str) -> None:
    """Die here (SIGKILL: no clean-up, as a power cut or the OOM killer) when the point ``name`` is armed."""
    if armed(name):
        os.kill(os.getpid(), 9)


def dying_message(message: Message) -> Message:
    """``message``, whose data kills this process after its first chunks went out: a death in the middle of DATA
    (the point ``data``)."""

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(message, name)

        def chunks(self, chunk_size: int = 1 << 16) -> Iterator[bytes]:
            for index, chunk in enumerate(message.chunks(chunk_size)):
                if index == 2:
                    os.kill(os.getpid(), 9)
                yield chunk

    return cast("Message", Dying())
