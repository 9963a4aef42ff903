"""``--serverinfo [--login]``: connect as a send would (EHLO, STARTTLS or implicit TLS, EHLO again), say what the
server offers, and send no mail. ``--login`` also authenticates. Exit codes are those of a send."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from esmtp.smtp.sasl import choose_mechanisms, uses_oauth2

if TYPE_CHECKING:
    import ssl

    from esmtp.config.model import Config, Identity
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.smtp.session import SmtpSession
    from esmtp.trace import Trace
    from esmtp.types import SaslMechanism


def serverinfo(options: Options, config: Config, hooks: Hooks) -> int:
    """Connect with the identity of ``--identity`` (else the sender's, else the default) and print what we learn."""
    import asyncio

    from esmtp.config.identities import choose_identity
    from esmtp.trace import Trace

    choice = choose_identity(config, options.sender, options.identity)
    identity = choice.identity
    trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    try:
        return asyncio.run(_probe(identity, choice.reason, hooks, trace, login=options.login))
    finally:
        trace.close()


class _Printable:
    """Standard output for what the server said (greeting, extensions, certificate names): control characters
    escaped (:func:`esmtp.progname.printable`)."""

    def write(self, text: str) -> None:
        from esmtp.progname import printable

        sys.stdout.write(printable(text))

    def flush(self) -> None:
        sys.stdout.flush()


async def _probe(identity: Identity, reason: str, hooks: Hooks, trace: Trace, *, login: bool) -> int:
    from esmtp.diagnostics import describe
    from esmtp.smtp.kept import new_session

    needs_auth = identity.username is not None or identity.password is not None or uses_oauth2(identity)
    session = new_session(identity, hooks, trace, login=login)
    mechanisms = session.mechanisms
    out = _Printable()
    out.write(f"identity:    {identity.address or '(global section)'}: {reason}\n")
    out.write(f"server:      {session.server}, TLS: {describe.tls_mode(identity)}\n")
    out.flush()
    await session.open()
    try:
        out.write(f"greeting:    {session.greeting}\n")
        if session.plain_ehlo is not None:
            out.write(f"before STARTTLS: {' '.join(_capabilities(session.plain_ehlo))}\n")
        out.write(f"EHLO:        {session.ehlo_reply.splitlines()[0] if session.ehlo_reply else ''}\n")
        out.write("capabilities:\n")
        for line in _capabilities(session.ehlo_reply):
            out.write(f"  {_human_capability(line)}\n")
        ssl_object = session.ssl_object()
        if ssl_object is not None:
            out.write(_tls_lines(ssl_object, session))
        else:
            out.write("TLS:         none: the session is not encrypted\n")
        out.write(_auth_line(identity, session, mechanisms, needs_auth))
    finally:
        await session.close()
    return 0


def _capabilities(ehlo: str) -> list[str]:
    return [line.strip() for line in ehlo.splitlines()[1:] if line.strip()]


def human_size(size: int) -> str:
    """Bytes in binary units: 10240000 → "9.8 MiB"."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def _human_capability(line: str) -> str:
    word, _, rest = line.partition(" ")
    if word.upper() == "SIZE" and rest.strip().isdigit():
        limit = int(rest)
        return f"SIZE {limit} (messages up to {human_size(limit)})" if limit else "SIZE 0 (no fixed limit)"
    return line


def _auth_line(identity: Identity, session: SmtpSession, mechanisms: dict[str, SaslMechanism],
               needs_auth: bool) -> str:
    from esmtp.errors import EsmtpError

    offered = session.auth_offered()
    text = f"AUTH:        offered: {' '.join(offered) or 'none'}\n"
    if not needs_auth:
        return text + "             no username or password is set: a send would not authenticate\n"
    try:
        chosen = choose_mechanisms(identity, mechanisms, offered, encrypted=session.encrypted, server=session.server)
    except EsmtpError as error:
        return text + f"             a send would fail: {error}\n"
    text += f"             a send would use {chosen[0].name}\n"
    if session.authenticated:
        text += f"login:       authenticated as {identity.username} with {chosen[0].name}\n"
    return text


def _tls_lines(ssl_object: ssl.SSLObject, session: SmtpSession) -> str:
    cipher = ssl_object.cipher()
    how = "pinned by tls_fingerprint" if session.tls is not None and session.tls.fingerprint else "verified"
    lines = [f"TLS:         {ssl_object.version()}, {cipher[0]} ({cipher[2]} bits)" if cipher else
             f"TLS:         {ssl_object.version()}", f", certificate {how}\n"]
    for index, der in enumerate(certificate_chain(ssl_object), 1):
        lines.append(f"certificate {index}:\n")
        lines += [f"  {name + ':':<13}{value}\n" for name, value in certificate_facts(der)]
    return "".join(lines)


def certificate_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The chain, server certificate first, in DER: as verified (up to the trust anchor), else as the server sent it.

    Python 3.13 has public methods for this; 3.11 and 3.12 have them on the internal ``_sslobj``.
    """
    import _ssl

    inner = getattr(ssl_object, "_sslobj", ssl_object)
    for name in ("get_verified_chain", "get_unverified_chain"):
        method = getattr(inner, name, None)
        try:
            chain = method() if method is not None else None
        except (ValueError, OSError):
            chain = None
        if chain:
            return [cert if isinstance(cert, bytes) else cert.public_bytes(_ssl.ENCODING_DER) for cert in chain]
    der = ssl_object.getpeercert(binary_form=True)
    return [der] if der else []


def certificate_facts(der: bytes) -> list[tuple[str, str]]:
    """Subject, issuer, SANs, validity with days left, and the ``tls_fingerprint`` line for one certificate."""
    from cryptography import x509

    from esmtp.config.fingerprints import format_fingerprint

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*(f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)),
                 *(f"IP:{n}" for n in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = []
    after = cert.not_valid_after_utc
    days = int((after.timestamp() - time.time()) // 86400)
    left = f"{days} days left" if days >= 0 else f"EXPIRED {-days} days ago"
    return [
        ("subject", cert.subject.rfc4514_string()),
        ("issuer", cert.issuer.rfc4514_string()),
        ("names", ", ".join(names) or "-"),
        ("valid", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {after:%Y-%m-%d %H:%M} UTC ({left})"),
        ("fingerprint", f"tls_fingerprint {format_fingerprint(der)}"),
    ]
