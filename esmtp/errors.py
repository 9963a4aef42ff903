"""One error hierarchy for the whole program; sysexits codes are attached here and read in one place (the CLI)."""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` import: every run, `esmtp --version` included, imports this module
if TYPE_CHECKING:
    from esmtp.types import DeliveryResult

# sysexits.h values, spelled out so that importing this module costs nothing (os.EX_* is POSIX-only anyway).
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_OSFILE = 72
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78


class EsmtpError(Exception):
    """Base class. ``exit_code`` is the sysexits code the command exits with when this error ends a run.

    ``temporary`` says whether trying again later may succeed: the queue keeps such a message, ``-bs`` and the
    listener answer 4xx, and the exit code is 75 (EX_TEMPFAIL) unless the error names another. Code that must tell
    the two apart reads ``temporary``, never the exit code or the reply's first digit. (``exit_code=75`` alone still
    makes an error temporary, for plugins written before the attribute existed.)
    """

    exit_code = EX_SOFTWARE
    temporary = False
    #: Set by the SMTP session on an error of a transaction: whether any of the message's data had gone out (the
    #: server may then have the message: it must not go to another server). False for every other error.
    data_started = False

    def __init__(self, message: str, *, exit_code: int | None = None, temporary: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if temporary is None and exit_code == EX_TEMPFAIL:
            temporary = True
        if temporary is not None:
            self.temporary = temporary
            if exit_code is None:
                exit_code = EX_TEMPFAIL if temporary else type(self).exit_code
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(EsmtpError):
    """A bad command line: unknown flag, missing argument, bad value."""

    exit_code = EX_USAGE


class DataError(EsmtpError):
    """The message or an address in it cannot be used (``-t`` without recipients, CR/LF in an address)."""

    exit_code = EX_DATAERR


class ConfigError(EsmtpError):
    """A configuration problem; the message names the file and, where there is one, the line."""

    exit_code = EX_CONFIG


class ConfigNotFound(ConfigError):
    """No configuration file exists at all (``mailq`` and queue commands can still run)."""


class PluginError(EsmtpError):
    """A plugin misbehaved or two plugins claim the same name."""

    exit_code = EX_SOFTWARE


class DeliveryError(EsmtpError):
    """Delivery failed. ``reply`` holds the server's code and text when a server answered."""

    def __init__(
        self, message: str, *, exit_code: int | None = None, temporary: bool | None = None, code: int | None = None,
        reply: str | None = None,
    ) -> None:
        super().__init__(message, exit_code=exit_code, temporary=temporary)
        self.code = code
        self.reply = reply


class TemporaryFailure(DeliveryError):
    """4xx replies, refused connections, time-outs: the caller (or the queue) should try again later."""

    exit_code = EX_TEMPFAIL
    temporary = True


class PermanentFailure(DeliveryError):
    """5xx replies and other failures that retrying will not fix."""

    exit_code = EX_UNAVAILABLE


class AuthenticationError(DeliveryError):
    """The server refused our credentials (5xx), or no acceptable mechanism exists."""

    exit_code = EX_NOPERM


class RecipientsRejected(DeliveryError):
    """Some RCPT TO commands were refused; no data was sent to anybody (all or nothing, as esmtp 1.2).

    ``rejected`` maps each refused recipient to the server's reply. The error is temporary (75) when every refusal
    was (4xx), else permanent (67, EX_NOUSER).
    """

    exit_code = EX_NOUSER

    def __init__(self, message: str, *, rejected: dict[str, str]) -> None:
        super().__init__(message, temporary=bool(rejected) and all(map(_temporary_reply, rejected.values())))
        self.rejected = rejected

    def refused_for_now(self, recipient: str) -> bool:
        """Whether the server refused ``recipient`` temporarily (a 4xx reply)."""
        return _temporary_reply(self.rejected[recipient])


def _temporary_reply(reply: str) -> bool:
    """A 4xx SMTP reply ("451 4.7.1 try later")."""
    return reply[:1] == "4"


class LocalDeliveryError(DeliveryError):
    """The MDA could not be run or reported failure."""

    exit_code = EX_OSERR


class NoDeliveryAgent(LocalDeliveryError):
    """A leg has no agent to deliver it: local recipients while no MDA is configured, or an agent name that no
    installed plugin provides (EX_OSFILE, as esmtp 1.2 without an MDA)."""

    exit_code = EX_OSFILE

    def __init__(self, agent: str, recipients: list[str]) -> None:
        if agent == "mda":
            message = (f"Local delivery not possible without a MDA: {', '.join(recipients)} (no '@'); set 'mda' in "
                       "the configuration, or 'qualifydomain' to send local names by SMTP")
        else:
            message = f"no delivery agent named '{agent}' is installed"
        super().__init__(message)
        self.agent = agent


class DeliveryFailed(EsmtpError):
    """One or more legs failed. The exit code is the most serious one; the text reports every leg."""

    def __init__(self, errors: list[EsmtpError], results: list[DeliveryResult]) -> None:
        lines = [str(error) for error in errors]
        lines += [f"delivered by {r.agent} to {', '.join(r.recipients)}: {r.detail}".rstrip(": ") for r in results]
        permanent = [e.exit_code for e in errors if not e.temporary]
        super().__init__("\n".join(lines), exit_code=permanent[0] if permanent else EX_TEMPFAIL,
                         temporary=not permanent)
        self.errors = errors
        self.results = results
