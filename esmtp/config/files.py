"""Finding and reading the configuration file: ``-C file``, else ``~/.esmtprc`` (a regular file, owned by the user,
no group or other bits), else ``/etc/esmtprc``. Only one file is read; :mod:`esmtp.config.parser` parses it.
"""

from __future__ import annotations

import os
import stat

from esmtp.config.model import Config
from esmtp.errors import ConfigError, ConfigNotFound


def _read(path: str, flags: int = 0) -> str:
    """The file's text (UTF-8; undecodable bytes survive as surrogates). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | flags)
    with open(fd, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape")


def _open_error(path: str, error: OSError) -> ConfigError:
    return ConfigError(f"open: {path}: {error.strerror or error}")


def check_user_file(path: str) -> bool:
    """esmtp's rcfile_check: False when the file does not exist; ConfigError when it may not be used."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise ConfigError(f"lstat: {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"File {path} must be a regular file.")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o067:
        raise ConfigError(
            f"File {path} must not be readable or writable by others (it may hold a password), but its mode is "
            f"{mode:04o}. Fix it with: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():
        raise ConfigError(f"File {path} must be owned by you.")
    return True


def load_config(cli_path: str | None, *, home: str | None = None, system_path: str = "/etc/esmtprc") -> Config:
    """Find and read the configuration as esmtp 1.2 does (``-C``, ``~/.esmtprc`` with checks, ``/etc/esmtprc``).

    ``home`` defaults to ``$HOME``. Raises ConfigNotFound (exit 78) when there is no file at all, ConfigError for a
    file that cannot be opened, fails the permission checks or does not parse.
    """
    from esmtp.config.parser import parse_config

    if cli_path is not None:
        try:
            text = _read(cli_path)
        except OSError as error:
            raise _open_error(cli_path, error) from None
        return parse_config(text, cli_path)
    if home is None:
        home = os.environ.get("HOME")
    user_path = None
    if home:
        user_path = home + ("" if home.endswith("/") else "/") + ".esmtprc"
        if check_user_file(user_path):
            try:
                # O_NOFOLLOW: the file checked above cannot have been swapped for a symlink since.
                return parse_config(_read(user_path, os.O_NOFOLLOW), user_path)
            except FileNotFoundError:
                pass
            except OSError as error:
                raise _open_error(user_path, error) from None
    try:
        return parse_config(_read(system_path), system_path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _open_error(system_path, error) from None
    if user_path is None:
        raise ConfigNotFound(f"No configuration file found at {system_path} (HOME is not set, so no ~/.esmtprc)")
    raise ConfigNotFound(f"No configuration file found at {user_path} or {system_path}")
