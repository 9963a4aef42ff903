"""``~/.netrc`` as the last password source (as msmtp does): the ``machine HOST`` entry with this ``login``.

Read with the standard ``netrc`` module, only when no other source answered. A netrc that others may read or write is
refused, like the configuration file. ``$NETRC`` names another file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from esmtp import hookimpl
from esmtp.config.files import check_user_file as check_private_file
from esmtp.errors import ConfigError
from esmtp.password_sources import PasswordSource

from .credentials import has_other_source

if TYPE_CHECKING:
    from esmtp.config.model import Identity
    from esmtp.trace import Trace


def netrc_path() -> str:
    return os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")


@hookimpl(trylast=True)
def esmtp_secret(identity: Identity, host: str, trace: Trace) -> str | None:
    """The password of the netrc entry for ``host`` whose login is the identity's username."""
    if identity.username is None or has_other_source(identity):
        return None
    path = netrc_path()
    # The configuration file's rule: a regular file, yours, that others may neither read nor write.
    if not check_private_file(path):
        return None
    import netrc

    try:
        entries = netrc.netrc(path)
    except (netrc.NetrcParseError, OSError) as error:
        # The parse error names the file and line; its message never quotes a password.
        line = getattr(error, "lineno", None)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {getattr(error, 'msg', error)}") from None
    entry = entries.hosts.get(host)
    if entry is None or entry[0] != identity.username or not entry[2]:
        return None
    trace.info(f"password for {identity.username} from {path} (machine {host})")
    return entry[2]


@hookimpl(trylast=True)
def esmtp_password_source(identity: Identity) -> PasswordSource | None:
    """``--pretend``/``--check``: the netrc entry that would supply the password, if there is one (reading the local
    file costs nothing and prompts for nothing; the password is not shown)."""
    from esmtp.diagnostics.describe import server
    from esmtp.trace import Trace

    host = server(identity)[0]
    if esmtp_secret(identity, host, Trace()) is None:
        return None
    return PasswordSource("netrc", f"{netrc_path()} (machine {host}, login {identity.username})")
