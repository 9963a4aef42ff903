"""Finding and reading the configuration file: ``-C file``, else ``~/.esmtprc`` (a regular file, owned by the user,
no group or other bits; or a symbolic link of the user's to such a file), else ``/etc/esmtprc``. Only one file is
read; :mod:`esmtp.config.parser` parses it.
"""

from __future__ import annotations

import os

from esmtp.config.model import Config
from esmtp.errors import ConfigError, ConfigNotFound


def _read(path: str, flags: int = 0) -> str:
    """The file's text (UTF-8; undecodable bytes survive as surrogates). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | flags)
    with open(fd, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape")


def _open_error(path: str, error: OSError) -> ConfigError:
    return ConfigError(f"open: {path}: {error.strerror or error}")


def check_user_file(path: str, *, holds: str = "a password") -> bool:
    """esmtp's rcfile_check (for ``~/.netrc`` and DKIM keys too): False when the file does not exist; ConfigError when
    it may not be used. ``holds`` says why in the error (a DKIM key file holds a private key)."""
    from esmtp.front import open_user_file

    fd, problem = open_user_file(path, holds)
    if problem is not None:
        raise ConfigError(problem)
    if fd is not None:
        os.close(fd)
    return fd is not None


def _read_user_file(path: str) -> str | None:
    """esmtp's rcfile_check, then the file's text: None when the file does not exist; ConfigError when it may not be
    used. The rule, shared with the front end (which reads ``relay_daemon`` before anything is imported), is
    :func:`esmtp.front.open_user_file`: it checks the opened descriptor, and never waits on a FIFO."""
    from esmtp.front import open_user_file

    fd, problem = open_user_file(path)
    if problem is not None:
        raise ConfigError(problem)
    if fd is None:
        return None
    with open(fd, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape")


def load_config(cli_path: str | None, *, home: str | None = None, system_path: str = "/etc/esmtprc") -> Config:
    """Find and read the configuration as esmtp 1.2 does (``-C``, ``~/.esmtprc`` with checks, ``/etc/esmtprc``).

    ``home`` defaults to ``$HOME``. Without any file, the ``ESMTP_<KEYWORD>`` variables make the configuration
    (:mod:`esmtp.config.environment`). Raises ConfigNotFound (exit 78) when there is neither, ConfigError for a
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
        try:
            user_text = _read_user_file(user_path)
        except OSError as error:
            raise _open_error(user_path, error) from None
        if user_text is not None:
            return parse_config(user_text, user_path)
    try:
        return parse_config(_read(system_path), system_path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _open_error(system_path, error) from None
    from esmtp.config.environment import from_environment

    config = from_environment()  # containers: the global section from ESMTP_<KEYWORD> variables
    if config is not None:
        return config
    if user_path is None:
        raise ConfigNotFound(f"No configuration file found at {system_path} (HOME is not set, so no ~/.esmtprc); "
                             "or set ESMTP_HOSTNAME and the other ESMTP_<KEYWORD> variables")
    raise ConfigNotFound(f"No configuration file found at {user_path} or {system_path}; or set ESMTP_HOSTNAME and "
                         "the other ESMTP_<KEYWORD> variables")
