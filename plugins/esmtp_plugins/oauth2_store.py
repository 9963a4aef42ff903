"""Where OAuth2 tokens live between runs: the keyring when one is available, else a 0600 file in a 0700 directory.

Per identity (address, username, token endpoint and client id) esmtp keeps the refresh token that
``--oauth2-login`` obtained (and its rotations) and the last access token with its expiry. The state directory is
``$XDG_STATE_HOME/esmtp/oauth2`` (``~/.local/state/esmtp/oauth2``); a directory or file there that others may read is
refused, like the configuration file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import TYPE_CHECKING, Any, Protocol

from esmtp.errors import ConfigError, TemporaryFailure

from .credentials import describe_backend, load_keyring

if TYPE_CHECKING:
    from .oauth2_settings import OAuth2Settings

KEYRING_SERVICE = "esmtp-oauth2:"


class TokenStore(Protocol):
    """A few named strings for one identity (``refresh_token``, ``access_token``)."""

    where: str

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


def store_key(settings: OAuth2Settings) -> str:
    import hashlib

    parts = (settings.name, settings.identity.username or "", settings.token_url, settings.client_id)
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "esmtp", "oauth2")


def _private_dir(path: str) -> None:
    """Create ``path`` (0700, parents too) or check that the existing one is ours and private."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError as error:
        raise ConfigError(f"cannot create the state directory {path}: {error.strerror or error}") from None
    _check_private_dir(path, info)


def _check_private_dir(path: str, info: os.stat_result) -> None:
    if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
        raise ConfigError(
            f"Directory {path} holds OAuth2 tokens and must be yours and private, but its mode is "
            f"{stat.S_IMODE(info.st_mode):04o}. Fix it with: chmod 700 {path}"
        )


class FileStore:
    """One JSON file, 0600, rewritten atomically."""

    def __init__(self, directory: str, key: str, label: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, f"{key}.json")
        self.label = label
        self.where = f"{self.path} (plain text, mode 0600: only you can read it)"

    def _read(self) -> dict[str, Any]:
        try:
            # Checked on read too: a token cached in a directory others may write to may be theirs.
            _check_private_dir(self.directory, os.stat(self.directory))
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(f"cannot read {self.directory}: {error.strerror or error}") from None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(f"cannot read {self.path}: {error.strerror or error}") from None
        with open(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
                raise ConfigError(
                    f"File {self.path} holds OAuth2 tokens and must not be readable or writable by others, but its "
                    f"mode is {stat.S_IMODE(info.st_mode):04o}. Fix it with: chmod 600 {self.path}"
                )
            try:
                data = json.loads(handle.read().decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return {}  # a damaged cache is only a cache: the next refresh rewrites it
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        _private_dir(self.directory)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with open(fd, "wb") as handle:
                handle.write(json.dumps(data).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise TemporaryFailure(f"cannot write {self.path}: {error.strerror or error}") from None

    def get(self, name: str) -> str | None:
        value = self._read().get(name)
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        data = self._read()
        data.update({"identity": self.label, name: value})
        self._write(data)

    def delete(self, name: str) -> None:
        data = self._read()
        if name in data:
            del data[name]
            self._write(data)


class KeyringStore:
    """Entries ``esmtp-oauth2:<key>`` / name in the user's keyring."""

    def __init__(self, keyring: Any, key: str) -> None:
        self.keyring = keyring
        self.service = KEYRING_SERVICE + key
        self.where = f"the keyring, service {self.service} ({describe_backend(keyring)})"

    def get(self, name: str) -> str | None:
        try:
            value = self.keyring.get_password(self.service, name)
        except Exception as error:  # noqa: BLE001  (keyring backends raise their own types: D-Bus, Secret Service...)
            raise TemporaryFailure(f"the keyring could not be read ({type(error).__name__})") from None
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        try:
            self.keyring.set_password(self.service, name, value)
        except Exception as error:  # noqa: BLE001  (as above)
            raise TemporaryFailure(f"the keyring could not store a token ({type(error).__name__})") from None

    def delete(self, name: str) -> None:
        with contextlib.suppress(Exception):  # absent already
            self.keyring.delete_password(self.service, name)


def open_store(settings: OAuth2Settings) -> TokenStore:
    """The keyring store when a keyring is usable, else the state file."""
    key = store_key(settings)
    keyring = load_keyring()
    if keyring is not None:
        return KeyringStore(keyring, key)
    return FileStore(state_dir(), key, f"{settings.name} ({settings.identity.username})")
