"""Built-in plugin 'masquerade': makes mail from this machine look as if it came from ``masquerade_domain``.

Off until the identity has ``masquerade_domain``. The envelope sender and the addresses of the From: header are
rewritten when their domain is local: missing (``root``), ``localhost``/``localhost.localdomain``, this host's name
(``myhost``, ``myhost.lan``: any domain whose first label is the short host name), or a subdomain of the
masquerade domain (``host.example.org`` → ``example.org``, as Postfix's ``masquerade_domains``). Other domains are
left alone: a From: of ``bob@gmail.com`` typed in a mail client is not changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.message import Message
from esmtp.types import Envelope, KeywordSpec


@hookimpl
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    return [KeywordSpec("masquerade_domain", help="rewrite local sender domains to this domain (identity keyword)")]


class Masquerade:
    """The rule for one run: which domains count as local, and the domain that replaces them."""

    def __init__(self, domain: str, hostname: str | None = None) -> None:
        self.domain = domain.strip().lstrip("@").lower()
        import socket  # only when masquerading is on

        host = (hostname if hostname is not None else socket.gethostname()).lower()
        self.short_host = host.split(".", 1)[0]
        self.local = {"", "localhost", "localhost.localdomain", host}

    def is_local_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        return (
            domain in self.local
            or (bool(self.short_host) and (domain == self.short_host or domain.startswith(self.short_host + ".")))
            or domain.endswith("." + self.domain)
        )

    def address(self, address: str) -> str:
        """``user@local-domain`` or ``user`` → ``user@masquerade-domain``; anything else unchanged."""
        if not address or address.startswith("@"):
            return address  # the null sender, or a source route: not ours to change
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        return f"{local}@{self.domain}" if self.is_local_domain(domain) else address

    def field(self, value: str) -> str | None:
        """A From:-style field value with its local addresses rewritten, or None when nothing changes."""
        from email.headerregistry import AddressHeader, HeaderRegistry
        from email.utils import formataddr

        header = HeaderRegistry()("from", value)
        assert isinstance(header, AddressHeader)
        changed = False
        rendered = []
        for address in header.addresses:
            new = self.address(address.addr_spec)
            changed = changed or new != address.addr_spec
            rendered.append(formataddr((address.display_name, new), charset="utf-8"))
        return ", ".join(rendered) if changed else None


@hookimpl
def esmtp_rewrite_envelope(envelope: Envelope, message: Message) -> None:
    """Rewrite the envelope sender (and the ``%F`` sender) and the From: header."""
    domain = envelope.identity.options.get("masquerade_domain")
    if not domain:
        return
    rule = Masquerade(domain)
    envelope.sender = rule.address(envelope.sender)
    if envelope.given_sender is not None:
        envelope.given_sender = rule.address(envelope.given_sender)
    value = message.get("from")
    if value is not None:
        new = rule.field(value)
        if new is not None:
            message.replace("From", new)
