"""Explaining a connection that failed: TLS failures in user terms, with the server's certificate or TLS version
fetched on a second connection that sends EHLO and STARTTLS only (never mail)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, NamedTuple

import aiosmtplib

from esmtp.errors import DeliveryError, TemporaryFailure
from esmtp.smtp.replies import describe

if TYPE_CHECKING:
    from esmtp.smtp.tls import TlsPolicy


class Endpoint(NamedTuple):
    """Where a probe connects, as the session did."""

    host: str
    port: int
    smtps: bool
    helo: str
    timeout: float

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


async def connection_failure(error: BaseException, endpoint: Endpoint, policy: TlsPolicy | None, *,
                             in_handshake: bool, encrypted: bool) -> DeliveryError:
    """The error to report for a failed connection: a TLS failure explained (``in_handshake``: it happened in the
    TLS handshake or the first exchange after it; ``encrypted``: the handshake had succeeded)."""
    server = endpoint.server
    if policy is not None:
        from esmtp.smtp import tls

        if in_handshake or tls.has_tls_error(error):
            peer = await fetch_certificate(endpoint) if tls.verification_error(error) is not None else None
            failure = tls.describe_failure(error, policy, server, peer, after_handshake=encrypted)
            older = tls.below_minimum_context(policy)
            if isinstance(failure, TemporaryFailure) and not encrypted and older is not None:
                # Dropped in the handshake, no reason given: a server below tls_min_version does that too.
                spoken = await probe_version(endpoint, older)
                if spoken is not None:
                    return tls.version_too_old(server, policy, spoken)
            if failure is not None:
                return failure
    # (aiosmtplib names no port when given a connected socket: it is ours)
    return TemporaryFailure(f"{server}: {describe(error)}".replace(" on port None", f" on port {endpoint.port}"))


async def fetch_certificate(endpoint: Endpoint) -> bytes | None:
    """The certificate the server presents, fetched without verification: only after verification failed, to say
    what is wrong with the certificate (expired when, for which names, issued by whom)."""
    from esmtp.smtp import tls

    ssl_object = await probe(endpoint, tls.unverified_context())
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


async def probe_version(endpoint: Endpoint, context: ssl.SSLContext) -> str | None:
    """The TLS version a handshake with ``context`` (older versions only) reaches, or None if it fails."""
    ssl_object = await probe(endpoint, context)
    return ssl_object.version() if ssl_object is not None else None


async def probe(endpoint: Endpoint, context: ssl.SSLContext) -> ssl.SSLObject | None:
    """A second connection that sends EHLO and STARTTLS only, then the handshake with ``context``, then closes."""
    client = aiosmtplib.SMTP(
        hostname=endpoint.host, port=endpoint.port, use_tls=endpoint.smtps, start_tls=False, tls_context=context,
        timeout=min(endpoint.timeout, 15.0), local_hostname=endpoint.helo,
    )
    try:
        await client.connect()
        if not endpoint.smtps:
            await client.starttls(tls_context=context, server_hostname=endpoint.host)
        ssl_object: ssl.SSLObject | None = client.get_transport_info("ssl_object")
        return ssl_object
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        return None
    finally:
        client.close()
