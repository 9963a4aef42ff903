"""Failover: the servers of a ``hostname`` list tried in order, then ``fallback_identity``, then (the caller's) queue.

``hostname smtp1.example.org:587, smtp2.example.org:465/smtps`` gives an identity several servers; :func:`candidates`
makes one identity per server (the block's settings, that server, its own TLS mode). A temporary failure moves on to
the next server: no connection, no greeting, 421, a 4xx to MAIL, RCPT or DATA, a TLS or network error, and a 4xx to
the final dot (the server said it did not take the message). A permanent failure does not: the next server would
refuse the same message. Nor does a failure whose outcome is unknown: the connection broke, or the wait ran out,
after the final dot was written (the final-dot window, RFC 1047). The server may have the message then, and sending it
elsewhere could deliver it twice; the message is reported temporary (75) or queued, as without failover. So a message
goes to one server only.

A server that failed is remembered for :data:`REMEMBER` seconds by this process (the warm relay, ``-bs``, a queue
flush keep running): the others are tried first meanwhile, and it comes last rather than never.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from esmtp.errors import DeliveryError, EsmtpError, TemporaryFailure

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity

#: Seconds a failed server goes to the end of the list.
REMEMBER = 120.0
_failed: dict[tuple[str, int], float] = {}


def candidates(identity: Identity) -> list[Identity]:
    """An identity per server of ``identity``'s ``hostname`` list, in order (``[identity]`` itself for one server)."""
    if not identity.servers:
        return [identity]
    if identity.per_server is not None:
        return identity.per_server
    found = []
    for host, mode in identity.servers:
        options, starttls = dict(identity.options), identity.starttls
        if mode == "smtps":
            options["smtps"] = "enabled"
        elif mode == "starttls":
            options.pop("smtps", None)
            starttls = "required"
        found.append(dataclasses.replace(identity, hostname=host, options=options, starttls=starttls, servers=[],
                                         per_server=None))
    identity.per_server = found
    return found


def _key(identity: Identity) -> tuple[str, int]:
    return identity.endpoint()


def ordered(identity: Identity) -> list[Identity]:
    """:func:`candidates`, those that failed in the last :data:`REMEMBER` seconds moved to the end."""
    servers = candidates(identity)
    if len(servers) < 2 or not _failed:
        return servers
    now = time.monotonic()
    recent = {key for key, when in list(_failed.items()) if now - when < REMEMBER}
    return sorted(servers, key=lambda server: _key(server) in recent)  # stable: the configured order otherwise


def remember(server: Identity) -> None:
    """``server`` (a candidate) failed: try the others first for a while."""
    _failed[_key(server)] = time.monotonic()


def forget(server: Identity) -> None:
    """``server`` took a message: it is fine again."""
    _failed.pop(_key(server), None)


def may_fail_over(error: EsmtpError) -> bool:
    """Whether another server may get the message after ``error``: a temporary failure, before any of the message's
    data went out (:attr:`EsmtpError.data_started`), or the server's own refusal of the final dot (a reply: it did
    not take the message)."""
    if not error.temporary:
        return False
    return not error.data_started or (isinstance(error, DeliveryError) and error.code is not None)


def fallback_of(identity: Identity, config: Config | None) -> Identity | None:
    """The identity ``fallback_identity`` names (not followed further: a fallback's own fallback is not used)."""
    name = identity.options.get("fallback_identity")
    if name is None or config is None:
        return None
    from esmtp.config.identities import named_identity
    from esmtp.errors import ConfigError

    found = named_identity(config, name)
    if found is None or found is identity:
        raise ConfigError(f"{config.where('fallback_identity', identity)}: fallback_identity {name} names "
                          f"{'this identity itself' if found is identity else 'no identity block'}")
    return found


def all_failed(errors: list[tuple[str, EsmtpError]]) -> TemporaryFailure:
    """One temporary failure for every server tried, each with its own error."""
    lines = "\n".join(f"  {server}: {' '.join(str(error).split())}" for server, error in errors)
    return TemporaryFailure(f"every server failed for now; the message was not sent:\n{lines}")
