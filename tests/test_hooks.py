"""Each hook, exercised through the real pipeline with inline plugins on a fresh plugin manager."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from support import SmtpServer

from esmtp import hookimpl, hookspecs
from esmtp.config.model import Config, Identity, Statement
from esmtp.errors import ConfigError, DeliveryFailed, PluginError, TemporaryFailure
from esmtp.message import Message, read_message
from esmtp.options import Options
from esmtp.pipeline import submit
from esmtp.plugins import Hooks, make_plugin_manager, resolve_config
from esmtp.trace import Trace
from esmtp.types import DeliveryAgent, DeliveryResult, Envelope, KeywordSpec, Route, RunContext, SaslMechanism

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ESMTP_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def config() -> Config:
    identity = Identity(address=None, hostname="127.0.0.1:9")
    return Config(path="test-esmtprc", identities=[identity], default=identity)


@pytest.fixture
def hooks(config: Config) -> Hooks:
    return Hooks(make_plugin_manager(config))


class Capture:
    """A delivery agent that keeps what it was given (the complete message, as an MDA would get it)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[list[str], bytes]] = []

    def agent(self) -> DeliveryAgent:
        outer = self

        class _Impl:
            def __init__(self, context: RunContext) -> None:
                pass

            def deliver(self, envelope: Envelope, message: Message, recipients: list[str]) -> DeliveryResult:
                outer.delivered.append((recipients, b"".join(message.chunks())))
                return DeliveryResult("capture", recipients, "kept")

        return DeliveryAgent("capture", _Impl)


class RouteAllToCapture:
    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    @hookimpl
    def esmtp_delivery_agents(self) -> list[DeliveryAgent]:
        return [self.capture.agent()]

    @hookimpl
    def esmtp_route(self, envelope: Envelope) -> Route:
        return Route({"capture": list(envelope.recipients)})


def make_envelope(config: Config, recipients: list[str] | None = None) -> Envelope:
    return Envelope(sender="a@example.org", recipients=recipients or ["b@example.net"], identity=config.default)


def send(hooks: Hooks, config: Config, raw: bytes = b"Subject: hi\n\nbody\n", **kw: Any) -> list[DeliveryResult]:
    with read_message(io.BytesIO(raw)) as message:
        return submit(make_envelope(config, **kw), message, RunContext(config, hooks, Trace()))


def test_every_hook_is_documented_and_tested() -> None:
    names = [name for name in dir(hookspecs) if name.startswith("esmtp_")]
    docs = (ROOT / "docs" / "architecture.md").read_text()
    tests = Path(__file__).read_text()
    for name in names:
        assert re.search(rf"`{name}\(", docs), f"{name} missing from docs/architecture.md"
        assert f"def test_hook_{name}" in tests, f"{name} has no test_hook_{name}"


def test_hook_esmtp_config_keywords(hooks: Hooks, config: Config) -> None:
    class Keywords:
        @hookimpl
        def esmtp_config_keywords(self) -> list[KeywordSpec]:
            return [KeywordSpec("site_tag", choices=("a", "b")), KeywordSpec("site_global", scope="global")]

    hooks.pm.register(Keywords())
    config.pending = [Statement("site_tag", "a", 3, config.default), Statement("site_global", "x", 4, config.default)]
    resolve_config(config, hooks)
    assert config.default.options["site_tag"] == "a"
    assert config.options["site_global"] == "x"
    config.pending = [Statement("site_tag", "zzz", 7, config.default)]
    with pytest.raises(ConfigError, match="test-esmtprc:7: 'site_tag' takes one of a, b"):
        resolve_config(config, hooks)
    config.pending = [Statement("no_such_keyword", "1", 9, config.default)]
    with pytest.raises(ConfigError, match="test-esmtprc:9: unknown keyword 'no_such_keyword'"):
        resolve_config(config, hooks)


def test_hook_esmtp_sasl_mechanisms(hooks: Hooks) -> None:
    class Toy:
        @hookimpl
        def esmtp_sasl_mechanisms(self) -> list[SaslMechanism]:
            return [SaslMechanism("x-toy", 5, factory=lambda credentials: None)]  # type: ignore[arg-type,return-value]

    hooks.pm.register(Toy(), name="toy")
    mechanisms = hooks.sasl_mechanisms()
    assert {"PLAIN", "X-TOY"} <= set(mechanisms)

    class Clash:
        @hookimpl
        def esmtp_sasl_mechanisms(self) -> list[SaslMechanism]:
            return [SaslMechanism("PLAIN", 1, factory=lambda credentials: None)]  # type: ignore[arg-type,return-value]

    hooks.pm.register(Clash())
    with pytest.raises(PluginError, match="two plugins offer the SASL mechanism 'PLAIN'"):
        hooks.sasl_mechanisms()


def test_hook_esmtp_delivery_agents(hooks: Hooks, config: Config) -> None:
    capture = Capture()
    hooks.pm.register(RouteAllToCapture(capture))
    results = send(hooks, config, recipients=["x@example.net", "local"])
    assert [r.agent for r in results] == ["capture"]
    [(recipients, data)] = capture.delivered
    assert recipients == ["x@example.net", "local"]
    assert data.endswith(b"\n\nbody\n") and b"\nDate: " in data


def test_hook_esmtp_rewrite_envelope(hooks: Hooks, config: Config) -> None:
    capture = Capture()

    class Rewrite:
        @hookimpl
        def esmtp_rewrite_envelope(self, envelope: Envelope) -> None:
            envelope.recipients = [r.replace("old.example", "new.example") for r in envelope.recipients]
            envelope.sender = "rewritten@example.org"

    hooks.pm.register(RouteAllToCapture(capture))
    hooks.pm.register(Rewrite())
    send(hooks, config, recipients=["u@old.example"])
    assert capture.delivered[0][0] == ["u@new.example"]


def test_hook_esmtp_fixup_headers(hooks: Hooks, config: Config) -> None:
    capture = Capture()

    class Site:
        @hookimpl(trylast=True)
        def esmtp_fixup_headers(self, message: Message) -> None:
            message.add("X-Site", f"seen {len(message.headers)} fields")
            message.replace("Subject", "[site] " + (message.get("subject") or ""))

    hooks.pm.register(RouteAllToCapture(capture))
    hooks.pm.register(Site())
    send(hooks, config, raw=b"Subject: hi\nBcc: hidden@x\n\nbody\n")
    data = capture.delivered[0][1]
    head = data.split(b"\n\n")[0].split(b"\n")
    names = [line.split(b":")[0] for line in head]
    # Built-ins first, in their fixed order, then the trylast site plugin; Bcc never seen.
    assert names == [b"Subject", b"Date", b"From", b"Message-ID", b"X-Site"]
    assert head[0] == b"Subject: [site] hi"
    assert b"hidden" not in data


def test_hook_esmtp_route(hooks: Hooks, config: Config) -> None:
    assert hooks.route(make_envelope(config, ["a@x.example", "root"]), config).legs == {
        "smtp": ["a@x.example"], "mda": ["root"]}
    capture = Capture()
    hooks.pm.register(RouteAllToCapture(capture))
    assert hooks.route(make_envelope(config, ["root"]), config).legs == {"capture": ["root"]}


def test_hook_esmtp_queue_message(hooks: Hooks, config: Config) -> None:
    calls: list[tuple[list[str], str | None]] = []

    class Queue:
        @hookimpl
        def esmtp_queue_message(self, recipients: list[str], error: Exception | None) -> str | None:
            calls.append((recipients, None if error is None else type(error).__name__))
            return "Q123" if error is not None else None

    hooks.pm.register(Queue())
    # Nothing listens on 127.0.0.1:9: a temporary failure, which the "fallback" queue takes.
    results = send(hooks, config)
    assert calls == [(["b@example.net"], None), (["b@example.net"], "TemporaryFailure")]
    assert results[0].detail.startswith("queued as Q123")


def test_hook_esmtp_queue_command(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESMTP_DISABLE_PLUGINS", "queue")  # only the inline queue below answers
    hooks = Hooks(make_plugin_manager(config))

    class Queue:
        @hookimpl
        def esmtp_queue_command(self, options: Options) -> int | None:
            return 3 if options.mode == "mailq" else None

    hooks.pm.register(Queue())
    assert hooks.queue_command(Options(mode="mailq"), None) == 3
    assert hooks.queue_command(Options(mode="flush"), None) is None


def test_hook_esmtp_before_deliver(hooks: Hooks, config: Config) -> None:
    seen: list[dict[str, list[str]]] = []

    class Observer:
        @hookimpl
        def esmtp_before_deliver(self, route: Route) -> None:
            seen.append(dict(route.legs))

    capture = Capture()
    hooks.pm.register(RouteAllToCapture(capture))
    hooks.pm.register(Observer())
    send(hooks, config)
    assert seen == [{"capture": ["b@example.net"]}]


def test_hook_esmtp_sign_message(hooks: Hooks, config: Config) -> None:
    """Called once per delivery, after esmtp_before_deliver, with the message every leg then sends."""
    calls: list[str] = []

    class Signer:
        @hookimpl
        def esmtp_before_deliver(self) -> None:
            calls.append("before")

        @hookimpl
        def esmtp_sign_message(self, message: Message, trace: Trace) -> None:
            calls.append("sign")
            message.headers.insert(0, b"X-Signature: made at sending\n")

    capture = Capture()
    hooks.pm.register(RouteAllToCapture(capture))
    hooks.pm.register(Signer())
    send(hooks, config)
    assert calls == ["before", "sign"]
    assert capture.delivered[0][1].startswith(b"X-Signature: made at sending\nSubject: hi\n")


def test_hook_esmtp_after_deliver(hooks: Hooks, config: Config) -> None:
    seen: list[list[str]] = []

    class Observer:
        @hookimpl
        def esmtp_after_deliver(self, results: list[DeliveryResult]) -> None:
            seen.append([r.detail for r in results])

    hooks.pm.register(RouteAllToCapture(Capture()))
    hooks.pm.register(Observer())
    send(hooks, config)
    assert seen == [["kept"]]


def test_hook_esmtp_deliver_error(hooks: Hooks, config: Config) -> None:
    errors: list[Exception] = []

    class Observer:
        @hookimpl
        def esmtp_deliver_error(self, error: Exception) -> None:
            errors.append(error)

    hooks.pm.register(Observer())
    with pytest.raises(DeliveryFailed) as failed:
        send(hooks, config)
    assert failed.value.exit_code == 75
    assert isinstance(errors[0], TemporaryFailure)
    assert "127.0.0.1:9" in str(errors[0])


def test_blocked_plugin_is_never_imported(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv("ESMTP_DISABLE_PLUGINS", "fixup_date, sasl_plain")
    sys.modules.pop("esmtp_plugins.sasl_plain", None)
    pm = make_plugin_manager(config)
    assert pm.is_blocked("fixup_date") and pm.is_blocked("sasl_plain")
    assert "esmtp_plugins.sasl_plain" not in sys.modules


def test_hook_esmtp_check_config(hooks: Hooks, config: Config) -> None:
    from esmtp.diagnostics.check import check

    class Strict:
        @hookimpl
        def esmtp_check_config(self, config: Config) -> None:
            raise ConfigError(f"{config.where('site_limit')}: 'site_limit' takes a number")

    hooks.pm.register(Strict())
    assert check(Options(mode="check"), config, hooks) == 78


def test_hook_esmtp_password_source(hooks: Hooks, config: Config) -> None:
    from esmtp.password_sources import PasswordSource, password_source

    class Vault:
        @hookimpl
        def esmtp_password_source(self, identity: Identity) -> PasswordSource | None:
            return PasswordSource("vault", "vault secret/mail") if identity.address is None else None

    hooks.pm.register(Vault())
    assert password_source(config.default, hooks).description == "vault secret/mail"
    assert password_source(Identity("a@x"), hooks).kind == "none"


def test_hook_esmtp_secret(config: Config, auth_server: SmtpServer) -> None:
    """A plugin supplies the password when the configuration has none, only once AUTH is under way."""
    identity = config.default
    identity.hostname, identity.username = auth_server.hostport, "alice"
    identity.options["auth_plaintext"] = "enabled"
    hooks = Hooks(make_plugin_manager(config))
    asked: list[tuple[str, str, str | None]] = []

    class Vault:
        @hookimpl(tryfirst=True)
        def esmtp_secret(self, identity: Identity, host: str, mechanism: SaslMechanism,
                         rejected: str | None) -> str | None:
            asked.append((host, mechanism.name, rejected))
            return "s3cret"

    hooks.pm.register(Vault())
    [result] = send(hooks, config)
    assert result.agent == "smtp"
    assert asked == [("127.0.0.1", "PLAIN", None)]
    assert auth_server.sink.auths == [("PLAIN", "alice")]


def test_hook_esmtp_command(hooks: Hooks, config: Config) -> None:
    class Login:
        @hookimpl
        def esmtp_command(self, options: Options, config: Config) -> int | None:
            return 5 if options.mode == "oauth2-login" and options.identity == "me@example.org" else None

    hooks.pm.register(Login(), name="login")
    hooks.pm.unregister(name="oauth2")
    assert hooks.command(Options(mode="oauth2-login", identity="me@example.org"), config) == 5
    hooks.pm.unregister(name="password_keyring")
    assert hooks.command(Options(mode="store-password"), config) is None
