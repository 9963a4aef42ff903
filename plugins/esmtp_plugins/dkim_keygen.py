"""``esmtp --dkim-keygen --selector S --domain D [--algorithm A] [--output FILE]``: a new DKIM key and its record.

The private key is written as PKCS#8 PEM (what ``openssl genpkey`` writes), created with mode 0600 and never over
an existing file; the DNS TXT record to publish and the esmtprc lines to add are printed on stdout.
"""

from __future__ import annotations

import os
import sys

from esmtp.errors import EX_CANTCREAT, EsmtpError, UsageError
from esmtp.options import Options

#: TXT records are strings of at most 255 bytes each (RFC 1035 3.3.14): longer records are split into several.
TXT_STRING = 255


def default_path(domain: str, selector: str) -> str:
    """``$XDG_CONFIG_HOME/esmtp/dkim/DOMAIN.SELECTOR.pem`` (``~/.config`` without XDG_CONFIG_HOME)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "esmtp", "dkim", f"{domain}.{selector}.pem")


def zone_line(name: str, record: str) -> str:
    """The record as a zone-file line, split into quoted strings of at most 255 bytes."""
    pieces = [record[i : i + TXT_STRING] for i in range(0, len(record), TXT_STRING)]
    return f"{name}. IN TXT ( " + " ".join(f'"{piece}"' for piece in pieces) + " )"


def _private_pem(algorithm: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from .dkim_keys import ED25519_SHA256

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == ED25519_SHA256:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def keygen(options: Options) -> int:
    """Make the key, write it, print the record. Returns 0; raises UsageError (64) for a bad selector, domain or
    algorithm, EsmtpError (73) when the file exists or cannot be written."""
    from .dkim_keys import ALGORITHMS, RSA_SHA256, parse_key, public_record
    from .dkim_settings import domain_ascii, is_labels

    selector, domain_text = options.selector or "", options.domain or ""
    if not is_labels(selector):
        raise UsageError(f"--selector '{selector}' is not a DNS label (letters, digits, '-', '.')")
    domain = domain_ascii(domain_text)
    if domain is None:
        raise UsageError(f"--domain '{domain_text}' is not a domain name")
    algorithm = options.algorithm or RSA_SHA256
    if algorithm not in ALGORITHMS:
        raise UsageError(f"--algorithm takes {' or '.join(ALGORITHMS)}, not '{algorithm}'")
    path = os.path.abspath(os.path.expanduser(options.output or default_path(domain, selector)))
    pem = _private_pem(algorithm)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise EsmtpError(f"{path} exists; esmtp never overwrites a key (a new selector keeps the old key working "
                         f"while mail signed with it is on its way): choose another --selector or --output",
                         exit_code=EX_CANTCREAT) from None
    except OSError as error:
        raise EsmtpError(f"cannot create {path}: {error.strerror or error}", exit_code=EX_CANTCREAT) from None
    try:
        with open(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        os.unlink(path)
        raise EsmtpError(f"cannot write {path}: {error.strerror or error}", exit_code=EX_CANTCREAT) from None
    key = parse_key(pem, path)
    name = f"{selector}._domainkey.{domain}"
    out = sys.stdout
    out.write(f"wrote {path} ({key.algorithm}, {key.bits}-bit key, mode 0600)\n\n")
    out.write(f"Publish this TXT record at {name}:\n\n  {public_record(key)}\n\nas a zone-file line:\n\n")
    out.write(f"  {zone_line(name, public_record(key))}\n\n")
    out.write("Then, in the identity block of ~/.esmtprc that sends as @" + domain + ":\n\n")
    shown = f'"{path}"' if " " in path else path
    out.write(f"  dkim_selector {selector}\n  dkim_key_file {shown}\n\n")
    out.write(f"Check with: esmtp --check (and, once the record is published: dig +short TXT {name})\n")
    return 0
