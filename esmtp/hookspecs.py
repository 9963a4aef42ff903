"""The hooks that esmtp plugins implement.

The pipeline is parse → route → authenticate → deliver. Hooks are synchronous; the SMTP session, the only async work,
is driven by the core. Implementations take keyword arguments and may accept any subset of a hook's parameters.
Hooks that return a value for the core to use are ``firstresult`` where one answer is wanted ("Stops at first non-None
result"); registration hooks (``esmtp_*s``) return records from every plugin and the core chooses among them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pluggy import HookspecMarker

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.errors import EsmtpError
    from esmtp.message import Message
    from esmtp.options import Options
    from esmtp.password_sources import PasswordSource
    from esmtp.trace import Trace
    from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, KeywordSpec, Route, SaslMechanism

_hookspec = HookspecMarker("esmtp")

# --------------------------------------------------------------------------------------------------------------------
# Registration: what plugins offer. Called once per run, when the core needs the answer.
# --------------------------------------------------------------------------------------------------------------------


@_hookspec
def esmtp_config_keywords() -> Iterable[KeywordSpec]:
    """Declare esmtprc keywords that this plugin reads (``name [=] value`` statements).

    Runs right after the configuration file is read. A statement whose keyword no plugin declares is an error that
    names the file and line. Values are then found in ``identity.options`` or ``config.options`` (global scope).

    Example::

        @hookimpl
        def esmtp_config_keywords():
            return [KeywordSpec("aliases_file", scope="global", help="an /etc/aliases-style file")]
    """


@_hookspec
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """Offer SASL mechanisms for SMTP AUTH.

    Runs in the authenticate stage, only when the identity has a username or password and the server offers AUTH.
    The core picks the mechanism: those the server offers, the user allows (``auth_mechanisms``) and TLS permits,
    in the user's order or else by ``priority``. Two plugins offering the same name is a PluginError.
    """


@_hookspec(firstresult=True)
def esmtp_secret(
    identity: Identity, host: str, mechanism: SaslMechanism, rejected: str | None, trace: Trace
) -> str | None:
    """Supply the password (or, for a ``bearer`` mechanism, the OAuth2 token) when the identity has no ``password``.

    Runs in the authenticate stage, only once the server has offered AUTH and ``mechanism`` has been chosen, so a
    source that costs something (a command, a keyring, a token endpoint) runs only when a secret is needed. ``host``
    is the server's host name. ``rejected`` is None on the first call; after the server refused a bearer token it is
    that token, and a source may return a fresh one (the core retries once) or None. Raise an EsmtpError naming the
    cause (ConfigError, TemporaryFailure, AuthenticationError) when the source is set up but fails. Never write the
    secret to ``trace``. Built-in sources, in order: OAuth2 refresh (``tryfirst``), ``password_command``, the
    keyring, ``~/.netrc`` (``trylast``). Stops at first non-None result.
    """


@_hookspec(firstresult=True)
def esmtp_command(options: Options, config: Config | None) -> int | None:
    """Run a command-line mode that a plugin owns: ``--store-password`` (mode "store-password"),
    ``--oauth2-login`` (mode "oauth2-login"; ``options.device`` for ``--device``) and ``--dkim-keygen`` (mode
    "dkim-keygen", which needs no configuration file: ``config`` is None when there is none); ``options.identity``
    is the ``--identity NAME`` argument or None. Return the exit code, or None when the mode is not this plugin's.
    Stops at first non-None result.
    """


@_hookspec
def esmtp_delivery_agents() -> Iterable[DeliveryAgent]:
    """Offer delivery agents by name ("smtp" is the core's; the MDA plugin offers "mda").

    Runs in the deliver stage. A route that names an agent nobody offers is a configuration error.
    """


# --------------------------------------------------------------------------------------------------------------------
# Parse: the message has been read; the envelope is known.
# --------------------------------------------------------------------------------------------------------------------


@_hookspec
def esmtp_rewrite_envelope(envelope: Envelope, message: Message, config: Config) -> None:
    """Rewrite the envelope in place: sender and recipients (aliases, masquerading).

    Runs after parsing and before routing, once per message. ``message`` may be changed too, for rewrites that must
    match in the headers (a masqueraded From:). The return value is ignored. With ``sendmail -bs`` it also runs
    (then ``esmtp_route``) for each RCPT TO, on a throw-away envelope with that one recipient and an empty message.
    """


@_hookspec
def esmtp_fixup_headers(envelope: Envelope, message: Message, config: Config) -> None:
    """Add, remove or replace header fields of ``message`` (Date, Message-ID, From, Bcc removal, site rewriting).

    Runs after ``esmtp_rewrite_envelope`` and before routing, so every delivery agent (SMTP and the MDA) gets the same
    headers. Built-in fixups run in a fixed order; use ``tryfirst``/``trylast`` to run before or after them. Headers
    that no plugin touched are sent byte for byte. The return value is ignored.
    """


# --------------------------------------------------------------------------------------------------------------------
# Route: which agent gets which recipient.
# --------------------------------------------------------------------------------------------------------------------


@_hookspec(firstresult=True)
def esmtp_route(envelope: Envelope, config: Config) -> Route | None:
    """Decide which delivery agent receives each recipient.

    The built-in router (``trylast``) sends addresses with ``@`` to "smtp" and local names to "mda", honouring
    ``qualifydomain`` and ``force_mda``. Return a :class:`~esmtp.types.Route` to override it.
    Stops at first non-None result.
    """


# --------------------------------------------------------------------------------------------------------------------
# Deliver.
# --------------------------------------------------------------------------------------------------------------------


@_hookspec(firstresult=True)
def esmtp_queue_message(
    envelope: Envelope, message: Message, recipients: list[str], config: Config, error: EsmtpError | None
) -> str | None:
    """Store the message for later delivery to ``recipients`` instead of delivering it now.

    Called before delivery with ``error=None`` (a queue in "always" mode takes the message), and after a temporary
    failure with the error (a queue in "fallback" mode takes it). Return the queue id once the message is durably
    stored; return None to decline. Raise to report that storing failed (the caller then exits non-zero).
    Stops at first non-None result.
    """


@_hookspec(firstresult=True)
def esmtp_queue_command(options: Options, config: Config | None) -> int | None:
    """Run a queue command: ``mailq``/``-bp`` (mode "mailq"), ``-q``/``--flush`` ("flush"), ``--remove`` ("remove").

    ``config`` is None when no configuration file exists. Return the exit code. When no plugin answers,
    ``mailq`` prints "Mail queue is empty" and a flush does nothing, as esmtp 1.2 did.
    Stops at first non-None result.
    """


@_hookspec
def esmtp_before_deliver(envelope: Envelope, message: Message, route: Route, config: Config) -> None:
    """Observe a delivery about to start (after routing). Runs once per message; the return value is ignored."""


@_hookspec
def esmtp_sign_message(envelope: Envelope, message: Message, config: Config, trace: Trace) -> None:
    """Add the header fields that must be made at the moment of sending: a signature over the final message (DKIM).

    Runs after ``esmtp_before_deliver``, once per delivery try, over the message exactly as it will be sent: after
    every rewrite and fixup, right before the first leg of a direct send (also ``-bs`` and the warm relay), before
    each try of a queued message (a flush: the stored message is unsigned when it was queued before a try, so the
    signature's time stamp is the sending time), and by ``--pretend``, which shows the fields. A message queued after
    a failed try keeps the fields of that try: replace your own fields rather than adding another. Put new fields
    at the top (``message.headers.insert(0, ...)``), as trace fields are. ``trace.info`` is the ``-v`` line. Raise
    ConfigError (exit 78) for settings a send cannot use. The return value is ignored.
    """


@_hookspec
def esmtp_after_deliver(envelope: Envelope, results: list[DeliveryResult], config: Config) -> None:
    """Observe a finished delivery: one result per agent that succeeded. The return value is ignored."""


@_hookspec
def esmtp_deliver_error(envelope: Envelope, error: EsmtpError, config: Config) -> None:
    """Observe a failed delivery leg (``error`` says which server and reply). The return value is ignored."""


@_hookspec
def esmtp_check_config(config: Config) -> None:
    """Validate this plugin's settings in ``config`` as a run would use them, without contacting anything.

    Called by ``esmtp --check``. Raise ConfigError naming the file and line (``config.where(keyword)``) for a value
    that a run would refuse; keyword choices are already checked. The return value is ignored.
    """


@_hookspec(firstresult=True)
def esmtp_password_source(identity: Identity) -> PasswordSource | None:
    """Describe where ``identity``'s password would come from, if this plugin supplies it (``password_command``,
    keyring, netrc, OAuth2), for ``--pretend`` and ``--check``. Never fetch the secret here: the record's ``check``
    does that, and only for ``--check --secrets``. Return None for identities this plugin does not serve.
    Stops at first non-None result.
    """
