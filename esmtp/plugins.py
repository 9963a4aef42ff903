"""Plugin discovery, lazy loading, and the typed facade over ``pm.hook``.

Plugins are found through the entry-point group ``esmtp.plugins``, built-ins included, so any of them can be blocked
by name (``disable_plugins`` in the config, ``ESMTP_DISABLE_PLUGINS`` in the environment) before it is imported.

A process starts per message, so two things are cached in ``$XDG_CACHE_HOME/esmtp``:

- the list of entry points: scanning installed distributions reads all their metadata, so it is rescanned only when
  a directory on ``sys.path`` changes (installing or removing a distribution changes its directory);
- an index of what each plugin offers (the hooks it implements, the configuration keywords it declares), learnt the
  first time the plugin is imported and trusted while its source file is unchanged. A run then imports only the
  plugins whose hooks it calls: ``mailq`` loads the queue plugin and no other.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from esmtp.errors import PluginError

if TYPE_CHECKING:
    from pluggy import PluginManager

    from esmtp.config.model import Config, Identity
    from esmtp.errors import EsmtpError
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.password_sources import PasswordSource
    from esmtp.trace import Trace
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, KeywordSpec, Route, SaslMechanism

GROUP = "esmtp.plugins"
CACHE_VERSION = 3

#: Used when esmtp's own distribution metadata cannot be read (a bare source checkout).
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = tuple(
    (name, f"esmtp_plugins.{name}")
    for name in (
        "aliases", "dkim", "fixup_bcc", "fixup_date", "fixup_from", "fixup_message_id", "fixup_sender", "masquerade",
        "mda", "oauth2", "password_command", "password_keyring", "password_netrc", "queue", "sasl_crammd5",
        "sasl_login", "sasl_ntlm", "sasl_oauthbearer", "sasl_plain", "sasl_xoauth2",
    )
)

#: Core plugins: essential stages, registered directly and never blockable.
CORE_PLUGINS = ("esmtp.route", "esmtp.smtp.agent")


@dataclass(frozen=True, slots=True)
class EntryPointRecord:
    name: str
    value: str
    dist: str

    @property
    def key(self) -> str:
        return f"{self.name}={self.value} ({self.dist})"


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "esmtp", f"plugins-{sys.implementation.cache_tag}.json")


def _fingerprint() -> list[Any]:
    """What the entry-point list depends on: the interpreter and each path entry's modification time."""
    stamps: list[Any] = [os.path.realpath(sys.executable)]  # python and python3 are the same interpreter
    for entry in sys.path:
        if not entry:
            continue  # the working directory (python -c, -m): it changes all the time and holds no distributions
        try:
            stamps.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            stamps.append([entry, None])
    return stamps


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


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


class RegistryCache:
    """The cache file: the entry points (valid for one fingerprint) and the plugin index (valid per source file)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.index: dict[str, dict[str, Any]] = {}
        self.records: list[EntryPointRecord] = []
        self._fingerprint: list[Any] = []
        #: The index learnt something new: write the file again.
        self.changed = False

    def entry_points(self) -> list[EntryPointRecord]:
        self._fingerprint = _fingerprint()
        cached: dict[str, Any] = {}
        if self.path is not None:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    cached = json.load(handle)
            except (OSError, ValueError):
                cached = {}
        if cached.get("version") == CACHE_VERSION:
            self.index = cached.get("index") or {}
            if cached.get("fingerprint") == self._fingerprint:
                try:
                    self.records = [EntryPointRecord(**record) for record in cached["entry_points"]]
                    return self.records
                except (TypeError, KeyError):
                    pass
        self.records = scan_entry_points() or [EntryPointRecord(n, v, "esmtp") for n, v in BUILTIN_PLUGINS]
        self.save()
        return self.records

    def known(self, record: EntryPointRecord) -> dict[str, Any] | None:
        """What the plugin offers, if it was learnt from the plugin's current source file."""
        entry = self.index.get(record.key)
        if entry is None or entry.get("mtime") is None or _mtime(entry["source"]) != entry["mtime"]:
            return None
        return entry

    def learn(self, record: EntryPointRecord, plugin: object, hooks: list[str], keywords: list[dict[str, Any]]) -> None:
        module = plugin if hasattr(plugin, "__file__") else sys.modules.get(type(plugin).__module__)
        source = getattr(module, "__file__", None) or ""
        entry = {"hooks": hooks, "keywords": keywords, "source": source, "mtime": _mtime(source)}
        if self.index.get(record.key) != entry:
            self.index[record.key] = entry
            self.changed = True

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": CACHE_VERSION,
            "fingerprint": self._fingerprint,
            "entry_points": [{"name": r.name, "value": r.value, "dist": r.dist} for r in self.records],
            "index": self.index,
        }
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            temporary = f"{self.path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(temporary, self.path)
            self.changed = False
        except OSError:
            pass  # a read-only home only costs a rescan next time


def _names(text: str) -> set[str]:
    return {name for name in text.replace(",", " ").split() if name}


def blocked_names(config: Config | None) -> set[str]:
    """Plugins not to load: ``ESMTP_DISABLE_PLUGINS`` and the configuration's ``disable_plugins``."""
    names = _names(os.environ.get("ESMTP_DISABLE_PLUGINS", ""))
    return names | _names(config.options.get("disable_plugins", "")) if config is not None else names


def _load(record: EntryPointRecord) -> object:
    import importlib

    module_name, _, attribute = record.value.partition(":")
    plugin: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        plugin = getattr(plugin, part)
    return plugin


#: Where a plugin that sets no ``PLUGIN_ORDER`` runs among the plugins of its tryfirst/plain/trylast tier.
DEFAULT_ORDER = 100


def plugin_order(plugin: object) -> int:
    """The plugin's ``PLUGIN_ORDER`` (lower runs earlier within its tier), else :data:`DEFAULT_ORDER`."""
    order = getattr(plugin, "PLUGIN_ORDER", DEFAULT_ORDER)
    return order if isinstance(order, int) else DEFAULT_ORDER


def _warn(text: str) -> None:
    from esmtp.progname import warn

    warn(text)


def _hooks(pm: PluginManager, plugin: object) -> list[str]:
    """The hooks a plugin not registered yet implements, as pluggy's public parser reads its attributes."""
    hooks = []
    for attribute in dir(plugin):
        options = pm.parse_hookimpl_opts(plugin, attribute)
        if options is not None:
            hooks.append(options.get("specname") or attribute)
    return hooks


def _offers(pm: PluginManager, plugin: object) -> tuple[list[str], list[dict[str, Any]]]:
    """The hooks a registered plugin implements (as pluggy sees them) and the keywords it declares, as cacheable
    data. Its keyword declaration runs here: whatever it raises is the plugin's failure to load."""
    hooks = [caller.name for caller in pm.get_hookcallers(plugin) or ()]
    keywords: list[dict[str, Any]] = []
    declare = getattr(plugin, "esmtp_config_keywords", None)
    if "esmtp_config_keywords" in hooks and callable(declare):
        for spec in declare() or ():
            choices = list(spec.choices) if spec.choices is not None else None
            keywords.append(
                {"name": spec.name, "scope": spec.scope, "choices": choices, "help": spec.help, "secret": spec.secret,
                 "conflicts": list(spec.conflicts)}
            )
    return sorted(hooks), keywords


class PluginLoader:
    """Registers entry-point plugins on demand: before a hook is called, every plugin that may implement it.

    A plugin that fails to import or register is reported on stderr and skipped (``ESMTP_STRICT_PLUGINS=1`` makes
    that fatal). ``ESMTP_PLUGIN_AUTOLOAD=0`` loads esmtp's own plugins only.
    """

    def __init__(self, pm: PluginManager, config: Config | None, *, autoload: bool | None = None) -> None:
        self.pm = pm
        self.cache = RegistryCache(_cache_path())
        records = self.cache.entry_points()
        blocked = blocked_names(config)
        if autoload is None:
            autoload = os.environ.get("ESMTP_PLUGIN_AUTOLOAD", "1") != "0"
        self.strict = os.environ.get("ESMTP_STRICT_PLUGINS", "") == "1"
        known = {record.name for record in records}
        from_file = _names(config.options.get("disable_plugins", "")) if config is not None else set()
        for name in sorted(blocked - known):
            where = f"{config.where('disable_plugins')}: disable_plugins" if config is not None and name in from_file \
                else "ESMTP_DISABLE_PLUGINS"
            _warn(f"warning: {where} names '{name}', but no such plugin is installed")
        for name in sorted(blocked & known):
            pm.set_blocked(name)
        self.pending = [
            record for record in sorted(records, key=lambda r: r.name)
            if record.name not in blocked and (autoload or record.dist == "esmtp")
        ]
        self.registered: list[tuple[EntryPointRecord, object]] = []
        #: Hooks whose plugins are all registered: a long-lived process (the listener, the warm relay) calls hooks
        #: for every message, and asking the index again costs a stat() of every pending plugin's source each time.
        self.ready: set[str] = set()
        # Hooks are called from several threads there; _thread (built in) spares the start-up the threading import.
        import _thread

        self._lock = _thread.allocate_lock()

    def _register(self, records: list[EntryPointRecord]) -> None:
        if not records:
            return  # nothing new: the hook's plugins are registered (every hook call asks; the warm relay, often)
        loaded = []
        for record in records:
            self.pending.remove(record)
            if self.pm.has_plugin(record.name):
                raise PluginError(f"two plugins are named '{record.name}' (one from {record.dist})")
            try:
                loaded.append((record, _load(record)))
            except Exception as error:  # noqa: BLE001  (a broken plugin is reported and skipped, never stops mail)
                self._failed(record, error)
        # The call order must not follow the names (renaming a plugin would reorder the headers it adds): within a
        # tryfirst/plain/trylast tier, plugins run by PLUGIN_ORDER, then by name. pluggy calls the last registered
        # first, so they are registered in reverse, together with those of earlier batches that share a hook.
        shared = {hook for _, plugin in loaded for hook in _hooks(self.pm, plugin)}
        for record, plugin in list(self.registered):
            if shared.intersection(_hooks(self.pm, plugin)):
                self.pm.unregister(plugin)
                self.registered.remove((record, plugin))
                loaded.append((record, plugin))
        for record, plugin in sorted(loaded, key=lambda item: (plugin_order(item[1]), item[0].name), reverse=True):
            try:
                self.pm.register(plugin, name=record.name)
                self.cache.learn(record, plugin, *_offers(self.pm, plugin))
            except Exception as error:  # noqa: BLE001  (as above: a plugin whose hooks cannot be registered)
                if self.pm.is_registered(plugin):
                    self.pm.unregister(plugin)  # registered (perhaps in part) but broken: none of its hooks may run
                self._failed(record, error)
            else:
                self.registered.append((record, plugin))
        if self.cache.changed:
            self.cache.save()

    def _failed(self, record: EntryPointRecord, error: Exception) -> None:
        """Report a plugin that failed to load (fatal with ``ESMTP_STRICT_PLUGINS=1``); it is not registered."""
        if self.strict:
            raise PluginError(f"plugin '{record.name}' from {record.dist} failed to load: {error}") from error
        _warn(f"plugin '{record.name}' from {record.dist} failed to load and is skipped: {error}")

    def need(self, hook: str) -> None:
        """Load every pending plugin that implements ``hook``, or whose offers are not known yet."""
        if hook in self.ready:
            return  # registering other plugins never makes a pending one implement it
        with self._lock:
            wanted = []
            for record in self.pending:
                known = self.cache.known(record)
                if known is None or hook in known["hooks"]:
                    wanted.append(record)
            self._register(wanted)
            self.ready.add(hook)

    def load_all(self) -> None:
        with self._lock:
            self._register(list(self.pending))

    def keyword_specs(self) -> list[KeywordSpec]:
        """The keywords of the plugins not imported yet, from the index (importing those not indexed)."""
        from esmtp.types import KeywordSpec

        self._register([record for record in self.pending if self.cache.known(record) is None])
        specs = []
        for record in self.pending:
            known = self.cache.known(record) or {"keywords": ()}
            for keyword in known["keywords"]:
                choices = keyword.get("choices")
                specs.append(
                    KeywordSpec(keyword["name"], keyword["scope"], tuple(choices) if choices is not None else None,
                                keyword.get("help", ""), bool(keyword.get("secret")),
                                tuple(keyword.get("conflicts", ())))
                )
        return specs


def _new_manager() -> PluginManager:
    import importlib

    import pluggy

    from esmtp import hookspecs

    pm = pluggy.PluginManager("esmtp")
    pm.add_hookspecs(hookspecs)
    for module_name in CORE_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    return pm


def make_plugin_manager(config: Config | None = None, *, autoload: bool | None = None) -> PluginManager:
    """A plugin manager with the core plugins and every entry point that is not blocked, all imported now."""
    pm = _new_manager()
    PluginLoader(pm, config, autoload=autoload).load_all()
    pm.check_pending()
    return pm


def load_hooks(config: Config | None = None, *, autoload: bool | None = None) -> Hooks:
    """The hooks of this run, importing each plugin only when a hook it implements is first called."""
    pm = _new_manager()
    return Hooks(pm, PluginLoader(pm, config, autoload=autoload))


class Hooks:
    """Typed, keyword-only calls into the plugins (pluggy itself types nothing).

    With a :class:`PluginLoader`, each call first imports the plugins that implement that hook.
    """

    def __init__(self, pm: PluginManager, loader: PluginLoader | None = None) -> None:
        self.pm = pm
        self.loader = loader

    def _hook(self, name: str) -> Any:
        if self.loader is not None:
            self.loader.need(name)
        return getattr(self.pm.hook, name)

    def config_keywords(self) -> list[KeywordSpec]:
        # First the index (it imports plugins not indexed yet), then the plugins already imported.
        from_index = self.loader.keyword_specs() if self.loader is not None else []
        return [spec for found in self.pm.hook.esmtp_config_keywords() for spec in found] + from_index

    def sasl_mechanisms(self) -> dict[str, SaslMechanism]:
        return self._by_name(self._hook("esmtp_sasl_mechanisms")(), "SASL mechanism")

    def secret(
        self, identity: Identity, host: str, mechanism: SaslMechanism, rejected: str | None, trace: Trace
    ) -> str | None:
        hook = self._hook("esmtp_secret")
        return cast(
            "str | None", hook(identity=identity, host=host, mechanism=mechanism, rejected=rejected, trace=trace)
        )

    def command(self, options: Options, config: Config | None) -> int | None:
        return cast("int | None", self._hook("esmtp_command")(options=options, config=config))

    def delivery_agents(self) -> dict[str, DeliveryAgent]:
        return self._by_name(self._hook("esmtp_delivery_agents")(), "delivery agent")

    def _by_name(self, offers: Iterable[Iterable[Any]], what: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for records in offers:
            for record in records:
                if record.name in found:
                    raise PluginError(f"two plugins offer the {what} '{record.name}'")
                found[record.name] = record
        return found

    def rewrite_envelope(self, envelope: Envelope, message: Message, config: Config) -> None:
        self._hook("esmtp_rewrite_envelope")(envelope=envelope, message=message, config=config)

    def fixup_headers(self, envelope: Envelope, message: Message, config: Config) -> None:
        self._hook("esmtp_fixup_headers")(envelope=envelope, message=message, config=config)

    def route(self, envelope: Envelope, config: Config) -> Route:
        route = self._hook("esmtp_route")(envelope=envelope, config=config)
        if route is None:
            raise PluginError("no plugin routed the message (is the core router blocked?)")
        return cast("Route", route)

    def queue_message(
        self, envelope: Envelope, message: Message, recipients: list[str], config: Config, error: EsmtpError | None
    ) -> str | None:
        hook = self._hook("esmtp_queue_message")
        return cast(
            "str | None", hook(envelope=envelope, message=message, recipients=recipients, config=config, error=error)
        )

    def queue_command(self, options: Options, config: Config | None) -> int | None:
        return cast("int | None", self._hook("esmtp_queue_command")(options=options, config=config))

    def before_deliver(self, envelope: Envelope, message: Message, route: Route, config: Config) -> None:
        self._hook("esmtp_before_deliver")(envelope=envelope, message=message, route=route, config=config)

    def sign_message(self, envelope: Envelope, message: Message, config: Config, trace: Trace) -> None:
        self._hook("esmtp_sign_message")(envelope=envelope, message=message, config=config, trace=trace)

    def after_deliver(self, envelope: Envelope, results: list[DeliveryResult], config: Config) -> None:
        self._hook("esmtp_after_deliver")(envelope=envelope, results=results, config=config)

    def deliver_error(self, envelope: Envelope, error: EsmtpError, config: Config) -> None:
        self._hook("esmtp_deliver_error")(envelope=envelope, error=error, config=config)

    def check_config(self, config: Config) -> None:
        self._hook("esmtp_check_config")(config=config)

    def password_source(self, identity: Identity) -> PasswordSource | None:
        return cast("PasswordSource | None", self._hook("esmtp_password_source")(identity=identity))


def resolve_config(config: Config, hooks: Hooks) -> None:
    """Validate the extension keywords of ``config`` against the core's and the plugins' declarations."""
    from esmtp.config.model import CORE_KEYWORDS

    config.resolve_extensions([*CORE_KEYWORDS, *hooks.config_keywords()])
