"""``esmtp --import-msmtprc [FILE]``: an msmtp configuration converted into an esmtprc, printed on standard output.

Each msmtp account with a ``from`` address becomes an ``identity`` block (esmtp chooses identities by sender
address, as ``msmtp -f`` chooses accounts); the account msmtp uses by default gets ``default``. Every setting that
has no esmtp equivalent is kept as a comment saying why, so nothing is dropped silently. docs/migrating.md has the
table this module implements.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from esmtp.config.model import parse_hostname
from esmtp.config.msmtprc import Account, Msmtprc, Setting, parse_msmtprc
from esmtp.errors import ConfigError, ConfigNotFound

#: msmtp commands whose value esmtp takes under another keyword, unchanged.
_RENAMED = {"user": "username", "password": "password", "passwordeval": "password_command"}
#: The SASL mechanisms of esmtp's built-in plugins (pyproject.toml's sasl_* entry points); others need a plugin.
_BUILT_IN_MECHANISMS = frozenset({"PLAIN", "LOGIN", "CRAM-MD5", "NTLM", "XOAUTH2", "OAUTHBEARER"})
#: msmtp commands that the conversion consumes while writing other keywords.
_CONSUMED = frozenset(
    {"host", "port", "tls", "tls_starttls", "from", "auth", "user", "password", "passwordeval", "allow_from_override"}
)
#: Commands that only select msmtp behaviour esmtp has anyway, when they have these values.
_ALREADY = {
    ("remove_bcc_headers", ""), ("remove_bcc_headers", "on"), ("set_msgid_header", "auto"),
    ("set_date_header", "auto"), ("add_missing_date_header", "on"), ("set_from_header", "auto"),
    ("add_missing_from_header", "on"), ("tls_trust_file", "system"), ("tls_trust_file", ""),
    ("tls_certcheck", "on"), ("tls_certcheck", ""), ("protocol", "smtp"), ("auto_from", "off"),
    ("allow_from_override", "on"), ("allow_from_override", ""), ("tls_starttls", "on"), ("tls_starttls", ""),
    ("logfile", ""), ("aliases", ""),
    # The distributions' system CA bundles (Debian/Ubuntu/Arch, Fedora/RHEL, openSUSE, Alpine): esmtp trusts them.
    ("tls_trust_file", "/etc/ssl/certs/ca-certificates.crt"), ("tls_trust_file", "/etc/pki/tls/certs/ca-bundle.crt"),
    ("tls_trust_file", "/etc/ssl/ca-bundle.pem"), ("tls_trust_file", "/etc/ssl/cert.pem"),
}
#: Why a setting cannot be converted, by command.
_NO_EQUIVALENT = {
    "tls_trust_file": "esmtp trusts the system CA store plus ~/.authenticate/ca.pem: cp {value} ~/.authenticate/ca.pem",
    "tls_cert_file": "esmtp reads the client certificate and its key from one file, "
    "~/.authenticate/private/smtp-starttls.pem: cat {value} KEYFILE > ~/.authenticate/private/smtp-starttls.pem",
    "tls_key_file": "see tls_cert_file: the key goes in ~/.authenticate/private/smtp-starttls.pem",
    "tls_certcheck": "esmtp always verifies certificates; pin a self-signed one with tls_fingerprint",
    "tls_crl_file": "no equivalent",
    "tls_priorities": "no equivalent; tls_min_version sets the lowest TLS version",
    "tls_min_dh_prime_bits": "no equivalent",
    "tls_host_override": "no equivalent: the certificate must match the hostname",
    "dsn_notify": "no configuration keyword: callers pass -N",
    "dsn_return": "no configuration keyword: callers pass -R",
    "from_full_name": "no configuration keyword: callers pass -F",
    "set_from_header": "esmtp adds a From: only when the message has none",
    "add_missing_from_header": "esmtp adds a From: when the message has none",
    "set_date_header": "esmtp adds a Date: when the message has none",
    "add_missing_date_header": "esmtp adds a Date: when the message has none",
    "set_msgid_header": "see message_id",
    "remove_bcc_headers": "esmtp always removes Bcc:",
    "undisclosed_recipients": "no equivalent",
    "logfile": "no equivalent for '-' (standard output)",
    "logfile_time_format": "no equivalent",
    "syslog": "not a facility esmtp accepts (user, mail, daemon, local0...local7)",
    "auto_from": "no equivalent: give the identity's address, or force reverse_path with %u",
    "maildomain": "no equivalent: see qualifydomain for local recipients",
    "ntlmdomain": "write the domain in the user name: username \"DOMAIN\\\\user\"",
    "source_ip": "not an IPv4 or IPv6 address, which esmtp's source_ip needs",
    "proxy_port": "not a port number (1-65535)",
    "socket": "no equivalent",
    "protocol": "esmtp speaks SMTP only",
    "timeout": "esmtp always has a timeout (60 seconds by default)",
    "domain": "esmtp's helo has %H (the host name) and %D (the sender's domain), not msmtp's %C and %M",
    "eval": "not run: the command's output would be a setting of its own; run it and write the result",
}
_SIMPLE_VALUE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-/:%[]~*?!")


def quote(value: str) -> str:
    """``value`` as an esmtprc value: unquoted when that is unambiguous, else in quotes with ``\\`` doubled."""
    if value and value[0] not in "=#" and _SIMPLE_VALUE.issuperset(value):
        return value
    escaped = value.replace("\\", "\\\\")
    if '"' not in escaped:
        return f'"{escaped}"'
    if "'" not in escaped:
        return f"'{escaped}'"
    return "".join(char if char.isalnum() else "\\" + char for char in value)  # both quotes: escape, unquoted


@dataclass(slots=True)
class _Block:
    """The esmtprc lines of one account."""

    lines: list[str] = field(default_factory=list)

    def set(self, keyword: str, value: str) -> None:
        self.lines.append(f"  {keyword} {quote(value)}")

    def note(self, setting: Setting, why: str) -> None:
        shown = setting.argument if setting.command not in ("password",) else "****"
        self.lines.append(f"  # msmtp line {setting.lineno}: {setting.command} {shown}".rstrip() + f" -- {why}")


_PATTERN = "?*[%"


def _exact_from(address: str | None) -> bool:
    """An address esmtp can match exactly: no msmtp wildcard or substitution pattern."""
    return bool(address) and not any(char in _PATTERN for char in address or "")


def _usable_from(address: str | None) -> bool:
    """An address esmtp can express as an identity: an exact one, or a shell-style pattern (msmtp 1.8.16's ``from``
    patterns are esmtp's identity patterns). msmtp's substitutions (``%U@%H``) are not."""
    return bool(address) and "%" not in (address or "")


def _hostname(account: Account) -> str | None:
    host = account.get("host")
    if not host:
        return None
    tls_on = account.get("tls") in ("on", "")
    implicit = tls_on and account.get("tls_starttls") == "off"
    port = account.get("port") or ("465" if implicit else "25")  # msmtp's defaults, written out (esmtp's is 587)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _convert(account: Account, block: _Block) -> None:
    """Write ``account``'s settings into ``block``: keywords where esmtp has them, comments where it has not."""
    settings = account.settings
    hostname = _hostname(account)
    if hostname is None:
        block.lines.append("  # no host: msmtp refuses this account; esmtp would connect to localhost:25")
    else:
        try:
            parse_hostname(hostname)
            block.set("hostname", hostname)
        except ValueError as error:
            block.note(settings["host"], f"not converted: {error}")
    for command in ("tls", "tls_starttls"):
        setting = settings.get(command)
        if setting is not None and setting.argument not in ("on", "off", ""):
            block.note(setting, "not converted: msmtp takes on or off (it refuses this file)")
    if account.get("tls") in ("on", ""):
        if account.get("tls_starttls") == "off":
            block.set("smtps", "enabled")
        else:
            block.set("starttls", "required")
    auth = account.get("auth")
    authenticate = auth is not None and auth != "off"
    if auth not in (None, "", "on", "off"):
        block.set("auth_mechanisms", auth.upper())
        if auth.upper() not in _BUILT_IN_MECHANISMS:
            built_in = ", ".join(sorted(_BUILT_IN_MECHANISMS))
            block.lines.append(f"  # (esmtp's built-in mechanisms are {built_in}: {auth.upper()} needs a plugin)")
        elif auth.upper() in ("XOAUTH2", "OAUTHBEARER"):
            block.lines.append("  # (password_command prints the access token, as passwordeval did; esmtp can also "
                               "refresh tokens itself: oauth2_provider, see docs/authentication.md)")
    for command in ("user", "password", "passwordeval"):
        setting = settings.get(command)
        if setting is None:
            continue
        if command == "passwordeval" and "password" in settings:  # esmtp refuses both in one identity
            block.note(setting, "not converted: msmtp uses 'password' when an account has both")
        elif authenticate:
            block.set(_RENAMED[command], setting.argument)
        else:
            block.note(setting, "not converted: msmtp does not authenticate without 'auth on'")
    if account.get("allow_from_override") == "off" and _exact_from(account.get("from")):
        block.set("force reverse_path", account.get("from") or "")
    for command, setting in settings.items():
        if command in _CONSUMED or (command, setting.argument) in _ALREADY:
            continue
        _convert_other(setting, block)


def _convert_other(setting: Setting, block: _Block) -> None:
    command, value = setting.command, setting.argument
    if command == "tls_fingerprint":
        digits = value.replace(":", "")
        if len(digits) == 64:
            block.set("tls_fingerprint", "SHA256:" + value.upper())
        else:
            block.note(setting, "only SHA-256 fingerprints are accepted: openssl x509 -noout -fingerprint -sha256")
    elif command == "set_msgid_header" and value == "off":
        block.set("message_id", "disabled")
    elif command == "domain" and "%C" not in value and "%M" not in value:
        block.set("helo", value)
    elif command == "source_ip" and _is_address(value):
        block.set("source_ip", value)
    elif command == "proxy_host" and value:
        block.set("proxy_host", value)
    elif command == "proxy_port" and value.isascii() and value.isdigit() and 1 <= int(value) <= 65535:
        block.set("proxy_port", value)
    elif command == "timeout" and value.isdigit() and int(value) > 0:
        block.set("timeout", value)
    elif command == "logfile" and value != "-":
        block.set("logfile", value)
    elif command == "syslog" and _syslog(value) is not None:
        block.set("syslog", _syslog(value) or "")
    elif command == "aliases":
        block.set("aliases_file", value)
        block.lines.append("  # (aliases_file is global; msmtp's special 'default' alias has no equivalent)")
    elif command in _NO_EQUIVALENT:
        block.note(setting, _NO_EQUIVALENT[command].format(value=value))
    else:
        block.note(setting, "unknown msmtp command, not converted")


def _is_address(value: str) -> bool:
    import socket

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, value)
        except OSError:
            continue
        return True
    return False


def _same(one: Account, other: Account) -> bool:
    return {k: s.argument for k, s in one.settings.items()} == {k: s.argument for k, s in other.settings.items()}


def _header(account: Account, path: str) -> str:
    copied = f", copying {', '.join(account.parents)}" if account.parents else ""
    return f"# msmtp account '{account.name}' ({path} line {account.lineno}{copied})"


def _skip_reason(account: Account, default: Account | None, seen: dict[str, Account]) -> str | None:
    """Why a non-default account gets no identity block, or None when it gets one."""
    address = account.get("from")
    if not _usable_from(address):
        if address:
            return f"'from {address}' uses msmtp's substitutions (%U, %H, %C, %M), which esmtp's identities have not"
        return "it has no 'from' address"
    assert address is not None
    if address in seen:
        return f"account '{seen[address].name}' has the same 'from' address, and msmtp -f takes the first"
    earlier = dict(seen)
    if default is not None and _usable_from(default.get("from")):
        earlier[default.get("from") or ""] = default
    tie = _tie(address, earlier)
    if tie is not None:
        return (f"its 'from {address}' and account '{tie.name}''s 'from {tie.get('from')}' match the same senders "
                "equally well, which esmtp refuses; msmtp -f takes the first")
    if default is not None and address == default.get("from"):
        if _same(account, default):
            return "it is the same as the default account"
        if account.lineno > default.lineno:
            return f"account '{default.name}' has the same 'from' address, and msmtp -f takes the first"
    return None


def _tie(address: str, seen: dict[str, Account]) -> Account | None:
    """An account already converted whose ``from`` pattern ties with ``address`` (see esmtp.config.identities)."""
    from esmtp.config.identities import is_pattern, patterns_tie

    if not is_pattern(address):
        return None
    return next((other for pattern, other in seen.items() if patterns_tie(pattern, address)), None)


def _shadowed(account: Account, earlier: list[Account]) -> list[str]:
    """A note when an account converted before this one has a ``from`` pattern that matches some of this one's
    senders: msmtp -f takes the first matching account, esmtp the most specific address or pattern."""
    from esmtp.config.identities import common_match, is_pattern

    address = account.get("from") or ""
    notes = []
    for other in earlier:
        pattern = other.get("from") or ""
        if other is not account and is_pattern(pattern) and (example := common_match(pattern, address)) is not None:
            notes.append(f"  # (msmtp -f {example} took account '{other.name}' ('from {pattern}', the first that "
                         "matches); esmtp takes the most specific: esmtp --check ADDRESS shows which)")
    return notes


def _identity(account: Account, path: str, *, default: bool, earlier: list[Account] | None = None) -> list[str]:
    block = _Block()
    _convert(account, block)
    block.lines.extend(_shadowed(account, earlier or []))
    address = account.get("from")
    if not _usable_from(address):  # only the default account comes here: it becomes the anonymous global section
        pattern = f"; msmtp's 'from {address}' is a pattern" if address else ""
        head = [f"{_header(account, path)}: the global section (no usable 'from' address{pattern})"]
        return [*head, *(line.strip() for line in block.lines), "default", ""]
    assert address is not None
    tail = ["  default"] if default else []
    return [_header(account, path), f"identity {quote(address)}", *block.lines, *tail, ""]


def convert(rc: Msmtprc) -> str:
    """The esmtprc text for ``rc``.

    The default account comes first: a block without a usable address can then be the global section, and a block
    for an account defined before it with the same address comes later and wins for ``-f`` (esmtp takes the last
    matching block, msmtp the first matching account).
    """
    from esmtp import __version__

    out = [
        f"# esmtprc converted from {rc.path} by esmtp --import-msmtprc (esmtp {__version__}).",
        "# It may hold passwords: save it privately, e.g. (umask 077; esmtp --import-msmtprc > ~/.esmtprc)",
        "# Settings without an esmtp equivalent are kept as comments; see docs/migrating.md and esmtprc(5).",
        "",
    ]
    for setting in rc.stray:
        where = "an eval line" if setting.command == "eval" else "before any account or defaults (msmtp ignores it)"
        out.append(f"# msmtp line {setting.lineno}: {setting.command} {setting.argument} -- {where}, not converted")
    default = rc.default
    if default is not None:
        out.extend(_identity(default, rc.path, default=True))
    elif rc.accounts:
        out.extend(["# msmtp has no 'default' account here: without -f, esmtp uses the first identity below.", ""])
    seen: dict[str, Account] = {}
    for account in rc.accounts:
        if account is default:
            continue
        reason = _skip_reason(account, default, seen)
        if reason is not None:
            block = _Block()
            _convert(account, block)
            out.append(f"{_header(account, rc.path)}: not converted: {reason}")
            out.extend(f"#{line}" if not line.lstrip().startswith("#") else line for line in block.lines)
            out.append("")
            continue
        out.extend(_identity(account, rc.path, default=False,
                             earlier=[a for a in rc.accounts if a.lineno < account.lineno and a is not default
                                      and (a.get("from") or "") in seen]))
        seen[account.get("from") or ""] = account
    if not rc.accounts:
        out.append("# no account found: nothing to convert")
    return "\n".join(out).rstrip("\n") + "\n"


def default_paths() -> list[str]:
    """Where msmtp looks for the user's file: ``~/.msmtprc``, then ``$XDG_CONFIG_HOME/msmtp/config``."""
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return [os.path.join(home, ".msmtprc"), os.path.join(xdg, "msmtp", "config")]


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"open: {path}: {error.strerror or error}") from None


def import_command(path: str | None) -> int:
    """Print the esmtprc converted from ``path`` (None: msmtp's default locations); exit code 0."""
    if path is None:
        candidates = default_paths()
        path = next((candidate for candidate in candidates if os.path.exists(candidate)), None)
        if path is None:
            raise ConfigNotFound(
                f"no msmtp configuration at {' or '.join(candidates)}; name it: esmtp --import-msmtprc FILE"
            )
    rc = parse_msmtprc(_read(path), "standard input" if path == "-" else path)
    sys.stdout.write(convert(rc))
    return 0


def _syslog(value: str) -> str | None:
    """msmtp's ``syslog`` value as esmtp's: ``on`` is msmtp's default facility, LOG_USER; None if it has none."""
    from esmtp.config.model import SYSLOG_CHOICES

    lowered = value.lower()
    if lowered in ("", "on"):
        return "user"
    if lowered == "off":
        return "disabled"
    return value if value in SYSLOG_CHOICES else None
