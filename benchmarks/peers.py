"""Fetch the peer MTAs from Debian packages and describe how to run them, without installing anything.

``apt-get download`` puts the .deb files in ``benchmarks/peers/debs`` and ``dpkg -x`` unpacks each peer into its own
tree (``benchmarks/peers/<peer>``). Library packages a peer needs that are not installed on this machine are fetched
the same way and unpacked into that tree; ``ldd`` with the tree's ``LD_LIBRARY_PATH`` proves nothing is missing.

Two peers have paths compiled in, and both are redirected without touching the system:

* libESMTP (under esmtp 1.2) ``dlopen()``s its SASL plugins from
  ``/usr/lib/x86_64-linux-gnu/esmtp-plugins-6.2.0/sasl-<mech>.so``. Our private copy of ``libesmtp.so.6`` has that
  string replaced by a path of the same length (``./`` and padding slashes, then ``sasl-``), so the plugins are
  loaded relative to the working directory, which the harness sets to the unpacked plugin directory. The length
  must not change because libESMTP computes the offset with ``sizeof prefix``.
* nullmailer reads ``/etc/nullmailer`` and ``/var/spool/nullmailer``; it honours ``NULLMAILER_TEST_PREFIX`` (its own
  test suite's sandbox) when it is not running setuid, so the setuid bits of the unpacked copies are removed and
  each run gets a prefix with ``conf/``, ``queue/``, ``protocols/``, ``bin/`` and ``sbin/``.

Run ``python benchmarks/peers.py`` to fetch and check the peers on their own.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
DEBS_DIR = PEERS_DIR / "debs"

#: peer name -> the Debian packages that make it up (their extra library dependencies are resolved at fetch time)
PEER_PACKAGES: dict[str, list[str]] = {
    "esmtp": ["esmtp", "libesmtp6"],
    "msmtp": ["msmtp"],
    "nullmailer": ["nullmailer"],
}

LIBESMTP_PLUGIN_PREFIX = b"/usr/lib/x86_64-linux-gnu/esmtp-plugins-6.2.0/sasl-"
MULTIARCH_LIB = "usr/lib/x86_64-linux-gnu"


class PeerError(Exception):
    """A peer could not be fetched, unpacked or checked."""


@dataclass
class Peer:
    """One unpacked peer: where its files are and the environment it needs."""

    name: str
    root: Path
    version: str = "?"
    packages: dict[str, str] = field(default_factory=dict)  # package -> version, including fetched libraries
    error: str | None = None

    @property
    def ld_library_path(self) -> str:
        dirs = [self.root / "lib/x86_64-linux-gnu", self.root / MULTIARCH_LIB]
        return ":".join(str(d) for d in dirs if d.is_dir())

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = self.ld_library_path
        env.setdefault("LC_ALL", "C")
        if extra:
            env.update(extra)
        return env

    def path(self, rel: str) -> Path:
        return self.root / rel


def _run(cmd: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise PeerError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc


def _installed(package: str) -> bool:
    proc = _run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], check=False)
    return proc.returncode == 0 and proc.stdout.startswith("ii")


def _depends(package: str) -> list[str]:
    """Hard dependencies of ``package`` (first alternative of each, virtual packages skipped)."""
    proc = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                 "--no-replaces", "--no-enhances", package], check=False)
    deps: list[str] = []
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*\|?Depends: (\S+)", line)
        if m and not m.group(1).startswith("<"):
            deps.append(m.group(1))
    return deps


_updated = False


def _download(packages: list[str]) -> None:
    """``apt-get download`` into DEBS_DIR; run ``apt-get update`` once if the package lists know nothing yet."""
    global _updated
    DEBS_DIR.mkdir(parents=True, exist_ok=True)
    todo = [p for p in packages if not list(DEBS_DIR.glob(f"{p}_*.deb"))]
    if not todo:
        return
    proc = _run(["apt-get", "download", *todo], cwd=DEBS_DIR, check=False)
    if proc.returncode != 0 and not _updated:
        _updated = True
        _run(["apt-get", "update"], check=False)
        proc = _run(["apt-get", "download", *todo], cwd=DEBS_DIR, check=False)
    if proc.returncode != 0:
        raise PeerError(f"apt-get download {' '.join(todo)}: {proc.stderr.strip()[-500:]}")


def _deb(package: str) -> Path:
    found = sorted(DEBS_DIR.glob(f"{package}_*.deb"))
    if not found:
        raise PeerError(f"no .deb for {package} in {DEBS_DIR}")
    return found[-1]


def _deb_version(package: str) -> str:
    return _run(["dpkg-deb", "-f", str(_deb(package)), "Version"]).stdout.strip()


def _missing_libs(package_list: list[str]) -> list[str]:
    """Library packages the peer depends on, transitively, that this machine does not have installed."""
    wanted: list[str] = []
    seen: set[str] = set(package_list)
    stack = list(package_list)
    while stack:
        for dep in _depends(stack.pop()):
            if dep in seen:
                continue
            seen.add(dep)
            if dep.startswith("lib") and not _installed(dep):
                wanted.append(dep)
                stack.append(dep)
    return wanted


def _ldd_missing(peer: Peer, binaries: list[Path]) -> list[str]:
    missing: set[str] = set()
    for binary in binaries:
        proc = subprocess.run(["ldd", str(binary)], env=peer.env(), capture_output=True, text=True, check=False)
        missing.update(m.group(1) for m in re.finditer(r"^\s*(\S+) => not found", proc.stdout, re.M))
    return sorted(missing)


def _strip_setid(root: Path) -> None:
    """Unpacked setuid/setgid copies must lose those bits (nullmailer ignores its test prefix when setuid)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode
            if mode & (stat.S_ISUID | stat.S_ISGID):
                path.chmod(mode & ~(stat.S_ISUID | stat.S_ISGID))


def _patch_libesmtp(root: Path) -> None:
    """Make libESMTP load its SASL plugins from the working directory (same-length path, see module docstring)."""
    libdir = root / MULTIARCH_LIB
    for lib in libdir.glob("libesmtp.so.*"):
        if lib.is_symlink():
            continue
        data = lib.read_bytes()
        replacement = b"./" + b"/" * (len(LIBESMTP_PLUGIN_PREFIX) - len(b"./sasl-")) + b"sasl-"
        assert len(replacement) == len(LIBESMTP_PLUGIN_PREFIX)
        if LIBESMTP_PLUGIN_PREFIX in data:
            lib.write_bytes(data.replace(LIBESMTP_PLUGIN_PREFIX, replacement))
        elif replacement not in data:
            raise PeerError(f"{lib}: SASL plugin path not found; cannot redirect it")


def esmtp_plugin_dir(peer: Peer) -> Path:
    """The working directory esmtp 1.2 must run in so that libESMTP finds its SASL plugins."""
    return peer.root / MULTIARCH_LIB / "esmtp-plugins-6.2.0"


BINARIES = {
    "esmtp": ["usr/bin/esmtp"],
    "msmtp": ["usr/bin/msmtp"],
    "nullmailer": ["usr/sbin/sendmail", "usr/bin/nullmailer-inject", "usr/sbin/nullmailer-queue",
                   "usr/sbin/nullmailer-send", "usr/lib/nullmailer/smtp"],
}


def fetch_peer(name: str) -> Peer:
    """Download and unpack one peer (idempotent: an unpacked tree with a stamp file is reused)."""
    root = PEERS_DIR / name
    peer = Peer(name=name, root=root)
    stamp = root / ".unpacked"
    packages = list(PEER_PACKAGES[name])
    if not stamp.exists():
        _download(packages)
        extra = _missing_libs(packages)
        _download(extra)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        for pkg in packages + extra:
            _run(["dpkg", "-x", str(_deb(pkg)), str(root)])
        _strip_setid(root)
        if name == "esmtp":
            _patch_libesmtp(root)
        stamp.write_text("\n".join(packages + extra) + "\n")
    for pkg in stamp.read_text().split():
        peer.packages[pkg] = _deb_version(pkg)
    peer.version = peer.packages[PEER_PACKAGES[name][0]]
    missing = _ldd_missing(peer, [root / b for b in BINARIES[name]])
    if missing:
        raise PeerError(f"{name}: shared libraries still missing after unpacking: {', '.join(missing)}")
    return peer


def gnu_time() -> Path | None:
    """GNU time, to read a child's peak RSS from a small parent (see harness.run_steps): the system's if it is
    GNU time, else the Debian ``time`` package unpacked like the peers; None if neither works."""
    candidates = [Path("/usr/bin/time"), PEERS_DIR / "time" / "usr/bin" / "time"]
    for attempt in range(2):
        for path in candidates:
            if path.is_file():
                proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
                if "GNU" in proc.stdout + proc.stderr:
                    return path
        if attempt == 0:
            try:
                _download(["time"])
                (PEERS_DIR / "time").mkdir(parents=True, exist_ok=True)
                _run(["dpkg", "-x", str(_deb("time")), str(PEERS_DIR / "time")])
            except (PeerError, OSError):
                return None
    return None


def fetch_all() -> dict[str, Peer]:
    """Every peer; a peer that cannot be fetched is returned with ``error`` set instead of raising."""
    peers: dict[str, Peer] = {}
    for name in PEER_PACKAGES:
        try:
            peers[name] = fetch_peer(name)
        except (PeerError, OSError) as exc:
            peers[name] = Peer(name=name, root=PEERS_DIR / name, error=str(exc))
    return peers


def main() -> int:
    peers = fetch_all()
    for peer in peers.values():
        if peer.error:
            print(f"{peer.name}: ERROR {peer.error}")
        else:
            pkgs = ", ".join(f"{p} {v}" for p, v in peer.packages.items())
            print(f"{peer.name} {peer.version}: {peer.root} ({pkgs})")
    return 1 if any(p.error for p in peers.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
