"""The raw-client baselines: the plainest correct use of smtplib or aiosmtplib, run as a new process like a sendmail.

``rawclient.py LIB --port P --user U --password W -f SENDER RCPT... < message`` sends one message read from stdin;
``rawclient.py LIB --port P ... --dir DIR -f SENDER RCPT...`` sends every file in DIR (sorted) over one connection with
one AUTH, which is the best case for a queue flush. LIB is ``smtplib`` or ``aiosmtplib``. Each message is read whole
into memory, as both libraries' ``sendmail()`` require: that is what the 100 MB figure of these clients shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _messages(args: argparse.Namespace) -> list[Path] | None:
    return sorted(p for p in Path(args.dir).iterdir() if p.is_file()) if args.dir else None


def send_smtplib(args: argparse.Namespace) -> None:
    import smtplib

    files = _messages(args)
    with smtplib.SMTP("127.0.0.1", args.port) as smtp:
        smtp.login(args.user, args.password)
        if files is None:
            smtp.sendmail(args.sender, args.rcpt, sys.stdin.buffer.read())
        else:
            for path in files:
                smtp.sendmail(args.sender, args.rcpt, path.read_bytes())


def send_aiosmtplib(args: argparse.Namespace) -> None:
    import asyncio

    import aiosmtplib

    async def run() -> None:
        files = _messages(args)
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=args.port, start_tls=False, use_tls=False)
        await smtp.connect()
        await smtp.login(args.user, args.password)
        if files is None:
            await smtp.sendmail(args.sender, args.rcpt, sys.stdin.buffer.read())
        else:
            for path in files:
                await smtp.sendmail(args.sender, args.rcpt, path.read_bytes())
        await smtp.quit()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lib", choices=["smtplib", "aiosmtplib"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--dir", help="send every file in this directory over one connection")
    parser.add_argument("-f", dest="sender", required=True)
    parser.add_argument("rcpt", nargs="+")
    args = parser.parse_args(argv)
    (send_smtplib if args.lib == "smtplib" else send_aiosmtplib)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
