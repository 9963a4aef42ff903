"""The ``esmtp``/``sendmail``/``mailq``/``newaliases``/``deliver`` command. Maps every error to its exit code here."""

from __future__ import annotations

import contextlib
import os
import sys

from esmtp.errors import EX_SOFTWARE, EX_TEMPFAIL, ConfigError, ConfigNotFound, EsmtpError

TYPE_CHECKING = False  # no `typing` import: start-up is the hot path
if TYPE_CHECKING:
    from collections.abc import Callable

    from esmtp.config.model import Config
    from esmtp.options import Options
    from esmtp.plugins import Hooks
    from esmtp.smtp.kept import KeptSessions

    Loader = Callable[..., tuple[Config | None, Hooks]]

USAGE = """\
usage: {prog} [options] [--] recipient...       send the message on standard input
       {prog} -bp | mailq [--json]              list the queue
       {prog} -q | -qIID | --flush [ID...]      deliver the queue now (all of it, or these entries)
       {prog} --remove ID...                    delete queue entries
       {prog} -bs                               an SMTP dialogue on stdin/stdout (Symfony Mailer, PHP frameworks)
       {prog} --listen [ADDRESS:]PORT...        an SMTP listener for applications and containers (foreground)
       {prog} --hash-password < PASSWORD        print a password hash for listen_auth_file
       {prog} --pretend [options] [recipient...]  show what a send would do; send nothing
       {prog} --serverinfo [--login] [--identity NAME]  show what the server offers; send nothing
       {prog} --check [--secrets] [-C FILE] [ADDRESS...]
                                          validate the configuration (and which identity each ADDRESS gets)
       {prog} --store-password [--identity ADDR]         store a password in the keyring
       {prog} --oauth2-login [--device] [--identity ADDR]  log in to an OAuth2 provider
       {prog} --dkim-keygen --selector S --domain D [--algorithm A] [--output FILE]  make a DKIM key

  -f ADDR   envelope sender (-r is the same)      -F NAME  full name for a generated From:
  -t        read recipients from To/Cc/Bcc        -i, -oi  accepted (input is always read to end of file)
  -N DSN    never | success,failure,delay          -R RET   full | hdrs
  -V ENVID  DSN envelope id                        -B TYPE  7BIT | 8BITMIME
  -C FILE   configuration file (default ~/.esmtprc, then /etc/esmtprc)
  -a NAME, --identity NAME   use this identity block, whatever the sender
  -v        verbose: show the SMTP dialogue        -X FILE  append a time-stamped protocol transcript to FILE
  --import-msmtprc [FILE]   print an esmtprc converted from an msmtp configuration
  --system-setup            (root) prepare the system service: its user, its directories, the checks
  --system-daemon           (root) run the system service in the foreground
  --version, --help
Exit codes: 0 delivered or queued, 75 temporary failure (try again), 64-78 other errors (see esmtp(1)).
Every flag: man esmtp (esmtp(1)). Every configuration keyword: man esmtprc (esmtprc(5)).
"""


def _prog(argv: list[str]) -> str:
    return os.path.basename(argv[0]) if argv and argv[0] else "esmtp"


def _load(options: Options, *, need_config: bool, tolerant: bool = False) -> tuple[Config | None, Hooks]:
    """The configuration and the plugins. ``tolerant`` (mailq): a broken file is a warning and the run goes on
    without it, so that the queue can still be listed."""
    from esmtp.config.files import load_config
    from esmtp.plugins import load_hooks, resolve_config

    config: Config | None
    try:
        config = load_config(options.config_file, system_path=system_config())
    except ConfigNotFound:
        if need_config:
            raise
        config = None
    except ConfigError as error:
        if not tolerant:
            raise
        ignore_broken(error)
        config = None
    hooks = load_hooks(config)
    if config is not None:
        try:
            try:
                resolve_config(config, hooks)
            except ConfigError as error:
                if not config.origins:
                    raise
                from esmtp.config.environment import name_error

                raise name_error(config, error) from None
        except ConfigError as error:
            if not tolerant:
                raise
            ignore_broken(error)
            return None, load_hooks(None)
    return config, hooks


def system_config() -> str:
    """``/etc/esmtprc``, or where ``ESMTP_SYSTEM_CONFIG`` puts it (the system service's configuration)."""
    return os.environ.get("ESMTP_SYSTEM_CONFIG") or "/etc/esmtprc"


def ignore_broken(error: ConfigError) -> None:
    """What a tolerant load (mailq) says about a configuration it goes on without (here and in the warm relay)."""
    from esmtp.progname import warn

    warn(f"warning: {error}")
    warn("warning: listing the queue without the configuration (a queue_dir it sets is not known: the default "
         "queue directory, or ESMTP_QUEUE_DIR, is listed)")


def _send(options: Options, load: Loader, sessions: KeptSessions | None) -> int:
    from esmtp.envelope import build_envelope
    from esmtp.message import read_message
    from esmtp.pipeline import submit
    from esmtp.submitter import apply, current
    from esmtp.trace import Trace
    from esmtp.types import RunContext

    config, hooks = load(options, need_config=True)
    assert config is not None
    if options.pretend:
        from esmtp.diagnostics.pretend import plan

        return plan(options, config, hooks)
    trace = Trace(verbose=options.verbose, transcript_path=options.transcript)
    note = getattr(sys.modules.get("esmtp.front"), "RELAY_NOTE", "")
    if note:
        trace.info(note)  # why this run did not go through the warm relay, when the front end knows
    try:
        stdin = sys.stdin.buffer if sys.stdin is not None else open(os.devnull, "rb")  # noqa: SIM115
        with read_message(stdin) as message:
            submitter = current.get()
            if submitter is not None:
                apply(submitter, options, message, config)
            envelope = build_envelope(options, message, config)
            results = submit(envelope, message, RunContext(config, hooks, trace, sessions))
            for result in results:
                trace.info(f"{result.agent}: {', '.join(result.recipients)}: {result.detail}")
    finally:
        trace.close()
    return 0


def run(argv: list[str], *, load: Loader = _load, sessions: KeptSessions | None = None, cwd: str | None = None,
        vet: Callable[[Options], None] | None = None) -> int:
    """Run the command for ``argv``; return the exit code.

    The warm relay (:mod:`esmtp.relay.daemon`) passes its cached configuration ``load``-er, its kept SMTP
    ``sessions`` and the caller's working directory ``cwd`` (relative file names on the command line are the
    caller's). The system service (:mod:`esmtp.relay.system`) passes its own and ``vet``, which refuses (raises)
    what a local user may not ask of it.
    """
    from esmtp.options import parse_args

    options = parse_args(argv)
    if vet is not None:
        vet(options)
    if cwd is not None:
        options.config_file = options.config_file and os.path.join(cwd, options.config_file)
        options.transcript = options.transcript and os.path.join(cwd, options.transcript)
    if options.mode == "version":
        from esmtp import __version__

        print(f"esmtp {__version__}")
        return 0
    if options.mode == "help":
        from esmtp.progname import name

        sys.stdout.write(USAGE.format(prog=name()))
        return 0
    if options.mode == "import-msmtprc":
        from esmtp.config.import_msmtprc import import_command

        return import_command(options.msmtprc)
    if options.mode == "system-daemon":
        from esmtp.relay.system import main as system_daemon

        return system_daemon()
    if options.mode == "system-setup":
        from esmtp.relay.setup import setup

        return setup()
    if options.mode == "newaliases":
        return 0  # no alias database to rebuild (the aliases plugin reads its file directly)
    if options.mode == "smtp":
        from esmtp.server.relay import serve

        return serve(options, lambda: _load(options, need_config=True))
    if options.mode == "listen":
        from esmtp.server.listener import listen

        return listen(options, lambda: _load(options, need_config=True))
    if options.mode == "hash-password":
        from esmtp.server.clients import hash_command

        return hash_command()
    if options.mode in ("mailq", "flush", "remove"):
        # A broken file must not stop a listing: the loader (ours, or the warm relay's) warns and goes on without it.
        config, hooks = load(options, need_config=False, tolerant=options.mode == "mailq")
        code = hooks.queue_command(options, config)
        if code is None:
            if options.mode == "mailq":
                print("Mail queue is empty")
            elif options.mode == "remove":
                raise ConfigError("no queue plugin is installed or enabled; nothing to remove")
            return 0
        return code
    if options.mode == "check" and options.config_file is None:
        from esmtp.diagnostics.check import search_order

        if search_order() and not os.access(system_config(), os.R_OK):
            return 0  # the service checks its configuration itself; this user cannot read it
    if options.mode in ("serverinfo", "check"):
        config, hooks = load(options, need_config=True)
        assert config is not None
        if options.mode == "check":
            from esmtp.diagnostics.check import check

            return check(options, config, hooks)
        from esmtp.diagnostics.serverinfo import serverinfo

        return serverinfo(options, config, hooks)
    if options.mode in ("store-password", "oauth2-login", "dkim-keygen"):
        config, hooks = load(options, need_config=options.mode != "dkim-keygen")  # a key is made before any use
        code = hooks.command(options, config)
        if code is None:
            raise ConfigError(f"no installed or enabled plugin handles --{options.mode}")
        return code
    return _send(options, load, sessions)


def _say(text: str) -> None:
    """Report on stderr (control characters escaped: an error may quote a server); a reader that has gone away must
    not change the exit code."""
    from esmtp.progname import printable

    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(printable(text))


def main(argv: list[str] | None = None, *, load: Loader = _load, sessions: KeptSessions | None = None,
         cwd: str | None = None, vet: Callable[[Options], None] | None = None) -> int:
    """Entry point of a run (the keyword arguments are the warm relay's: see :func:`run`)."""
    from esmtp.progname import set_name

    argv = list(sys.argv if argv is None else argv)
    prog = _prog(argv)
    set_name(prog)
    try:
        code = run(argv, load=load, sessions=sessions, cwd=cwd, vet=vet)
    except EsmtpError as error:
        _say(f"{prog}: {error}\n")
        code = error.exit_code
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted; the message was not sent\n")
        code = EX_TEMPFAIL
    except Exception as error:  # noqa: BLE001  (a bug: reported without a traceback, which could hold a secret)
        _say(f"{prog}: internal error: {type(error).__name__}: {error}\n")
        if os.environ.get("ESMTP_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        code = EX_SOFTWARE
    if sys.stdout is not None:  # (the process's own streams are settled by its entry point: esmtp.front)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
