"""How an identity connects, in words: shared by ``--pretend``, ``--check`` and ``--serverinfo``. Never a secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.plugins import Hooks


def server(identity: Identity) -> tuple[str, int]:
    """The ``(host, port)`` a send connects to."""
    return identity.endpoint()


def servers(identity: Identity) -> str:
    """Every server of a ``hostname`` list in order, each with its TLS mode (failover); empty for one server."""
    if not identity.servers:
        return ""
    from esmtp.smtp.failover import candidates

    return ", then ".join(f"{host}:{port} {tls_mode(one).split(':')[0]}"
                          for one in candidates(identity) for host, port in [one.endpoint()])


def routing(identity: Identity) -> list[tuple[str, str]]:
    """The issue-23 settings in words, as (name, value) lines: servers, network path, rate limit, fallback."""
    lines = []
    if identity.servers:
        lines.append(("servers", servers(identity)))
    options = identity.options
    if any(key in options for key in ("source_ip", "ip_version", "proxy_host")):
        from esmtp.smtp.network import NetworkPath

        lines.append(("network", NetworkPath.of(identity).describe()))
    if "rate_limit" in options:
        lines.append(("rate limit", options["rate_limit"]))
    if "fallback_identity" in options:
        lines.append(("fallback", f"identity {options['fallback_identity']}"))
    return lines


def tls_mode(identity: Identity) -> str:
    if identity.options.get("smtps") == "enabled":
        return "implicit TLS (smtps enabled)"
    if identity.starttls == "disabled":
        return "none (starttls disabled): the session is not encrypted"
    return f"STARTTLS (starttls {identity.starttls})"


def uses_tls(identity: Identity) -> bool:
    return identity.options.get("smtps") == "enabled" or identity.starttls != "disabled"


def trust(identity: Identity) -> str:
    """What the server certificate is checked against. Reads esmtp's certificate files (errors name the file)."""
    if not uses_tls(identity):
        return "-"
    from esmtp.config.fingerprints import format_digest
    from esmtp.smtp import tls

    policy = tls.make_policy(identity, server(identity)[0])
    if policy.fingerprint is not None:
        text = f"pinned: tls_fingerprint {format_digest(policy.fingerprint)}"
    else:
        text = "the system store" + "".join(f", {where}" for where in policy.ca_locations)
    minimum = identity.options.get("tls_min_version")
    if minimum:
        text += f"; TLS {minimum} or newer"
    if policy.client_cert:
        text += f"; client certificate {policy.client_cert}"
    return text


def mechanisms(identity: Identity, hooks: Hooks) -> str:
    """The SASL mechanisms that may be used, in the order they are preferred."""
    if identity.username is None and identity.password is None:
        return "- (no username or password: no AUTH)"
    from esmtp.smtp.sasl import allowed_mechanisms

    allowed = allowed_mechanisms(identity, hooks.sasl_mechanisms())
    how = "auth_mechanisms" if identity.options.get("auth_mechanisms") else "by strength"
    names = " ".join(f"{mech.name}{'*' if mech.plaintext else ''}" for mech in allowed)
    note = ""
    if any(mech.plaintext for mech in allowed):
        without = "allowed" if identity.options.get("auth_plaintext") == "enabled" else "refused"
        note = f" (* reveals the password: {without} without TLS)"
    return f"{names or 'none installed'} ({how}){note}"


def log_targets(identity: Identity, config: Config) -> str:
    """Where delivery attempts are logged (see :mod:`esmtp.delivery_log`)."""
    from esmtp.delivery_log import settings_for

    settings = settings_for(identity, config)
    targets = []
    if settings.path:
        targets.append(f"{settings.path} ({settings.format})")
    if settings.facility is not None:
        targets.append(f"syslog (facility {settings.facility})")
    return ", ".join(targets) or "-"
