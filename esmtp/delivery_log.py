"""One log line per delivery attempt: ``logfile PATH`` (text or JSON lines) and ``syslog enabled|FACILITY``.

The fields are msmtp's (``host tls auth user from recipients mailsize smtpstatus smtpmsg errormsg exitcode``) plus
``identity``, ``queue_id`` and ``duration``; fields that do not apply are left out. See docs/configuration.md.

Fed by a direct call from the core (:func:`esmtp.pipeline.deliver_route`, one call per leg) and from the queue's
flush, rather than through ``esmtp_after_deliver``/``esmtp_deliver_error``: those hooks see neither the leg's duration
nor the queue id a failed leg was stored under. The settings are read per identity, falling back to the global
section. Each line is one ``write()`` to a file opened ``O_APPEND`` (created 0600), so concurrent senders never
interleave. A log that cannot be written is a warning on stderr: mail is never held back for it. ``syslog`` is
imported only when configured. Nothing here ever sees a password.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from esmtp.config.model import FACILITIES as FACILITIES
from esmtp.config.model import SYSLOG_CHOICES as SYSLOG_CHOICES
from esmtp.errors import EX_OK, DeliveryError, EsmtpError, RecipientsRejected

if TYPE_CHECKING:
    from esmtp.config.model import Config, Identity
    from esmtp.types import DeliveryResult, Envelope

#: The keywords an identity takes from the global section when it does not set them itself.
INHERITED = ("logfile", "logfile_format", "syslog")
#: sysexits names for ``exitcode=``.
_EXIT_NAMES = {
    0: "EX_OK", 64: "EX_USAGE", 65: "EX_DATAERR", 66: "EX_NOINPUT", 67: "EX_NOUSER", 68: "EX_NOHOST",
    69: "EX_UNAVAILABLE", 70: "EX_SOFTWARE", 71: "EX_OSERR", 72: "EX_OSFILE", 73: "EX_CANTCREAT", 74: "EX_IOERR",
    75: "EX_TEMPFAIL", 76: "EX_PROTOCOL", 77: "EX_NOPERM", 78: "EX_CONFIG",
}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+-_.,:/=<>()[]!#$&*?^{}|~")


@dataclass(frozen=True, slots=True)
class LogSettings:
    path: str | None = None
    format: str = "text"
    #: The syslog facility name ("mail", "local3"...), None when syslog is off.
    facility: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.path) or self.facility is not None


def settings_for(identity: Identity, config: Config) -> LogSettings:
    """The identity's ``logfile``/``logfile_format``/``syslog``, each falling back to the global section's."""
    glob = config.identities[0].options if config.identities else {}

    def look(key: str) -> str | None:  # (one of INHERITED)
        return identity.options.get(key) or glob.get(key)

    path = look("logfile")
    syslog = look("syslog")
    facility = None
    if syslog and syslog != "disabled":
        facility = "mail" if syslog == "enabled" else syslog.lower().removeprefix("log_")
    return LogSettings(os.path.expanduser(path) if path else None, look("logfile_format") or "text", facility)


def quote(value: str) -> str:
    """A field value: bare when it is one plain word, else in single quotes as a POSIX shell reads it."""
    value = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    if value and _SAFE.issuperset(value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _reply(text: str) -> tuple[int | None, str]:
    code = text[:3]
    return (int(code), text) if code.isdigit() and text[3:4] in ("", " ", "-") else (None, text)


def _server_reply(agent: str, result: DeliveryResult | None, error: EsmtpError | None) -> tuple[int | None, str | None]:
    """``smtpstatus`` and ``smtpmsg``: the server's last word on this attempt, if a server said one."""
    if result is not None:
        return _reply(result.detail) if agent == "smtp" else (None, None)
    if isinstance(error, RecipientsRejected) and error.rejected:
        rejected = error.rejected
        return _reply(next(iter(rejected.values())))[0], "; ".join(f"{r}: {text}" for r, text in rejected.items())
    if isinstance(error, DeliveryError) and error.reply:
        return _reply(error.reply)
    return None, None


def fields(envelope: Envelope, mailsize: int, agent: str, recipients: list[str], duration: float, *,
           result: DeliveryResult | None = None, error: EsmtpError | None = None, queue_id: str | None = None,
           bounce_id: str | None = None) -> dict[str, object]:
    """The fields of one attempt, in msmtp's order, then ours. None values are left out of the line."""
    identity = envelope.identity
    status, message = _server_reply(agent, result, error)
    authenticated = identity.username is not None or identity.password is not None
    if agent == "smtp":
        from esmtp.diagnostics.describe import server, uses_tls

        host: str = server(identity)[0]
        if result is not None and result.server:  # with several servers, the one that took it
            host = result.server.split(" ")[0].rpartition(":")[0].strip("[]") or host
        tls = "on" if uses_tls(identity) else "off"
    else:
        host, tls, authenticated = agent, "off", False
    return {
        "host": host, "tls": tls, "auth": "on" if authenticated else "off",
        "user": identity.username if authenticated else None,
        "from": envelope.sender or "<>", "recipients": ",".join(recipients), "mailsize": mailsize,
        "smtpstatus": status, "smtpmsg": message,
        "errormsg": " ".join(str(error).split()) if error is not None else None,
        "exitcode": _EXIT_NAMES.get(error.exit_code if error is not None else EX_OK, "EX_SOFTWARE"),
        "identity": identity.address or "(global)", "queue_id": queue_id, "duration": round(duration, 3),
        "bounce_id": bounce_id, "client": envelope.client,
    }


def format_line(values: dict[str, object], fmt: str, *, stamp: bool = True) -> str:
    """One line, newline included: ``key=value`` words (text) or a JSON object."""
    present = {key: value for key, value in values.items() if value is not None}
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if fmt == "json":
        import json

        return json.dumps({"time": when, **present}, ensure_ascii=True) + "\n"
    words = " ".join(f"{key}={quote(str(value))}" for key, value in present.items())
    return f"{when} {words}\n" if stamp else words + "\n"


def _open_log(path: str) -> int:
    """The log, opened for appending (created 0600). In a directory that others may write to, a file planted there
    must not take our lines (recipients among them): a symbolic link is never followed (``O_NOFOLLOW``), a file
    owned by another user than us or root is refused, and so is anything but a regular file (``O_NONBLOCK``: a FIFO
    without a reader is refused at once instead of blocking the send)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "it is not a regular file")
        if info.st_uid not in (os.geteuid(), 0):
            raise OSError(0, f"it is owned by uid {info.st_uid}, not by you or root")
    except OSError:
        os.close(fd)
        raise
    return fd


def write(settings: LogSettings, values: dict[str, object]) -> None:
    """Write one attempt to the configured targets; a failure is a warning, never an error."""
    from esmtp.progname import warn

    if settings.path:
        line = format_line(values, settings.format).encode("utf-8", "backslashreplace")
        try:
            fd = _open_log(settings.path)
            try:
                if os.write(fd, line) != len(line):  # one write: concurrent senders' lines never interleave
                    raise OSError(0, "short write (disk full?)")
            finally:
                os.close(fd)
        except OSError as error:
            reason = "it is a symbolic link, which is never followed" if error.errno == errno.ELOOP else (
                error.strerror or str(error))
            warn(f"warning: cannot write the log file {settings.path}: {reason} (mail is delivered anyway)")
    if settings.facility is not None:
        import syslog

        from esmtp.progname import name

        priority = syslog.LOG_INFO if values.get("exitcode") == "EX_OK" else syslog.LOG_ERR
        syslog.openlog(name(), syslog.LOG_PID, getattr(syslog, f"LOG_{settings.facility.upper()}"))
        syslog.syslog(priority, format_line(values, settings.format, stamp=False).rstrip("\n"))


def record(config: Config, envelope: Envelope, mailsize: int, agent: str, recipients: list[str], started: float, *,
           result: DeliveryResult | None = None, error: EsmtpError | None = None, queue_id: str | None = None,
           bounce_id: str | None = None) -> None:
    """Log one delivery attempt (``result`` or ``error``) that began at ``started`` (``time.monotonic()``), when
    logging is configured for the envelope's identity. Never raises.

    ``agent`` "queue" with ``bounce_id`` is the queue giving up on an entry (``duration``: the time it was queued).
    """
    settings = settings_for(envelope.identity, config)
    if not settings.active:
        return
    try:
        duration = time.monotonic() - started
        write(settings, fields(envelope, mailsize, agent, recipients, duration, result=result, error=error,
                               queue_id=queue_id, bounce_id=bounce_id))
    except Exception as failure:  # noqa: BLE001  (the log must never cost a delivery: the mail is sent)
        from esmtp.progname import warn

        warn(f"warning: could not log the delivery attempt: {type(failure).__name__}: {failure}")
