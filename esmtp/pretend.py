"""``--pretend``: read the message, run the pipeline up to delivery (rewriting, header fixups, routing, signing),
print the plan and send nothing. The password is never printed, only where it would come from."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from . import describe
from .password_sources import password_source

if TYPE_CHECKING:
    from .config import Config, Identity
    from .message import Message
    from .options import Options
    from .plugins import Hooks
    from .types import Envelope, Route


def plan(options: Options, config: Config, hooks: Hooks) -> int:
    """Read standard input as a send would, then print what would be done with it. Returns 0."""
    import os

    from .envelope import build_envelope
    from .identities import choose_identity
    from .message import read_message
    from .pipeline import prepare
    from .trace import Trace
    from .types import RunContext

    stdin = sys.stdin.buffer if sys.stdin is not None else open(os.devnull, "rb")  # noqa: SIM115
    with read_message(stdin) as message:
        envelope = build_envelope(options, message, config) if _has_recipients(options, message) else None
        if envelope is None:  # --pretend alone: no recipients, show the identity anyway
            choice = choose_identity(config, options.sender, options.identity)
            sys.stdout.write(_identity_lines(choice.identity, choice.reason, config, hooks))
            sys.stdout.write("recipients: none given\n")
            return 0
        given = envelope.given_sender
        choice = choose_identity(config, given, options.identity)
        trace = Trace()
        route = prepare(envelope, message, RunContext(config, hooks, trace))
        hooks.sign_message(envelope, message, config, trace)  # the signature a send would add (DKIM), made now
        sys.stdout.write(_identity_lines(envelope.identity, choice.reason, config, hooks))
        sys.stdout.write(_route_lines(envelope, route, config))
        sys.stdout.write(_header_lines(message))
    sys.stdout.write("nothing was sent (--pretend)\n")
    return 0


def _has_recipients(options: Options, message: Message) -> bool:
    if options.recipients:
        return True
    if options.read_recipients:
        from .envelope import recipients_from_headers

        return bool(recipients_from_headers(message))
    return False


def _identity_lines(identity: Identity, reason: str, config: Config, hooks: Hooks) -> str:
    host, port = describe.server(identity)
    lines = [
        ("configuration", config.path or "-"),
        ("identity", f"{identity.address or '(global section)'}: {reason}"),
        ("server", f"{host}:{port}"),
        ("tls", describe.tls_mode(identity)),
        ("trust", describe.trust(identity)),
        ("user", identity.username if identity.username is not None else "-"),
        ("auth mechanisms", describe.mechanisms(identity, hooks)),
        ("password", password_source(identity, hooks).description),
        ("log", describe.log_targets(identity, config)),
    ]
    if identity.preconnect:
        lines.append(("preconnect", identity.preconnect))
    return "".join(f"{name + ':':<17}{value}\n" for name, value in lines)


def _route_lines(envelope: Envelope, route: Route, config: Config) -> str:
    lines = [f"{'sender:':<17}<{envelope.sender}>\n"]
    queue = config.options.get("queue", "disabled")
    if queue != "disabled":
        when = "stored first, then sent in the background" if queue == "always" else "stored if delivery fails " \
            "temporarily"
        lines.append(f"{'queue:':<17}{queue}: {when}\n")
    for agent, recipients in route.legs.items():
        if not recipients:
            continue
        lines.append(f"{'to (' + agent + '):':<17}{', '.join(recipients)}\n")
        if agent == "mda":
            lines.append(f"{'mda command:':<17}{_mda_command(config, envelope, recipients)}\n")
    return "".join(lines)


def _mda_command(config: Config, envelope: Envelope, recipients: list[str]) -> str:
    """The MDA command line exactly as it would run, or why it would not."""
    if not config.mda:
        return "none configured: local delivery would fail (set 'mda', or 'qualifydomain')"
    try:
        from esmtp_plugins.mda import MdaCommand
    except ImportError:  # the built-in MDA plugin replaced by another one
        return config.mda
    return MdaCommand.parse(config.mda).display(recipients, envelope.given_sender or "")


def _header_lines(message: Message) -> str:
    head = message.header_bytes().decode("utf-8", "backslashreplace").replace("\r\n", "\n")
    return "headers:\n" + "".join(f"  {line}\n" for line in head.rstrip("\n").split("\n"))
