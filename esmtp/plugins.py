"""Plugin discovery and the typed facade over ``pm.hook``.

Plugins are found through the entry-point group ``esmtp.plugins``, built-ins included, so any of them can be blocked
by name (``disable_plugins`` in the config, ``ESMTP_DISABLE_PLUGINS`` in the environment) before it is imported.
Scanning installed distributions costs time on every start, so the list of entry points is cached and rescanned only
when a directory on ``sys.path`` changes (installing or removing a distribution changes its directory).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .errors import PluginError

if TYPE_CHECKING:
    from pluggy import PluginManager

    from .config import Config, KeywordSpec
    from .errors import EsmtpError
    from .message import Message
    from .options import Options
    from .types import DeliveryAgent, DeliveryResult, Envelope, Route, SaslMechanism

GROUP = "esmtp.plugins"
CACHE_VERSION = 1

#: Used when esmtp's own distribution metadata cannot be read (a bare source checkout).
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = tuple(
    (name, f"esmtp_plugins.{name}")
    for name in (
        "aliases", "fixup_bcc", "fixup_date", "fixup_from", "fixup_message_id", "fixup_sender", "masquerade", "mda",
        "queue",
        "sasl_crammd5", "sasl_login", "sasl_ntlm", "sasl_plain",
    )
)

#: Core plugins: essential stages, registered directly and never blockable.
CORE_PLUGINS = ("esmtp.route", "esmtp.smtp_agent")


@dataclass(frozen=True, slots=True)
class EntryPointRecord:
    name: str
    value: str
    dist: str


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "esmtp", f"plugins-{sys.implementation.cache_tag}.json")


def _fingerprint() -> list[Any]:
    """What the entry-point list depends on: the interpreter and each path entry's modification time."""
    stamps: list[Any] = [sys.executable]
    for entry in sys.path:
        if not entry:
            continue  # the working directory (python -c, -m): it changes all the time and holds no distributions
        try:
            stamps.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            stamps.append([entry, None])
    return stamps


def scan_entry_points() -> list[EntryPointRecord]:
    """Read every distribution's ``esmtp.plugins`` entry points (slow: it reads all installed metadata)."""
    if sys.version_info >= (3, 12):
        from importlib.metadata import entry_points
    else:
        from importlib_metadata import entry_points

    records = []
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        records.append(EntryPointRecord(ep.name, ep.value, dist))
    return records


def discover(*, use_cache: bool = True) -> list[EntryPointRecord]:
    """The entry points of group ``esmtp.plugins``, from the cache when nothing on ``sys.path`` changed."""
    path = _cache_path()
    fingerprint = _fingerprint()
    if use_cache:
        try:
            with open(path, encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("version") == CACHE_VERSION and cached.get("fingerprint") == fingerprint:
                return [EntryPointRecord(**record) for record in cached["entry_points"]]
        except (OSError, ValueError, TypeError, KeyError):
            pass
    records = scan_entry_points()
    if not records:
        records = [EntryPointRecord(name, value, "esmtp") for name, value in BUILTIN_PLUGINS]
    if use_cache:
        _write_cache(path, fingerprint, records)
    return records


def _write_cache(path: str, fingerprint: list[Any], records: list[EntryPointRecord]) -> None:
    data = {
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
        "entry_points": [{"name": r.name, "value": r.value, "dist": r.dist} for r in records],
    }
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home only costs a rescan next time


def blocked_names(config: Config | None) -> set[str]:
    names = os.environ.get("ESMTP_DISABLE_PLUGINS", "")
    if config is not None:
        names += "," + config.options.get("disable_plugins", "")
    return {name for name in names.replace(",", " ").split() if name}


def _load(record: EntryPointRecord) -> object:
    import importlib

    module_name, _, attribute = record.value.partition(":")
    plugin: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        plugin = getattr(plugin, part)
    return plugin


def _warn(text: str) -> None:
    sys.stderr.write(f"esmtp: {text}\n")


def make_plugin_manager(config: Config | None = None, *, autoload: bool | None = None) -> PluginManager:
    """A plugin manager with the core plugins and every entry point that is not blocked.

    A plugin that fails to import or register is reported on stderr and skipped (``ESMTP_STRICT_PLUGINS=1`` makes
    that fatal). ``ESMTP_PLUGIN_AUTOLOAD=0`` loads esmtp's own plugins only.
    """
    import importlib

    import pluggy

    from . import hookspecs

    pm = pluggy.PluginManager("esmtp")
    pm.add_hookspecs(hookspecs)
    for module_name in CORE_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)

    blocked = blocked_names(config)
    records = discover()
    known = {record.name for record in records}
    for name in sorted(blocked - known):
        _warn(f"disable_plugins names '{name}', but no such plugin is installed")
    if autoload is None:
        autoload = os.environ.get("ESMTP_PLUGIN_AUTOLOAD", "1") != "0"
    strict = os.environ.get("ESMTP_STRICT_PLUGINS", "") == "1"
    # Registered in reverse name order, so that pluggy (last registered, first called) calls them in name order.
    for record in sorted(records, key=lambda r: r.name, reverse=True):
        if record.name in blocked:
            pm.set_blocked(record.name)
            continue
        if not autoload and record.dist != "esmtp":
            continue
        if pm.has_plugin(record.name):
            raise PluginError(f"two plugins are named '{record.name}' (one from {record.dist})")
        try:
            pm.register(_load(record), name=record.name)
        except Exception as error:
            if strict:
                raise PluginError(f"plugin '{record.name}' from {record.dist} failed to load: {error}") from error
            _warn(f"plugin '{record.name}' from {record.dist} failed to load and is skipped: {error}")
    pm.check_pending()
    return pm


class Hooks:
    """Typed, keyword-only calls into the plugins (pluggy itself types nothing)."""

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm

    def config_keywords(self) -> list[KeywordSpec]:
        return [spec for specs in self.pm.hook.esmtp_config_keywords() for spec in specs]

    def sasl_mechanisms(self) -> dict[str, SaslMechanism]:
        return self._by_name(self.pm.hook.esmtp_sasl_mechanisms(), "SASL mechanism")

    def delivery_agents(self) -> dict[str, DeliveryAgent]:
        return self._by_name(self.pm.hook.esmtp_delivery_agents(), "delivery agent")

    def _by_name(self, offers: Iterable[Iterable[Any]], what: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for records in offers:
            for record in records:
                name = record.name.upper() if what == "SASL mechanism" else record.name
                if name in found:
                    raise PluginError(f"two plugins offer the {what} '{name}'")
                found[name] = record
        return found

    def rewrite_envelope(self, envelope: Envelope, message: Message, config: Config) -> None:
        self.pm.hook.esmtp_rewrite_envelope(envelope=envelope, message=message, config=config)

    def fixup_headers(self, envelope: Envelope, message: Message, config: Config) -> None:
        self.pm.hook.esmtp_fixup_headers(envelope=envelope, message=message, config=config)

    def route(self, envelope: Envelope, config: Config) -> Route:
        route = self.pm.hook.esmtp_route(envelope=envelope, config=config)
        if route is None:
            raise PluginError("no plugin routed the message (is the core router blocked?)")
        return cast("Route", route)

    def queue_message(
        self, envelope: Envelope, message: Message, recipients: list[str], config: Config, error: EsmtpError | None
    ) -> str | None:
        return cast(
            "str | None",
            self.pm.hook.esmtp_queue_message(
                envelope=envelope, message=message, recipients=recipients, config=config, error=error
            ),
        )

    def queue_command(self, options: Options, config: Config | None) -> int | None:
        return cast("int | None", self.pm.hook.esmtp_queue_command(options=options, config=config))

    def before_deliver(self, envelope: Envelope, message: Message, route: Route, config: Config) -> None:
        self.pm.hook.esmtp_before_deliver(envelope=envelope, message=message, route=route, config=config)

    def after_deliver(self, envelope: Envelope, results: list[DeliveryResult], config: Config) -> None:
        self.pm.hook.esmtp_after_deliver(envelope=envelope, results=results, config=config)

    def deliver_error(self, envelope: Envelope, error: EsmtpError, config: Config) -> None:
        self.pm.hook.esmtp_deliver_error(envelope=envelope, error=error, config=config)


def resolve_config(config: Config, hooks: Hooks) -> None:
    """Validate the extension keywords of ``config`` against the core's and the plugins' declarations."""
    from .config import CORE_KEYWORDS

    config.resolve_extensions([*CORE_KEYWORDS, *hooks.config_keywords()])
