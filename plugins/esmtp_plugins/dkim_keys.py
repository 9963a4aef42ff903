"""DKIM private keys: read from a PEM file (PKCS#8, or PKCS#1 for RSA), checked like the configuration file.

A send reads the key with a small DER reader of its own and hands the numbers to ``cryptography``: loading a PEM
through ``cryptography.hazmat.primitives.serialization`` costs a send 7 ms of imports (its SSH key support) and,
for RSA, 45 ms of key validation (a primality test of the factors). The reader checks instead that the numbers fit
together (``n = p·q`` and the CRT values), which is what a signature made with a damaged key would get wrong;
``esmtp --check`` also loads the key through ``cryptography``'s full loader and validation.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, NamedTuple

from esmtp.errors import ConfigError

#: The two signing algorithms (RFC 6376, RFC 8463).
RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
ALGORITHMS = (RSA_SHA256, ED25519_SHA256)

#: RFC 8301: verifiers refuse RSA keys below 1024 bits; 2048 is what to use.
MIN_RSA_BITS = 1024
#: A PEM private key is a few KiB; anything much larger is not one.
MAX_KEY_FILE = 64 * 1024

_OID_RSA = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
_OID_ED25519 = bytes.fromhex("2b6570")  # 1.3.101.112


class SigningKey(NamedTuple):
    """A private key ready to sign, with what the messages and the DNS record say about it."""

    path: str
    algorithm: str
    bits: int
    key: Any  # an RSAPrivateKey or Ed25519PrivateKey of ``cryptography``

    def sign(self, data: bytes) -> bytes:
        """The signature of the canonicalized header data: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 3.3.1), or
        PureEd25519 over the SHA-256 hash of the data (RFC 8463 3)."""
        if self.algorithm == ED25519_SHA256:
            import hashlib

            return bytes(self.key.sign(hashlib.sha256(data).digest()))
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return bytes(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


class _Der:
    """Just enough of DER to walk a private key: tag, length, value; each read moves on."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def read(self, tag: int) -> bytes:
        data, at = self.data, self.at
        if at + 2 > len(data) or data[at] != tag:
            raise ValueError("unexpected DER structure")
        length, at = data[at + 1], at + 2
        if length & 0x80:
            size = length & 0x7F
            if not 1 <= size <= 4 or at + size > len(data):
                raise ValueError("bad DER length")
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
        if at + length > len(data):
            raise ValueError("truncated DER")
        self.at = at + length
        return data[at : at + length]

    def integer(self) -> int:
        value = self.read(0x02)
        if not value:
            raise ValueError("empty DER integer")
        return int.from_bytes(value, "big", signed=True)

    def inner(self, tag: int) -> _Der:
        return _Der(self.read(tag))


def _pem_body(text: bytes, path: str) -> tuple[str, bytes]:
    """The label and the decoded bytes of the first PEM block."""
    start = text.find(b"-----BEGIN ")
    if start < 0:
        raise ConfigError(f"DKIM key file {path} is not a PEM file (no '-----BEGIN' line)")
    label_end = text.find(b"-----", start + 11)
    label = text[start + 11 : label_end].decode("ascii", "replace") if label_end > 0 else ""
    end = text.find(b"-----END ", label_end)
    if label_end < 0 or end < 0:
        raise ConfigError(f"DKIM key file {path}: the PEM block has no END line")
    if "ENCRYPTED" in label or b"Proc-Type:" in text[label_end:end]:
        raise ConfigError(f"DKIM key file {path} is encrypted; esmtp signs unattended, so it needs the key without a "
                          f"passphrase (openssl pkey -in {path} -out NEWFILE, then chmod 600 NEWFILE)")
    try:
        return label, base64.b64decode(b"".join(text[label_end + 5 : end].split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"DKIM key file {path}: the PEM block is not valid base64") from None


def _rsa(der: _Der, path: str) -> SigningKey:
    """An RSAPrivateKey (PKCS#1): the numbers, checked against each other."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    seq = der.inner(0x30)
    if seq.integer() != 0:
        raise ValueError("multi-prime RSA keys are not supported")
    n, e, d, p, q, dp, dq, qi = (seq.integer() for _ in range(8))
    if min(n, e, d, p, q, dp, dq, qi) <= 0 or p * q != n or dp != d % (p - 1) or dq != d % (q - 1) \
            or (qi * q) % p != 1 or (e * dp) % (p - 1) != 1 or (e * dq) % (q - 1) != 1:
        raise ValueError("the RSA numbers do not fit together (a damaged key)")
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise ConfigError(f"DKIM key file {path} holds a {bits}-bit RSA key; verifiers refuse keys below "
                          f"{MIN_RSA_BITS} bits (RFC 8301): make a 2048-bit one (esmtp --dkim-keygen)")
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    return SigningKey(path, RSA_SHA256, bits, numbers.private_key(unsafe_skip_rsa_key_validation=True))


def _pkcs8(der: _Der, path: str) -> SigningKey:
    seq = der.inner(0x30)
    if seq.integer() not in (0, 1):
        raise ValueError("unknown PKCS#8 version")
    oid = seq.inner(0x30).read(0x06)
    private = seq.read(0x04)
    if oid == _OID_RSA:
        return _rsa(_Der(private), path)
    if oid == _OID_ED25519:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        seed = _Der(private).read(0x04)
        if len(seed) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        return SigningKey(path, ED25519_SHA256, 256, ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    raise ConfigError(f"DKIM key file {path} holds neither an RSA nor an Ed25519 key (DKIM signs with those only)")


def parse_key(text: bytes, path: str) -> SigningKey:
    """The key in ``text`` (PEM: ``PRIVATE KEY`` as ``openssl genpkey`` writes it, or ``RSA PRIVATE KEY``)."""
    label, der = _pem_body(text, path)
    try:
        if label == "PRIVATE KEY":
            return _pkcs8(_Der(der), path)
        if label == "RSA PRIVATE KEY":
            return _rsa(_Der(der), path)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"DKIM key file {path} holds no usable private key: {error}") from None
    raise ConfigError(f"DKIM key file {path} holds a '{label}' block, not a private key ('PRIVATE KEY' or "
                      f"'RSA PRIVATE KEY')")


#: Keys already read by this process (the warm relay signs many messages): path → (file identity, key).
_cache: dict[str, tuple[tuple[int, int, int], SigningKey]] = {}


def load_key(path: str, where: str) -> SigningKey:
    """The key in ``path``, which must pass the configuration file's checks (a regular file, yours, not readable by
    group or others, or your symbolic link to one), made on the descriptor it is then read from. ``where``
    (``file:line`` of ``dkim_key_file``) starts every error: exit 78."""
    from esmtp.front import open_user_file  # what check_user_file uses, keeping the checked descriptor

    try:
        fd, problem = open_user_file(path, "a private key")
        if problem is not None:
            raise ConfigError(problem)
        if fd is None:
            raise ConfigError(f"DKIM key file {path} does not exist (make one with: esmtp --dkim-keygen)")
        with open(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = _cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = handle.read(MAX_KEY_FILE + 1)
        if len(text) > MAX_KEY_FILE:
            raise ConfigError(f"DKIM key file {path} is larger than {MAX_KEY_FILE // 1024} KiB: not a key")
        key = parse_key(text, path)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except OSError as error:
        raise ConfigError(f"{where}: DKIM key file {path}: {error.strerror or error}") from None
    _cache[path] = (stamp, key)
    return key


def public_record(key: SigningKey) -> str:
    """The DNS TXT record that publishes ``key``'s public half (RFC 6376 3.6.1; RFC 8463 4 for Ed25519)."""
    from cryptography.hazmat.primitives import serialization

    public = key.key.public_key()
    if key.algorithm == ED25519_SHA256:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def full_check(path: str) -> None:
    """Load ``path`` through ``cryptography``'s own PEM loader with its full validation (``esmtp --check``)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(path, "rb") as handle:
            load_pem_private_key(handle.read(MAX_KEY_FILE), password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"DKIM key file {path}: the key does not pass validation: {error}") from None
