"""The core router (a built-in plugin that cannot be blocked): remote addresses to SMTP, local names to the MDA."""

from __future__ import annotations

from . import hookimpl
from .config import Config
from .types import Envelope, Route


def is_local(address: str) -> bool:
    """esmtp's rule: an address without ``@`` is local."""
    return "@" not in address


@hookimpl(trylast=True)
def esmtp_route(envelope: Envelope, config: Config) -> Route:
    """Route as esmtp 1.2: ``qualifydomain`` sends everything by SMTP; ``force_mda`` sends everything to the MDA."""
    route = Route()
    qualify = envelope.identity.qualifydomain
    if config.force_mda and not qualify:
        route.legs["mda"] = list(envelope.recipients)
        return route
    for recipient in envelope.recipients:
        if not is_local(recipient):
            route.add("smtp", recipient)
        elif qualify:
            route.add("smtp", f"{recipient}@{qualify}")
        else:
            route.add("mda", recipient)
    return route
