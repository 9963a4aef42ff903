"""The listener's settings: the ``listen_*`` keywords read and checked once, with defaults, and who may connect.

Each limit has a default that serves an application host without configuration; docs/listener.md explains them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from esmtp.errors import ConfigError
from esmtp.server.dialogue import IDLE_TIMEOUT, MAX_RECIPIENTS, MAX_SIZE

if TYPE_CHECKING:
    from esmtp.config.model import Config

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Who may connect without ``listen_allow``: this host only.
LOOPBACK = "127.0.0.0/8 ::1"
MAX_CONNECTIONS = 200
MAX_PER_ADDRESS = 50
DATA_TIMEOUT = 600.0
#: Deliveries running at once (worker threads); more wait for a free worker, their clients at the final dot.
WORKERS = 8
#: On SIGTERM, how long a message whose DATA is still arriving may take to finish (then the client gets 421).
GRACE = 30.0


@dataclass(slots=True)
class ListenSettings:
    allow: list[Network] = field(default_factory=lambda: parse_networks(LOOPBACK, "listen_allow"))
    auth_file: str | None = None
    auth_plaintext: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    smtps_ports: frozenset[int] = frozenset()
    max_size: int = MAX_SIZE
    max_recipients: int = MAX_RECIPIENTS
    max_connections: int = MAX_CONNECTIONS
    max_per_address: int = MAX_PER_ADDRESS
    idle_timeout: float = IDLE_TIMEOUT
    data_timeout: float = DATA_TIMEOUT
    workers: int = WORKERS
    grace: float = GRACE

    def allows(self, address: str) -> bool:
        """Whether a client at ``address`` may connect (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow)


def parse_networks(text: str, keyword: str) -> list[Network]:
    """``127.0.0.1 10.0.0.0/8, fd00::/8`` → networks. Raises ConfigError naming the word that is not one."""
    networks = []
    for word in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise ConfigError(f"{keyword}: '{word}' is not an IP address or network (such as 172.16.0.0/12)") from None
    return networks


def _number(config: Config, keyword: str, default: float, *, integer: bool = True) -> float:
    text = config.options.get(keyword)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = 0
    if value <= 0:
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigError(f"{config.where(keyword)}: {keyword} takes {kind} greater than 0, not '{text}'")
    return value


def load_settings(config: Config) -> ListenSettings:
    """The listener's settings from the configuration's global ``listen_*`` keywords."""
    options = config.options
    settings = ListenSettings()
    if "listen_allow" in options:
        try:
            settings.allow = parse_networks(options["listen_allow"], "listen_allow")
        except ConfigError as error:
            raise ConfigError(f"{config.where('listen_allow')}: {error}") from None
    settings.auth_file = options.get("listen_auth_file") or None
    settings.auth_plaintext = options.get("listen_auth_plaintext") == "enabled"
    settings.tls_cert = options.get("listen_tls_cert") or None
    settings.tls_key = options.get("listen_tls_key") or None
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError(f"{config.path or 'config'}: listen_tls_cert and listen_tls_key go together: give both")
    ports = options.get("listen_smtps", "").replace(",", " ").split()
    if ports and not settings.tls_cert:
        raise ConfigError(f"{config.where('listen_smtps')}: listen_smtps needs listen_tls_cert and listen_tls_key")
    if not all(port.isdigit() and 0 < int(port) < 65536 for port in ports):
        raise ConfigError(f"{config.where('listen_smtps')}: listen_smtps takes port numbers")
    settings.smtps_ports = frozenset(int(port) for port in ports)
    if settings.auth_file and not settings.tls_cert and not settings.auth_plaintext:
        raise ConfigError(f"{config.where('listen_auth_file')}: listen_auth_file needs TLS to offer AUTH (PLAIN and "
                          "LOGIN send the password): set listen_tls_cert and listen_tls_key, or listen_auth_plaintext "
                          "enabled")
    settings.max_size = int(_number(config, "listen_max_size", MAX_SIZE))
    settings.max_recipients = int(_number(config, "listen_max_recipients", MAX_RECIPIENTS))
    settings.max_connections = int(_number(config, "listen_max_connections", MAX_CONNECTIONS))
    settings.max_per_address = int(_number(config, "listen_max_per_address", MAX_PER_ADDRESS))
    settings.idle_timeout = _number(config, "listen_idle_timeout", IDLE_TIMEOUT, integer=False)
    settings.data_timeout = _number(config, "listen_data_timeout", DATA_TIMEOUT, integer=False)
    settings.grace = _number(config, "listen_grace", GRACE, integer=False)
    return settings


def server_tls(settings: ListenSettings) -> object | None:
    """The ``ssl.SSLContext`` for STARTTLS and implicit TLS, or None without a certificate. ConfigError names the
    file that cannot be used."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise ConfigError(f"listen_tls_cert {settings.tls_cert} / listen_tls_key {settings.tls_key}: cannot be "
                          f"used: {reason}") from None
    return context
