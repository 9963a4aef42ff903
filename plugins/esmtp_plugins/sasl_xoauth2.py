"""SASL XOAUTH2 (Google's and Microsoft's bearer-token mechanism): ``user=U ^A auth=Bearer TOKEN ^A ^A``.

The secret is an OAuth2 access token (``bearer``): the core chooses XOAUTH2 only when ``auth_mechanisms`` names it or
the identity has OAuth2 settings. The token crosses the wire as is, so TLS is required as for PLAIN. On failure the
server sends a 334 with a base64 JSON error; the client answers with an empty line and the server ends with 5xx.
"""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.types import SaslMechanism

from .bearer import BearerClient, token_bytes, user_bytes


class XOAuth2Client(BearerClient):
    """The token as the initial response; an empty line answers an error challenge."""

    ERROR_ANSWER = b""

    def initial_response(self) -> bytes:
        user, token = self.credentials.username, self.credentials.password
        return b"user=" + user_bytes(user) + b"\x01auth=Bearer " + token_bytes(token) + b"\x01\x01"


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """XOAUTH2 ranks just below OAUTHBEARER, the standard form of the same exchange."""
    return [SaslMechanism("XOAUTH2", priority=55, factory=XOAuth2Client, plaintext=True, bearer=True)]
