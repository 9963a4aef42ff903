"""The SMTP AUTH driver (RFC 4954): chooses a mechanism among the plugins' offers and runs its exchange.

Mechanisms are plugins (``esmtp_sasl_mechanisms``); this module is the one place that talks to the server for them.
Nothing here ever logs a credential: the transcript shows ``AUTH <MECH> ****`` and masked answers.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from esmtp.config.model import Identity
from esmtp.errors import AuthenticationError, EsmtpError, TemporaryFailure
from esmtp.types import Credentials, SaslMechanism

#: Sends one command line (without CRLF) and returns (code, text); ``secret`` masks it in transcripts.
Command = Callable[[bytes, bool], Awaitable[tuple[int, str]]]


def choose_mechanisms(
    identity: Identity, installed: dict[str, SaslMechanism], offered: list[str], *, encrypted: bool, server: str
) -> list[SaslMechanism]:
    """The usable mechanisms, best first: offered by the server and by a plugin, allowed and safe on this connection.

    The order is ``auth_mechanisms`` when set (a name no plugin offers is a ConfigError), else by priority, strongest
    first; without ``auth_mechanisms``, bearer (OAuth2) mechanisms are the candidates exactly when the identity has
    OAuth2 settings. Mechanisms marked ``plaintext`` need TLS unless ``auth_plaintext enabled``. Raises
    AuthenticationError saying why none is usable.
    """
    candidates = allowed_mechanisms(identity, installed)
    offered_names = list(dict.fromkeys(name.upper() for name in offered))  # the server's order, for messages
    offered_set = set(offered_names)
    if not offered_set:
        hint = "" if encrypted else " (many servers offer AUTH only after STARTTLS: try 'starttls required')"
        raise AuthenticationError(
            f"{server} does not offer authentication (AUTH), but a username or password is set{hint}"
        )
    common = [mech for mech in candidates if mech.name in offered_set]
    if not common:
        raise AuthenticationError(
            f"{server} offers AUTH {' '.join(offered_names)}, none of which is allowed and installed "
            f"(allowed: {' '.join(mech.name for mech in candidates) or 'none'})"
        )
    plaintext_ok = encrypted or identity.options.get("auth_plaintext") == "enabled"
    usable = [mech for mech in common if plaintext_ok or not mech.plaintext]
    if not usable:
        secret_word = "token" if common[0].bearer else "password"
        raise AuthenticationError(
            f"refusing to send the {secret_word} in clear to {server}: the connection is not encrypted, and "
            f"{' and '.join(mech.name for mech in common)} would reveal it (the server offers AUTH "
            f"{' '.join(offered_names)}). Use 'starttls required' or 'smtps enabled', or set "
            "'auth_plaintext enabled' in the configuration to allow it"
        )
    return usable


def allowed_mechanisms(identity: Identity, installed: dict[str, SaslMechanism]) -> list[SaslMechanism]:
    """The mechanisms the identity allows, in the order they are tried: ``auth_mechanisms`` when set (a name no plugin
    offers is a ConfigError), else by priority, strongest first, the bearer (OAuth2) mechanisms exactly when the
    identity has OAuth2 settings."""
    wanted = identity.options.get("auth_mechanisms")
    if not wanted:
        oauth2 = uses_oauth2(identity)
        usable = (mech for mech in installed.values() if mech.bearer == oauth2)
        return sorted(usable, key=lambda mech: (-mech.priority, mech.name))
    names = [name.upper() for name in wanted.replace(",", " ").split()]
    missing = [name for name in names if name not in installed]
    if missing:
        from esmtp.errors import ConfigError

        where = f"{identity.source}:{identity.lines.get('auth_mechanisms', identity.lineno)}: " if identity.source \
            else ""
        raise ConfigError(
            f"{where}auth_mechanisms names {', '.join(missing)}, which no installed plugin offers "
            f"(installed: {', '.join(sorted(installed)) or 'none'})"
        )
    return [installed[name] for name in names]


def uses_oauth2(identity: Identity) -> bool:
    """True when the identity has OAuth2 settings (``oauth2_*`` keywords): its secret is a bearer token."""
    return any(key.startswith("oauth2_") for key in identity.options)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data) if data else b"="


#: More 334 rounds than any mechanism needs (NTLM and SCRAM take two): a server that goes on is broken.
MAX_ROUNDS = 10


async def authenticate(
    command: Command, mechanism: SaslMechanism, credentials: Credentials, *, server: str
) -> None:
    """Run one AUTH exchange. Raises AuthenticationError (5xx) or TemporaryFailure (4xx) with the server's reply.

    There is no fallback to another mechanism: a refusal ends the session, so a wrong password is never followed by
    a weaker mechanism or by an unauthenticated MAIL FROM.
    """
    name = mechanism.name.encode("ascii")
    try:
        client = mechanism.factory(credentials)
        initial = client.step(None)
    except EsmtpError:
        raise
    except Exception as error:
        raise AuthenticationError(f"{mechanism.name} could not start: {error}") from error
    line = b"AUTH " + name + (b" " + _b64(initial) if initial is not None else b"")
    code, text = await command(line, initial is not None)
    rounds = 0
    while code == 334:
        rounds += 1
        try:
            if rounds > MAX_ROUNDS:
                raise ValueError(f"the server sent more than {MAX_ROUNDS} challenges")
            encoded = text.strip()
            challenge = base64.b64decode(encoded.encode("ascii"), validate=True) if encoded else b""
            answer = client.step(challenge)
        except Exception as error:
            await command(b"*", False)  # RFC 4954: cancel the exchange
            raise AuthenticationError(f"{mechanism.name} exchange with {server} failed: {error}") from error
        # Unlike the initial response, an empty answer is an empty line (RFC 4954 section 4).
        code, text = await command(base64.b64encode(answer or b""), True)
    if code == 235:
        return
    reply = f"{code} {text}".strip()
    # A mechanism may have decoded an error the server sent (RFC 7628 3.2.2: status and scope of a bearer failure).
    detail = getattr(client, "failure", None)
    if detail:
        reply = f"{reply} ({detail})"
    if 400 <= code < 500:
        raise TemporaryFailure(f"{server} refused AUTH {mechanism.name} (try again later): {reply}", code=code,
                               reply=reply)
    raise AuthenticationError(
        f"{server} refused AUTH {mechanism.name} for user {credentials.username!r}: {reply}", code=code, reply=reply
    )
