"""esmtp/smtp/pipelining.py against the installed aiosmtplib: the private names it uses still exist, and it keeps the
defences of the ``data_received`` it replaces. A failure here after an aiosmtplib upgrade means the extension must
be reviewed against the new release before the dependency range in pyproject.toml admits it."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol

from esmtp.smtp.pipelining import MAX_REPLY_BYTES, PRIVATE_API, PipeliningProtocol, adopt

ROOT = Path(__file__).resolve().parent.parent


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_installed_aiosmtplib_is_in_the_declared_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in dependencies if d.startswith("aiosmtplib"))
    lowest, cap = re.fullmatch(r"aiosmtplib>=([\d.]+),<([\d.]+)", spec).groups()  # type: ignore[union-attr]
    installed = _numbers(version("aiosmtplib"))
    assert _numbers(lowest) <= installed < _numbers(cap), f"aiosmtplib {installed} is outside {spec}"


def test_private_names_still_exist() -> None:
    async def build() -> SMTPProtocol:
        return SMTPProtocol(loop=asyncio.get_running_loop())

    protocol = asyncio.run(build())
    missing = [name for name in PRIVATE_API if not hasattr(protocol, name)]
    assert not missing, f"aiosmtplib's SMTPProtocol lost {missing}: review esmtp/smtp/pipelining.py for this release"
    assert isinstance(protocol._buffer, bytearray)
    # The methods overridden, with the signatures the overrides assume.
    assert list(inspect.signature(SMTPProtocol.read_response).parameters) == ["self", "timeout"]
    assert list(inspect.signature(SMTPProtocol.start_tls).parameters)[:4] == [
        "self", "tls_context", "server_hostname", "timeout"]
    assert list(inspect.signature(SMTPProtocol.data_received).parameters) == ["self", "data"]


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def write(self, data: bytes) -> None:
        pass


def _connected() -> PipeliningProtocol:
    protocol = adopt(SMTPProtocol(loop=asyncio.get_running_loop()))
    protocol.connection_made(_Transport())
    return protocol


def test_replies_arriving_together_are_read_in_turn() -> None:
    async def scenario() -> list[int]:
        protocol = _connected()
        protocol.data_received(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go")
        protocol.data_received(b" ahead\r\n")
        return [(await protocol.read_response(timeout=1)).code for _ in range(3)]

    assert asyncio.run(scenario()) == [250, 250, 354]


def test_a_reply_without_end_is_refused_at_the_bound() -> None:
    async def scenario() -> None:
        protocol = _connected()
        for _ in range(MAX_REPLY_BYTES // 4096 + 1):
            protocol.data_received(b"250-" + b"x" * 4092)  # no line end at all
        assert len(protocol._buffer) <= MAX_REPLY_BYTES
        with pytest.raises(SMTPResponseException, match="Response too long"):
            await protocol.read_response(timeout=1)

    asyncio.run(scenario())


def test_endless_continuation_lines_are_refused_at_the_bound() -> None:
    async def scenario() -> None:
        protocol = _connected()
        for _ in range(MAX_REPLY_BYTES // 100 + 1):
            protocol.data_received(b"250-" + b"y" * 94 + b"\r\n")
        with pytest.raises(SMTPResponseException, match="Response too long"):
            await protocol.read_response(timeout=1)

    asyncio.run(scenario())


def test_malformed_reply_is_an_smtp_error_not_an_attribute_error() -> None:
    async def scenario() -> None:
        protocol = _connected()
        protocol.data_received(b"hello\r\n")
        with pytest.raises(SMTPResponseException, match="Malformed SMTP response line"):
            await protocol.read_response(timeout=1)

    asyncio.run(scenario())


def test_cleartext_after_starttls_is_forgotten() -> None:
    async def scenario() -> None:
        protocol = _connected()
        protocol.data_received(b"220 go ahead\r\n250 injected\r\n")
        assert (await protocol.read_response(timeout=1)).code == 220
        protocol.forget_cleartext()
        with pytest.raises(Exception, match="Timed out"):
            await protocol.read_response(timeout=0.05)

    asyncio.run(scenario())
    assert "forget_cleartext" in inspect.getsource(PipeliningProtocol.start_tls)
