"""The queue's settings (the ``queue*`` and ``bounce`` keywords, with their defaults) and the durations they take."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from esmtp.config.model import Config

QueueMode = Literal["disabled", "fallback", "always"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, keyword: str) -> float:
    """``90``, ``30s``, ``5m``, ``2h``, ``5d``, ``1w`` (also combined: ``1h30m``) in seconds."""
    import re

    from esmtp.config.durations import hint
    from esmtp.errors import ConfigError

    value = text.strip().lower()
    parts = re.fullmatch(r"(?:\d+(?:\.\d+)?[smhdw]?)+", value) and re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", value)
    if not parts:
        raise ConfigError(f"'{keyword}' takes a duration such as 30s, 5m, 2h or 5d, not '{text}'{hint(text)}")
    return sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)


def default_queue_dir() -> str:
    """``$XDG_STATE_HOME/esmtp/queue``, else ``~/.local/state/esmtp/queue``."""
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG rule: a relative value is invalid and ignored
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "esmtp", "queue")


@dataclass(frozen=True, slots=True)
class Settings:
    """The queue keywords of the configuration, with their defaults."""

    mode: QueueMode = "disabled"
    path: str = ""
    max_age: float = 5 * 86400.0
    retry: float = 300.0
    retry_max: float = 4 * 3600.0
    bounce: bool = False
    concurrency: int = 4

    @classmethod
    def from_options(cls, options: dict[str, str] | None, where: Callable[[str], str] | None = None) -> Settings:
        """From the global options of a configuration (None: no configuration file). ``ESMTP_QUEUE_DIR`` wins.

        ``where(keyword)`` gives the ``file:line`` that errors start with.
        """
        from esmtp.errors import ConfigError

        options = options or {}

        def duration(keyword: str, default: str) -> float:
            try:
                return parse_duration(options.get(keyword, default), keyword)
            except ConfigError as error:
                raise ConfigError(f"{where(keyword)}: {error}" if where else str(error)) from None

        concurrency = options.get("queue_concurrency", "4")
        if not concurrency.isdigit() or int(concurrency) < 1:
            prefix = f"{where('queue_concurrency')}: " if where else ""
            raise ConfigError(f"{prefix}'queue_concurrency' takes a positive number, not '{concurrency}'")
        mode = options.get("queue", "disabled")
        return cls(
            mode=mode if mode in ("fallback", "always") else "disabled",  # type: ignore[arg-type]
            path=queue_path(options),
            max_age=duration("queue_max_age", "5d"),
            retry=duration("queue_retry", "5m"),
            retry_max=duration("queue_retry_max", "4h"),
            bounce=options.get("bounce", "disabled") == "enabled",
            concurrency=int(concurrency),
        )

    def backoff(self, attempts: int) -> float:
        """Delay before try number ``attempts + 1``: ``retry`` doubled per failed try, at most ``retry_max``."""
        return float(min(self.retry * 2 ** min(max(attempts - 1, 0), 60), self.retry_max))


def settings_for(config: Config | None) -> Settings:
    """The settings of ``config`` (None: no configuration file, so the defaults). Errors name the file and line."""
    if config is None:
        return Settings.from_options(None)
    return Settings.from_options(config.options, config.where)


def queue_path(options: dict[str, str] | None) -> str:
    """The queue directory: ``ESMTP_QUEUE_DIR``, else ``queue_dir``, else the default; relative to the home."""
    options = options or {}
    path = os.path.expanduser(os.environ.get("ESMTP_QUEUE_DIR") or options.get("queue_dir") or default_queue_dir())
    return path if os.path.isabs(path) else os.path.join(os.path.expanduser("~"), path)


def format_duration(seconds: float) -> str:
    """A duration as the configuration spells it (``5d``, ``4h``, ``90s``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
