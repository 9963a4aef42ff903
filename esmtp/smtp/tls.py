"""TLS for the SMTP session: the client context, esmtp's certificate files, pinning, and failures in user terms.

The server certificate is verified against the system trust store plus esmtp's CA locations where they exist
(``~/.authenticate/ca.pem``, ``~/.authenticate/ca/`` and libESMTP 1.1's ``~/.config/libesmtp/`` equivalents). The
client certificate comes from esmtp's fixed locations. Files there must pass libESMTP's ownership and permission
rules; unlike esmtp, a file that fails them is an error naming the file, never a silent fall-back to plain text.
``tls_fingerprint`` replaces chain and host-name checks by a SHA-256 pin (as msmtp does). See docs/tls.md.

Imported only when a connection is made (``ssl`` is expensive to import).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

# Re-exported: callers and tests know them as tls.format_fingerprint and tls.parse_fingerprint.
from esmtp.config.fingerprints import format_fingerprint as format_fingerprint
from esmtp.config.fingerprints import parse_fingerprint as parse_fingerprint
from esmtp.config.model import Identity
from esmtp.errors import EX_NOPERM, ConfigError, DeliveryError, PermanentFailure, TemporaryFailure

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

#: The file names esmtp users know, relative to each certificate directory.
CA_FILE = "ca.pem"
CA_DIR = "ca"
CLIENT_CERT = os.path.join("private", "smtp-starttls.pem")

# OpenSSL X509_V_ERR_* codes that need their own explanation.
_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH, _IP_MISMATCH = 9, 10, 62, 64
_UNTRUSTED = {2, 18, 19, 20, 21, 27}  # no issuer / self-signed / self-signed in chain / local issuer / leaf / untrusted

# Handshake alerts from a server that wants a (different) client certificate.
_CLIENT_CERT_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_DECRYPT_ERROR",
}
_VERSION_REFUSED = {
    "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "WRONG_SSL_VERSION",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
}
# What OpenSSL says when the other end does not speak TLS at all (a plain SMTP greeting, for instance).
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}


# ---- esmtp's certificate locations -------------------------------------------------------------------------------


def certificate_dirs() -> list[str]:
    """esmtp's certificate directories, in lookup order.

    ``~/.authenticate`` (esmtp's README, libESMTP 1.0) and libESMTP 1.1's XDG directory, which like libESMTP
    honours ``$XDG_CONFIG_DIR`` (sic, not ``XDG_CONFIG_HOME``) and otherwise is ``~/.config/libesmtp``.
    """
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_DIR") or os.path.join(home, ".config")
    return [os.path.join(home, ".authenticate"), os.path.join(xdg, "libesmtp")]


def client_certificate_candidates(host: str) -> list[str]:
    """Where a client certificate for ``host`` may be, best first: per-host files, then the general ones."""
    authenticate, xdg = certificate_dirs()
    per_host = []
    # A host name is a single path component; anything else cannot name a per-host directory.
    if host and os.sep not in host and not host.startswith("."):
        per_host = [os.path.join(authenticate, host, CLIENT_CERT), os.path.join(xdg, "private", f"{host}.pem")]
    return [*per_host, os.path.join(authenticate, CLIENT_CERT), os.path.join(xdg, CLIENT_CERT)]


def _present(path: str) -> os.stat_result | None:
    """The file's status following symlinks (as libESMTP's stat()), or None when nothing is there."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise ConfigError(f"{path} is a symbolic link to a file that does not exist") from None
        return None
    except OSError as error:
        raise ConfigError(f"cannot use {path}: {error.strerror}") from None


def check_file(path: str) -> bool:
    """esmtp's rules for a certificate file. False when absent; ConfigError naming the file when it breaks them.

    libESMTP's rules: a non-empty regular file, owned by the user, not executable, no access for group or others.
    """
    info = _present(path)
    if info is None:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} must be a regular file")
    if info.st_size == 0:
        raise ConfigError(f"{path} is empty")
    _check_owner(path, info)
    if info.st_mode & (stat.S_IXUSR | stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} has permissions {stat.S_IMODE(info.st_mode):04o}; certificate files must be readable by you "
            f"only: chmod 600 {path}"
        )
    return True


def check_directory(path: str) -> bool:
    """esmtp's rules for the hashed CA directory: owned by the user, no access for group or others."""
    info = _present(path)
    if info is None:
        return False
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} must be a directory (of hashed CA certificates)")
    _check_owner(path, info)
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} has permissions {stat.S_IMODE(info.st_mode):04o}; it must be accessible by you only: "
            f"chmod 700 {path}"
        )
    return True


def _check_owner(path: str, info: os.stat_result) -> None:
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} must be owned by you (uid {os.getuid()}), not by uid {info.st_uid}")


# ---- fingerprints --------------------------------------------------------------------------------------------------


# ---- the policy ----------------------------------------------------------------------------------------------------


@dataclass
class TlsPolicy:
    """How one identity talks TLS to ``host``: the context, the pin, and where trust and the client cert come from."""

    context: ssl.SSLContext
    host: str
    fingerprint: bytes | None = None
    client_cert: str | None = None
    #: The trust anchors used besides the system store (for messages).
    ca_locations: list[str] = field(default_factory=list)

    def check_peer(self, ssl_object: ssl.SSLObject | None, server: str) -> str:
        """Check the pin once the handshake is done; return a one-line description of the connection for ``-v``."""
        if ssl_object is None:
            raise PermanentFailure(f"{server}: the TLS connection has no TLS session (internal error)")
        der = ssl_object.getpeercert(binary_form=True)
        if self.fingerprint is not None:
            if der is None:
                raise PermanentFailure(f"{server} sent no TLS certificate, so it cannot match tls_fingerprint")
            if hashlib.sha256(der).digest() != self.fingerprint:
                raise PermanentFailure(
                    f"{server}: the TLS certificate does not match tls_fingerprint; it is {format_fingerprint(der)}."
                    " Nothing was sent. If the server's certificate was renewed, check the new fingerprint and"
                    " update tls_fingerprint"
                )
        cipher = ssl_object.cipher()
        if self.fingerprint is not None:
            how = "pinned by tls_fingerprint"
        else:
            how = f"verified (system store{''.join(f', {where}' for where in self.ca_locations)})"
        described = f"{ssl_object.version()}, {cipher[0]} ({cipher[2]} bits)" if cipher else str(ssl_object.version())
        return f"TLS established with {server}: {described}, certificate {how}"


def make_policy(identity: Identity, host: str) -> TlsPolicy:
    """The TLS policy for ``identity`` connecting to ``host`` (the configured name: per-host files, SNI, checks).

    Raises ConfigError for a certificate file that breaks esmtp's rules or cannot be loaded, a bad passphrase,
    or a bad ``tls_fingerprint``.
    """
    options = identity.options
    context = ssl.create_default_context()  # system store, CERT_REQUIRED, host-name check, TLS >= 1.2
    policy = TlsPolicy(context, host)
    pin = options.get("tls_fingerprint")
    if pin:
        policy.fingerprint = parse_fingerprint(pin)
        # The pin is the whole check: a self-signed or otherwise unverifiable certificate is fine if it matches.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        for base in certificate_dirs():
            ca_file, ca_dir = os.path.join(base, CA_FILE), os.path.join(base, CA_DIR)
            if check_file(ca_file):
                try:
                    context.load_verify_locations(cafile=ca_file)
                except ssl.SSLError as error:
                    raise ConfigError(f"{ca_file} holds no usable CA certificate in PEM format ({_reason(error)})") \
                        from None
                policy.ca_locations.append(ca_file)
            if check_directory(ca_dir):
                context.load_verify_locations(capath=ca_dir)
                policy.ca_locations.append(ca_dir + os.sep)
    minimum = options.get("tls_min_version")
    if minimum:
        if minimum not in _VERSIONS:
            raise ConfigError(f"tls_min_version takes one of {', '.join(_VERSIONS)}, not '{minimum}'")
        if _VERSIONS[minimum] < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 refuses TLS < 1.2 above security level 0; asking for 1.0/1.1 is asking for exactly that.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = _VERSIONS[minimum]
    for candidate in client_certificate_candidates(host):
        if check_file(candidate):
            load_client_certificate(context, candidate, identity.certificate_passphrase)
            policy.client_cert = candidate
            break
    return policy


def load_client_certificate(context: ssl.SSLContext, path: str, passphrase: str | None) -> None:
    """Load a PEM file holding the client certificate and its key (decrypted with ``passphrase`` if needed)."""
    asked = False

    def password() -> bytes:
        # Never let OpenSSL prompt on the terminal: sendmail runs from cron and MUAs.
        nonlocal asked
        asked = True
        return (passphrase or "").encode("utf-8")

    try:
        context.load_cert_chain(certfile=path, password=password)
    except ssl.SSLError as error:
        if asked and not passphrase:
            raise ConfigError(
                f"the private key in {path} is encrypted: set certificate_passphrase in the configuration"
            ) from None
        if asked:
            raise ConfigError(f"certificate_passphrase does not decrypt the private key in {path}") from None
        raise ConfigError(
            f"{path} must hold the client certificate followed by its private key, in PEM format ({_reason(error)})"
        ) from None


# ---- failures ------------------------------------------------------------------------------------------------------


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def has_tls_error(error: BaseException) -> bool:
    """Whether a TLS error (a failed handshake, an alert from the server) is behind ``error``."""
    return any(isinstance(cause, ssl.SSLError) for cause in _chain(error))


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


def verification_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``error``, if that is what it is."""
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def describe_failure(
    error: BaseException, policy: TlsPolicy, server: str, peer: bytes | None = None, *, after_handshake: bool = False
) -> DeliveryError | None:
    """Turn a TLS failure somewhere in ``error``'s chain into an error a user understands, or None if it is not one.

    Certificate and protocol problems are permanent (EX_UNAVAILABLE: retrying will not fix them); a refused client
    certificate is EX_NOPERM, like refused credentials; a connection dropped mid-handshake is temporary.
    ``peer`` is the server certificate (DER), fetched without verification, to say what is wrong with it.
    ``after_handshake``: the handshake completed and the server's first answer inside TLS is what failed.
    """
    verify = verification_error(error)
    if verify is not None:
        return PermanentFailure(describe_verification(verify, policy, server, peer))
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return _dropped(server, policy)
        if isinstance(cause, ssl.SSLError):
            return _handshake_failure(cause, policy, server)
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return _dropped(server, policy)
    if after_handshake and any(isinstance(cause, ConnectionError) for cause in _chain(error)):
        return _dropped(server, policy, "right after the TLS handshake")
    return None


def _dropped(server: str, policy: TlsPolicy, when: str = "during the TLS handshake") -> DeliveryError:
    """The server hung up without saying why: temporary, with the likeliest cause when it may be ours."""
    if policy.client_cert is None:
        hint = " (a server that requires a TLS client certificate does this when none is presented: see docs/tls.md)"
    else:
        hint = f" (perhaps it does not accept the TLS client certificate {policy.client_cert})"
    return TemporaryFailure(f"{server} closed the connection {when}; nothing was sent{hint}")


def _no_client_cert(policy: TlsPolicy) -> str:
    authenticate = certificate_dirs()[0]
    return (
        f"requires a TLS client certificate and none is configured: put the certificate and its key in "
        f"{os.path.join(authenticate, CLIENT_CERT)} (or, for this server only, in "
        f"{os.path.join(authenticate, policy.host, CLIENT_CERT)})"
    )


def _handshake_failure(error: ssl.SSLError, policy: TlsPolicy, server: str) -> DeliveryError:
    reason = str(error.reason or "")
    if reason in _CLIENT_CERT_REFUSED:
        if policy.client_cert is None:
            return PermanentFailure(f"{server} {_no_client_cert(policy)}", exit_code=EX_NOPERM)
        return PermanentFailure(
            f"{server} refused the TLS client certificate {policy.client_cert} ({_reason(error)})",
            exit_code=EX_NOPERM,
        )
    if reason in _VERSION_REFUSED:
        minimum = policy.context.minimum_version
        floor = {v: k for k, v in _VERSIONS.items()}.get(minimum, "1.2")
        return PermanentFailure(
            f"{server} and this client share no TLS version at or above {floor} ({_reason(error)}); "
            "see tls_min_version in docs/tls.md"
        )
    if reason in _NOT_TLS:
        return PermanentFailure(
            f"{server} does not speak TLS on this port ({_reason(error)}): it looks like a plain or STARTTLS port. "
            "Implicit TLS ('smtps enabled') needs an SMTPS port such as 465; for 587 or 25 use 'starttls required'"
        )
    hint = ""
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and policy.client_cert is None:
        # TLS 1.2 servers say only this when they require a client certificate and got none.
        hint = "; if the server requires a TLS client certificate, see docs/tls.md"
    return PermanentFailure(f"TLS handshake with {server} failed: {_reason(error)}{hint}")


def refused_in_tls(code: int, text: str, policy: TlsPolicy, server: str) -> DeliveryError:
    """The server's first reply inside TLS refuses the session (Postfix's answer to a missing or untrusted client
    certificate: ``421 4.7.1 ... No client certificate presented``).

    A refusal that is about the client certificate is EX_NOPERM whatever the code says: retrying without a
    (different) certificate cannot succeed. Other refusals keep the meaning of their code.
    """
    reply = f"{code} {text}".strip()
    if "certificate" in text.lower():
        if policy.client_cert is None:
            hint = f"it {_no_client_cert(policy)}"
        else:
            hint = f"it did not accept the TLS client certificate {policy.client_cert}"
        return PermanentFailure(f"{server} refused the session ({reply}): {hint}", exit_code=EX_NOPERM, code=code,
                                reply=reply)
    failure = TemporaryFailure if 400 <= code < 500 else PermanentFailure
    return failure(f"{server} refused the session after the TLS handshake: {reply}", code=code, reply=reply)


def describe_verification(
    error: ssl.SSLCertVerificationError, policy: TlsPolicy, server: str, peer: bytes | None
) -> str:
    """Say what is wrong with the server certificate, naming the server and what to do."""
    code = error.verify_code
    info = _certificate_facts(peer) if peer else None
    host = policy.host
    tail = "; nothing was sent"
    if code == _EXPIRED:
        when = f" (not after {info.not_after})" if info else ""
        return f"{server}: the TLS certificate for {host} has expired{when}{tail}"
    if code == _NOT_YET_VALID:
        when = f" (not before {info.not_before})" if info else ""
        return f"{server}: the TLS certificate for {host} is not valid yet{when}: check this computer's clock{tail}"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        names = f" (it is for {', '.join(info.names)})" if info and info.names else ""
        return (
            f"{server}: the TLS certificate is not for host {host}{names}; set 'hostname' to a name the certificate "
            f"carries{tail}"
        )
    if code in _UNTRUSTED:
        issuer = f" ({info.issuer})" if info else ""
        kind = "is self-signed" if code == 18 else f"is issued by an untrusted CA{issuer}"
        pin = f"'tls_fingerprint {format_fingerprint(peer)}'" if peer else "tls_fingerprint"
        pin = f" or pin the server certificate with {pin}"
        ca_file = os.path.join(certificate_dirs()[0], CA_FILE)
        return f"{server}: the TLS certificate for {host} {kind}: add the CA certificate to {ca_file}{pin}{tail}"
    return f"{server}: the TLS certificate for {host} failed verification: {error.verify_message}{tail}"


@dataclass
class _Facts:
    names: list[str]
    issuer: str
    not_before: str
    not_after: str


def _certificate_facts(der: bytes) -> _Facts | None:
    """Names, issuer and validity of a certificate, for messages (None if it cannot be read)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - cryptography comes with pyspnego
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]
        except x509.ExtensionNotFound:
            names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        issuer = str(issuer_cn[0].value) if issuer_cn else cert.issuer.rfc4514_string()
        return _Facts(
            names,
            f"issuer: {issuer}",
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        )
    except (ValueError, TypeError):
        return None


def below_minimum_context(policy: TlsPolicy) -> ssl.SSLContext | None:
    """A probe context offering TLS 1.2 when ``tls_min_version`` is above it (else None).

    A server that shares no version with us may just close the connection, with no alert to say so, which looks
    like a temporary failure (or a missing client certificate). A handshake that succeeds below our minimum tells
    the two apart.
    """
    if policy.context.minimum_version <= ssl.TLSVersion.TLSv1_2:
        return None  # the default floor: what lies below it is not worth a second connection
    context = unverified_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def version_too_old(server: str, policy: TlsPolicy, spoken: str) -> DeliveryError:
    """The server's best TLS version (``spoken``, e.g. "TLSv1.2") is under ``tls_min_version``: permanent."""
    floor = {v: k for k, v in _VERSIONS.items()}[policy.context.minimum_version]
    number = spoken.removeprefix("TLSv")
    return PermanentFailure(
        f"{server} speaks TLS {number} at most, below 'tls_min_version {floor}' (it closed the connection without "
        f"saying why); lower tls_min_version to {number} if that server is to be trusted with it; nothing was sent"
    )


def unverified_context() -> ssl.SSLContext:
    """A context that accepts any certificate: only to fetch a refused certificate and explain the refusal."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context

