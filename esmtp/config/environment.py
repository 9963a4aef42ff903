"""Configuration without a file, for containers: the global section from ``ESMTP_<KEYWORD>`` variables.

Used only when no configuration file exists (``-C`` not given, no ``~/.esmtprc``, no ``/etc/esmtprc``): each
``ESMTP_<KEYWORD>=value`` becomes the statement ``keyword "value"`` of the global section, and the text goes through
the esmtprc parser, so a variable is checked exactly as the line in a file would be (an error names the variable).
``ESMTP_STARTTLS=required`` is ``starttls required``, ``ESMTP_FORCE_SENDER`` is ``force sender``,
``ESMTP_FORCE_REVERSE_PATH`` is ``force reverse_path``. A secret can come from a file, the Docker-secrets convention:
``ESMTP_PASSWORD_FILE=/run/secrets/smtp`` (one trailing newline is dropped), and so for every secret keyword.

:data:`SWITCHES` are the program's own variables, not keywords. The warm relay's fingerprint includes every
``ESMTP_`` variable (:data:`PREFIX`, :mod:`esmtp.front`), so a resident process never serves a caller whose
variables differ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from esmtp.errors import ConfigError

if TYPE_CHECKING:
    from esmtp.config.model import Config

PREFIX = "ESMTP_"
#: The ``path`` of a configuration made from the environment (in messages: ``<environment>:3:``).
ENVIRONMENT = "<environment>"
#: ``ESMTP_`` variables that are switches of the program (docs/cli.md, ENVIRONMENT), never keywords.
SWITCHES = frozenset({
    "ESMTP_QUEUE_DIR", "ESMTP_DISABLE_PLUGINS", "ESMTP_PLUGIN_AUTOLOAD", "ESMTP_STRICT_PLUGINS", "ESMTP_DEBUG",
    "ESMTP_RELAY_DAEMON", "ESMTP_BS_TIMEOUT", "ESMTP_OAUTH2_LOGIN_TIMEOUT", "ESMTP_QUEUE_CRASH_AT",
    "ESMTP_RELAY_TEST_CRASH",
    # The system service's paths and limits (docs/system.md).
    "ESMTP_SYSTEM_SOCKET", "ESMTP_SYSTEM_CONFIG", "ESMTP_SYSTEM_SPOOL", "ESMTP_SYSTEM_MAILDROP", "ESMTP_SYSTEM_USER",
    "ESMTP_SYSTEM_MAILNAME", "ESMTP_SYSTEM_MESSAGE_LIMIT",
})
#: Keywords of esmtp's grammar whose value is a bare word, and the two-word ``force`` statements.
_BARE = frozenset({"starttls", "message_id"})
_SPELLED = {"force_sender": "force sender", "force_reverse_path": "force reverse_path"}
_SECRET_FILE_LIMIT = 64 * 1024


def _quoted(value: str) -> str:
    """``value`` as an esmtprc quoted string: the parser's escapes give back exactly these characters."""
    escaped = value.replace("\\", "\\\\").replace('"', "\\x22").replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _read_secret(name: str, path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_SECRET_FILE_LIMIT + 1)
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path}: {error.strerror or error}") from None
    if len(data) > _SECRET_FILE_LIMIT:
        raise ConfigError(f"{name}: {path} is larger than {_SECRET_FILE_LIMIT // 1024} KiB: not a secret")
    text = data.decode("utf-8", "surrogateescape")
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def statements(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(variable, keyword, statement)`` for each ``ESMTP_`` keyword variable, in name order."""
    from esmtp.config.parser import looks_secret

    found: list[tuple[str, str, str]] = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in SWITCHES or name == PREFIX:
            continue
        keyword, value = name[len(PREFIX) :].lower(), environ[name]
        if keyword.endswith("_file") and looks_secret(keyword[: -len("_file")]):
            keyword = keyword[: -len("_file")]
            value = _read_secret(name, value)
        if any(keyword == seen for _, seen, _ in found):
            other = next(variable for variable, seen, _ in found if seen == keyword)
            raise ConfigError(f"{other} and {name} both set {keyword}: keep one of them")
        if keyword in _BARE and value.isalpha():
            statement = f"{keyword} {value}"
        else:
            statement = f"{_SPELLED.get(keyword, keyword)} {_quoted(value)}"
        found.append((name, keyword, statement))
    return found


def from_environment(environ: Mapping[str, str] | None = None) -> Config | None:
    """The configuration the ``ESMTP_`` variables make, or None when there are none. ConfigError names the variable
    of a statement that does not parse."""
    from esmtp.config.parser import parse_config

    found = statements(os.environ if environ is None else environ)
    if not found:
        return None
    text = "".join(f"{statement}\n" for _, _, statement in found)
    try:
        config = parse_config(text, ENVIRONMENT)
    except ConfigError as error:
        raise _named([name for name, _, _ in found], error) from None
    config.origins = {keyword: name for name, keyword, _ in found}
    return config


def name_error(config: Config, error: ConfigError) -> ConfigError:
    """``error`` about a line of a configuration made from the environment, naming the variable instead."""
    return _named(list(config.origins.values()), error)


def _named(names: list[str], error: ConfigError) -> ConfigError:
    message = str(error)
    for lineno, name in enumerate(names, 1):
        prefix = f"{ENVIRONMENT}:{lineno}: "
        if message.startswith(prefix):
            return ConfigError(f"{name}: {message[len(prefix):]}")
    return error


def ignored(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``ESMTP_`` keyword variables that are set (ignored when a configuration file is read)."""
    environ = os.environ if environ is None else environ
    return [name for name in sorted(environ) if name.startswith(PREFIX) and name not in SWITCHES and name != PREFIX]
