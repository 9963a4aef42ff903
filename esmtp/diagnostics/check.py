"""``--check [--secrets] [-f ADDRESS] [ADDRESS...]``: validate the configuration a send would read, one line per
identity, then say which identity each ADDRESS (as a sender) would use and why. Contacts nothing.

Loading already checks the file's permissions, its grammar and the plugins' keywords (a failure there is the usual
``file:line`` error, exit 78). Then each identity is checked as a send would use it: its server, its TLS files and
pin, its AUTH mechanisms and its password source. ``password_command`` and other sources that cost something run
only with ``--secrets``.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from esmtp.config.identities import choose_identity, where
from esmtp.diagnostics import describe
from esmtp.errors import EX_CONFIG, EX_OK, EsmtpError
from esmtp.password_sources import password_source

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.options import Options
    from esmtp.plugins import Hooks


def check(options: Options, config: Config, hooks: Hooks) -> int:
    """Print ``ok``/``FAIL`` per identity; return 0, or 78 when any identity cannot be used."""
    from esmtp.progname import warn

    problems = checked = 0
    _origins(config)
    exposed = _exposed(config)
    for identity in config.identities:
        if identity.address is None and identity is not config.default and not _has_settings(identity):
            continue  # an empty global section before the first identity: nothing a send would use
        checked += 1
        label = identity.address or "(global section)"
        default = " (default)" if identity is config.default else ""
        try:
            summary = _check_identity(identity, hooks, options.secrets)
            if exposed and identity.password is not None:
                raise EsmtpError(exposed)
        except EsmtpError as error:
            problems += 1
            print(f"FAIL {label}{default} at {where(identity)}")
            text = str(error)
            warn(text if text.startswith(identity.source or "\0") else f"{where(identity)}: {text}")
            continue
        print(f"ok   {label}{default} at {where(identity)}: {summary}")
    try:
        hooks.check_config(config)  # the plugins' own settings (the queue's durations, say)
    except EsmtpError as error:
        problems += 1
        print(f"FAIL plugin settings in {config.path}")
        warn(str(error))
    for address in [options.sender, *options.recipients] if options.sender else options.recipients:
        try:
            choice = choose_identity(config, address)
        except EsmtpError as error:  # two patterns tie for this address
            problems += 1
            print(f"FAIL sender {address}")
            warn(str(error))
            continue
        print(f"sender {address}: identity {choice.identity.address or '(global section)'}: {choice.reason}")
    if problems:
        return EX_CONFIG
    if options.secrets:  # say that it ran: a passing --secrets would otherwise look like a plain --check
        print(f"{config.path}: {checked} identity block(s) and their secrets checked (password_command run, keyring "
              "and OAuth2 tokens read); no server was contacted")
    else:
        print(f"{config.path}: {checked} identity block(s) checked; nothing was contacted")
    return EX_OK


def _origins(config: Config) -> None:
    """Where the settings come from: the variables of a configuration made from the environment (values of secret
    keywords not shown), or the ``ESMTP_`` keyword variables that a configuration file makes ignored."""
    from esmtp.config import environment

    if config.origins:
        from esmtp.config.parser import looks_secret

        print(f"configuration from the environment ({len(config.origins)} variable(s); no configuration file):")
        for keyword, name in config.origins.items():
            value = "(secret, not shown)" if looks_secret(keyword) else repr(os.environ.get(name, ""))
            print(f"     {keyword} from {name}" + ("" if name.endswith("_FILE") else f" = {value}"))
        return
    ignored = environment.ignored()
    if ignored:
        print(f"note: {', '.join(ignored)} ignored: settings come from {config.path}, and the environment is read "
              "only when there is no configuration file")


def search_order() -> bool:
    """Print where this user's mail goes, in order (docs/system.md): ``~/.esmtprc``, then the system service, then
    ``/etc/esmtprc``. Returns whether the system service takes it (no ``~/.esmtprc``, the service installed).
    Prints nothing when no system service is installed: then the file each line names tells it all."""
    from esmtp.cli import system_config
    from esmtp.front import SYSTEM_SOCKET, system_maildrop, system_mode, system_path

    home = os.environ.get("HOME")
    own = os.path.join(home, ".esmtprc") if home else None
    socket_file = system_path("ESMTP_SYSTEM_SOCKET", SYSTEM_SOCKET)
    service = system_mode(["sendmail", "-bm"]) is not None
    if not (os.path.exists(socket_file) or os.path.isdir(system_maildrop())):
        return False
    print("order: ~/.esmtprc, then the system service, then /etc/esmtprc")
    print(f"  1. {own or '~/.esmtprc (HOME is not set)'}: {'found' if own and os.path.exists(own) else 'not found'}")
    if os.path.exists(socket_file):
        state = f"socket {socket_file}, maildrop {system_maildrop()}"
    elif os.path.isdir(system_maildrop()):
        state = f"not running: messages wait in the maildrop {system_maildrop()}"
    else:
        state = f"not installed (no {socket_file})"
    print(f"  2. the system service: {state}{' <- your mail goes here' if service else ''}")
    print(f"  3. {system_config()}: {'readable' if os.access(system_config(), os.R_OK) else 'not readable by you'}")
    return service


def _has_settings(identity: Identity) -> bool:
    """Whether a block holds settings a send would use as this block's: the delivery log's keywords in the global
    section apply to every identity, so they alone make no block to check."""
    from esmtp.delivery_log import INHERITED

    own = set(identity.options) - (set(INHERITED) if identity.address is None else set())
    return any((identity.hostname, identity.username, identity.password, own))


def _check_identity(identity: Identity, hooks: Hooks, secrets: bool) -> str:
    host, port = describe.server(identity)
    trust = describe.trust(identity)  # reads and checks the certificate files and the pin
    mechanisms = describe.mechanisms(identity, hooks)  # names no plugin offers are an error
    source = password_source(identity, hooks)
    problem = source.check(secrets)
    if problem:
        located = identity.source and problem.startswith(identity.source)
        raise EsmtpError(problem if located else f"password ({source.description}): {problem}", exit_code=EX_CONFIG)
    parts = [f"{host}:{port}", describe.tls_mode(identity).split(":")[0]]
    if identity.servers:  # failover: every server, with its own TLS mode
        parts[:2] = [describe.servers(identity)]
    parts.extend(f"{name} {value}" for name, value in describe.routing(identity) if name != "servers")
    if trust != "-":
        parts.append(f"trust {trust}")
    if identity.username is not None:
        parts.append(f"user {identity.username}")
    if not mechanisms.startswith("-"):
        parts.append(f"auth {mechanisms.split(' (')[0]}")
    parts.append(f"password {source.description}")
    return ", ".join(parts)


def _exposed(config: Config) -> str:
    """A problem when the file holds a password and others may read it (``-C`` files skip the load-time check)."""
    if config.path is None or not any(i.password is not None for i in config.identities):
        return ""
    try:
        mode = stat.S_IMODE(os.stat(config.path).st_mode)
    except OSError:
        return ""
    if mode & 0o077:
        return (f"{config.path} holds a password but its mode is {mode:04o}: others may read it. "
                f"Fix it with: chmod 600 {config.path}")
    return ""
