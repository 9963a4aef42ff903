"""Throw-away TLS material for the interop Postfix: a test CA, server and client certificates.

Everything is generated with the ``cryptography`` package (RSA-2048, a few hundred milliseconds in all).
Besides the good server certificate there are three deliberately broken ones, each served on its own
STARTTLS port, so that clients can be checked to refuse them:

* ``expired``: signed by the test CA, right names, but ``not_valid_after`` lies in the past;
* ``wronghost``: signed by the test CA, valid, but only ``DNS:wrong.example.invalid``;
* ``rogue``: right names and dates, but signed by a second CA that nobody trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_KEY_PASSPHRASE = "Client-Key pass 42"
"""Passphrase of the encrypted client key in :attr:`TLSFiles.client_combined_encrypted_pem`."""

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the generated PEM files (all world-readable: this is test material only)."""

    ca_pem: Path
    """The test CA that signed the server and client certificates: trust this one."""
    ca_dir: Path | None
    """OpenSSL hashed CA directory (``<hash>.0`` link to the test CA); None without the openssl CLI."""
    rogue_ca_pem: Path
    """The untrusted second CA (signed the ``rogue`` server certificate and the rogue client cert)."""
    server_cert_pem: Path
    server_key_pem: Path
    expired_cert_pem: Path
    wronghost_cert_pem: Path
    rogue_cert_pem: Path
    client_cert_pem: Path
    """Client certificate signed by the test CA (accepted by the ``*_cc`` ports)."""
    client_key_pem: Path
    client_combined_pem: Path
    """Client certificate followed by its unencrypted key, in one file."""
    client_combined_encrypted_pem: Path
    """Client certificate followed by its key encrypted (PKCS#8) with :attr:`client_key_passphrase`."""
    client_key_passphrase: str
    rogue_client_cert_pem: Path
    """Client certificate signed by the rogue CA (refused by the ``*_cc`` ports)."""
    rogue_client_key_pem: Path
    rogue_client_combined_pem: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str, now: datetime.datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey],
    *,
    server: bool,
    names: list[x509.GeneralName],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    ca_cert, ca_key = issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o644)
    return path


def _hashed_ca_dir(directory: Path, ca_pem: Path) -> Path | None:
    """Make an OpenSSL ``CApath``-style directory holding the CA as ``<subject hash>.0``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    digest = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(ca_pem)], check=True, capture_output=True, text=True
    ).stdout.strip()
    directory.mkdir(mode=0o755)
    shutil.copyfile(ca_pem, directory / "ca.pem")
    os.symlink("ca.pem", directory / f"{digest}.0")
    return directory


def generate_tls_files(directory: Path) -> TLSFiles:
    """Write the whole set of certificates and keys into ``directory`` (created, mode 0755)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = _ca("esmtp interop test CA", now)
    rogue_ca = _ca("esmtp interop ROGUE CA (untrusted)", now)
    good_names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    valid = {"not_before": now - _DAY, "not_after": now + 3650 * _DAY}

    # One key serves all four server certificates: only the certificates differ.
    server_key = _key()
    server = _leaf("localhost", server_key, ca, server=True, names=good_names, **valid)
    expired = _leaf(
        "localhost",
        server_key,
        ca,
        server=True,
        names=good_names,
        not_before=now - 60 * _DAY,
        not_after=now - 30 * _DAY,
    )
    wronghost = _leaf(
        "wrong.example.invalid", server_key, ca, server=True, names=[x509.DNSName("wrong.example.invalid")], **valid
    )
    rogue = _leaf("localhost", server_key, rogue_ca, server=True, names=good_names, **valid)

    client_key = _key()
    client = _leaf("esmtp interop client", client_key, ca, server=False, names=[], **valid)
    rogue_client_key = _key()
    rogue_client = _leaf("esmtp interop rogue client", rogue_client_key, rogue_ca, server=False, names=[], **valid)

    d = directory
    ca_pem = _write(d / "ca.pem", _cert_pem(ca[0]))
    return TLSFiles(
        ca_pem=ca_pem,
        ca_dir=_hashed_ca_dir(d / "ca", ca_pem),
        rogue_ca_pem=_write(d / "rogue-ca.pem", _cert_pem(rogue_ca[0])),
        server_cert_pem=_write(d / "server.pem", _cert_pem(server)),
        server_key_pem=_write(d / "server.key", _key_pem(server_key)),
        expired_cert_pem=_write(d / "expired.pem", _cert_pem(expired)),
        wronghost_cert_pem=_write(d / "wronghost.pem", _cert_pem(wronghost)),
        rogue_cert_pem=_write(d / "rogue.pem", _cert_pem(rogue)),
        client_cert_pem=_write(d / "client.pem", _cert_pem(client)),
        client_key_pem=_write(d / "client.key", _key_pem(client_key)),
        client_combined_pem=_write(d / "client-combined.pem", _cert_pem(client) + _key_pem(client_key)),
        client_combined_encrypted_pem=_write(
            d / "client-combined-encrypted.pem", _cert_pem(client) + _key_pem(client_key, CLIENT_KEY_PASSPHRASE)
        ),
        client_key_passphrase=CLIENT_KEY_PASSPHRASE,
        rogue_client_cert_pem=_write(d / "rogue-client.pem", _cert_pem(rogue_client)),
        rogue_client_key_pem=_write(d / "rogue-client.key", _key_pem(rogue_client_key)),
        rogue_client_combined_pem=_write(
            d / "rogue-client-combined.pem", _cert_pem(rogue_client) + _key_pem(rogue_client_key)
        ),
    )
