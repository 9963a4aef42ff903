"""``--pretend``: read the message, run the pipeline up to delivery (rewriting, header fixups, routing, signing),
print the plan and send nothing. The password is never printed, only where it would come from."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from esmtp.diagnostics import describe
from esmtp.password_sources import password_source

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.types import Envelope, Route, RunContext


def plan(options: Options, config: Config, hooks: Hooks) -> int:
    """Read standard input as a send would, then print what would be done with it. Returns 0."""
    import os

    from esmtp.config.identities import choose_identity
    from esmtp.envelope import build_envelope
    from esmtp.message import read_message
    from esmtp.pipeline import prepare
    from esmtp.trace import Trace
    from esmtp.types import RunContext

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
        sys.stdout.write(_route_lines(envelope, route, RunContext(config, hooks, Trace())))
        sys.stdout.write(_header_lines(message))
    sys.stdout.write("nothing was sent (--pretend)\n")
    return 0


def _has_recipients(options: Options, message: Message) -> bool:
    if options.recipients:
        return True
    if options.read_recipients:
        from esmtp.envelope import recipients_from_headers

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
    lines.extend(describe.routing(identity))
    if identity.preconnect:
        lines.append(("preconnect", identity.preconnect))
    return "".join(f"{name + ':':<17}{value}\n" for name, value in lines)


def _route_lines(envelope: Envelope, route: Route, context: RunContext) -> str:
    config = context.config
    agents = context.hooks.delivery_agents()
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
        offered = agents.get(agent)
        describe = getattr(offered.factory(context), "describe", None) if offered is not None else None
        if describe is not None:  # an agent may say what it would do (the MDA: its command line)
            lines.append(f"{agent + ' command:':<17}{describe(envelope, recipients)}\n")
    return "".join(lines)


def _header_lines(message: Message) -> str:
    head = message.header_bytes().decode("utf-8", "backslashreplace").replace("\r\n", "\n")
    return "headers:\n" + "".join(f"  {line}\n" for line in head.rstrip("\n").split("\n"))
