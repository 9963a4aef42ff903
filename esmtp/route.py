"""The core router (a built-in plugin that cannot be blocked): remote addresses to SMTP, local names to the MDA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from esmtp import hookimpl

if TYPE_CHECKING:
    from esmtp.config.model import Config
    from esmtp.types import Envelope, Route


def is_local(address: str) -> bool:
    """esmtp's rule: an address without ``@`` is local."""
    return "@" not in address


@hookimpl(trylast=True)
def esmtp_route(envelope: Envelope, config: Config) -> Route:
    """Route as esmtp 1.2 did, in this order of precedence.

    1. The identity has ``qualifydomain``: everything goes by SMTP, local names as ``name@domain``; the MDA is never
       used (not even with ``force_mda``).
    2. ``force_mda`` is set: the MDA gets the message once, for the ``force_mda`` name alone (remote addresses too).
    3. Otherwise addresses with ``@`` go by SMTP and local names to the MDA; with no MDA configured, to
       ``admin_address`` by SMTP when it is set (nullmailer's ``adminaddr``: a server's ``root`` mail reaches its
       operator).
    """
    from esmtp.types import Route

    route = Route()
    qualify = envelope.identity.qualifydomain
    admin = config.options.get("admin_address")
    if config.force_mda and not qualify:
        route.add("mda", config.force_mda)
        return route
    for recipient in envelope.recipients:
        if not is_local(recipient):
            agent, address = "smtp", recipient
        elif qualify:
            agent, address = "smtp", f"{recipient}@{qualify}"
        elif admin and not config.mda:
            agent, address = "smtp", admin
        else:
            agent, address = "mda", recipient
        if address not in route.legs.get(agent, ()):
            route.add(agent, address)  # "alice" qualified may repeat an explicit "alice@domain"
    return route
