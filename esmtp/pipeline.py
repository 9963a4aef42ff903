"""parse → route → authenticate → deliver, for one message. The CLI and the queue both drive delivery from here."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from esmtp.delivery_log import record
from esmtp.errors import DeliveryFailed, EsmtpError, NoDeliveryAgent
from esmtp.types import DeliveryResult

if TYPE_CHECKING:
    from esmtp.message import Message
    from esmtp.types import Envelope, Route, RunContext


def prepare(envelope: Envelope, message: Message, context: RunContext) -> Route:
    """Run the rewriting and header hooks, then route. The message is final after this."""
    hooks, config = context.hooks, context.config
    hooks.rewrite_envelope(envelope, message, config)
    hooks.fixup_headers(envelope, message, config)
    return hooks.route(envelope, config)


def deliver_route(envelope: Envelope, message: Message, route: Route, context: RunContext,
                  *, allow_queue: bool = True) -> list[DeliveryResult]:
    """Hand each leg of ``route`` to its agent. Each leg gets the complete message whatever happens to the others.

    The message is signed (``esmtp_sign_message``) once, before the first leg: every leg sends the same bytes.

    A leg that fails temporarily is offered to the queue (``fallback`` mode) when ``allow_queue``.
    Raises DeliveryFailed if any leg failed and was not queued.
    """
    hooks, config = context.hooks, context.config
    hooks.before_deliver(envelope, message, route, config)
    hooks.sign_message(envelope, message, config, context.trace)  # last: over the message as every leg sends it
    agents = hooks.delivery_agents()
    results: list[DeliveryResult] = []
    errors: list[EsmtpError] = []
    for name, recipients in route.legs.items():
        if not recipients:
            continue
        started = time.monotonic()
        try:
            agent = agents.get(name)
            if agent is None:
                raise NoDeliveryAgent(name, recipients)
            context.trace.info(f"delivering to {', '.join(recipients)} by {name}")
            results.append(agent.factory(context).deliver(envelope, message, recipients))
            record(config, envelope, message.size, name, recipients, started, result=results[-1])
        except EsmtpError as error:
            hooks.deliver_error(envelope, error, config)
            queue_id = None
            if allow_queue and error.temporary:
                queue_id = hooks.queue_message(envelope, message, recipients, config, error)
            record(config, envelope, message.size, name, recipients, started, error=error, queue_id=queue_id)
            if queue_id is None:
                errors.append(error)
            else:
                results.append(DeliveryResult(name, recipients, f"queued as {queue_id} after: {error}"))
    hooks.after_deliver(envelope, results, config)
    if errors:
        raise DeliveryFailed(errors, results)
    return results


def submit(envelope: Envelope, message: Message, context: RunContext) -> list[DeliveryResult]:
    """The whole pipeline for a new message: prepare, offer to the queue ("always" mode), else deliver now."""
    route = prepare(envelope, message, context)
    queue_id = context.hooks.queue_message(envelope, message, list(envelope.recipients), context.config, None)
    if queue_id is not None:
        return [DeliveryResult("queue", list(envelope.recipients), f"queued as {queue_id}")]
    return deliver_route(envelope, message, route, context)

