"""A DKIM verifier that is not esmtp's: OpenDKIM (Debian's ``opendkim``, in its test mode ``-t``), with the public
keys served by a DNS server the tests start (dnsmasq on 127.0.0.1 at a free high port, TXT records only).

OpenDKIM resolves through libunbound: its ``ResolverConfiguration`` is an unbound configuration that forwards every
query to that dnsmasq (``do-not-query-localhost: no``, or unbound would refuse a loopback forwarder). Nothing here
binds or queries any address but 127.0.0.1. The Debian packages come from ``.ci/install-dkim-deps.sh``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SBIN = ("/usr/sbin", "/sbin", "/usr/bin")
DOMAIN = "example.org"


def tool(name: str) -> str:
    for directory in SBIN:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (run .ci/install-dkim-deps.sh as root)")
    return found


@dataclass(frozen=True)
class Key:
    """A key pair on disk: the private PEM (mode 0600) and its DNS record."""

    selector: str
    algorithm: str
    path: Path
    record: str


def make_key(directory: Path, selector: str, algorithm: str, *, pkcs1: bool = False) -> Key:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    path = directory / f"{selector}.pem"
    if algorithm == "ed25519-sha256":
        ed = ed25519.Ed25519PrivateKey.generate()
        pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
        raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        record = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        form = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
        pem = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    path.write_bytes(pem)
    path.chmod(0o600)
    return Key(selector, algorithm, path, record)


def _free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if port < 1024:
                continue
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _txt_strings(record: str) -> str:
    """dnsmasq's --txt-record value: the record as comma-separated strings of at most 255 bytes (no shell here to
    remove quotes, and dnsmasq would keep them; DKIM records hold no comma)."""
    return ",".join(record[i : i + 255] for i in range(0, len(record), 255))


class Dns:
    """dnsmasq serving ``<selector>._domainkey.<domain>`` TXT records on 127.0.0.1 (no upstream, no hosts file)."""

    def __init__(self, directory: Path, records: dict[str, str]) -> None:
        self.port = _free_udp_and_tcp_port()
        args = [tool("dnsmasq"), "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}",
                "--pid-file="]
        args += [f"--txt-record={name},{_txt_strings(record)}" for name, record in records.items()]
        self.log = directory / "dnsmasq.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log.read_text(errors='replace')}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)
        else:
            self.close()
            raise RuntimeError("dnsmasq did not start listening")
        self.unbound = directory / "unbound.conf"
        self.unbound.write_text(
            "server:\n  do-not-query-localhost: no\n"
            f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{self.port}\n'
        )
        self.opendkim_conf = directory / "opendkim.conf"
        self.opendkim_conf.write_text(f"ResolverConfiguration {self.unbound}\nSyslog no\nMode v\n")
        self.directory = directory

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class Result:
    """One signature's verdict, as OpenDKIM's Authentication-Results says it."""

    result: str  # pass, fail, neutral...
    algorithm: str
    selector: str
    domain: str


def verify(dns: Dns, data: bytes, name: str = "message.eml") -> list[Result]:
    """Every DKIM signature of ``data`` (the bytes a server received), verified by OpenDKIM."""
    path = dns.directory / name
    path.write_bytes(data)
    proc = subprocess.run([tool("opendkim"), "-x", str(dns.opendkim_conf), "-t", str(path), "-vvv"],
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    output = proc.stdout.decode("utf-8", "replace")
    header = " ".join(output.partition("hvalue=")[2].split())  # the Authentication-Results field it would add
    found = []
    for clause in re.split(r"\bdkim=", header)[1:]:  # "dkim=pass (2048-bit key; unprotected) header.d=... ;"
        tags = dict(re.findall(r"header\.(\w)=([^\s;']+)", clause))
        found.append(Result(clause.split()[0].rstrip(";'"), tags.get("a", ""), tags.get("s", ""), tags.get("d", "")))
    if not found:
        raise AssertionError(f"OpenDKIM gave no result (exit {proc.returncode}):\n{output}\n"
                             f"{proc.stderr.decode('utf-8', 'replace')}")
    return found
