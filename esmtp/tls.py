"""TLS client contexts: the system trust store, esmtp's certificate locations, a minimum version, client certificates.

Imported only when a connection is made (``ssl`` is expensive to import).
"""

from __future__ import annotations

import os
import ssl
import stat

from .config import Identity
from .errors import ConfigError

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def authenticate_dirs() -> list[str]:
    """esmtp's certificate directories: ``~/.authenticate`` (esmtp's README) and libESMTP 1.1's XDG location."""
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_DIR") or os.path.join(home, ".config")
    return [os.path.join(home, ".authenticate"), os.path.join(xdg, "libesmtp")]


def check_private(path: str, *, directory: bool = False) -> None:
    """esmtp's rules for certificate files: owned by the user, no access for others (files: not executable)."""
    info = os.lstat(path)
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    if not kind_ok:
        raise ConfigError(f"{path} must be a {'directory' if directory else 'regular file'}")
    if info.st_uid != os.geteuid():
        raise ConfigError(f"{path} must be owned by you (uid {os.geteuid()}), not uid {info.st_uid}")
    forbidden = 0o077 if directory else 0o177
    if info.st_mode & forbidden:
        wanted = "0700" if directory else "0600"
        raise ConfigError(f"{path} has permissions {stat.S_IMODE(info.st_mode):04o}; make it {wanted}")


def make_context(identity: Identity, host: str) -> ssl.SSLContext:
    """A verifying client context for ``host``: the system store plus esmtp's CA files where they exist."""
    context = ssl.create_default_context()
    for base in authenticate_dirs():
        ca_file = os.path.join(base, "ca.pem")
        ca_dir = os.path.join(base, "ca")
        if os.path.lexists(ca_file):
            check_private(ca_file)
            context.load_verify_locations(cafile=ca_file)
        if os.path.lexists(ca_dir):
            check_private(ca_dir, directory=True)
            context.load_verify_locations(capath=ca_dir)
    minimum = identity.options.get("tls_min_version")
    if minimum:
        context.minimum_version = _VERSIONS[minimum]
    return context
