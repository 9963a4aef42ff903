"""XOAUTH2 and OAUTHBEARER end to end: the installed ``sendmail`` against an aiosmtpd server that checks each bearer
token with a real OAuth2 provider on loopback (token + introspection endpoints), and ``esmtp --oauth2-login`` with
this test acting as the browser."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from oauth2_support import CLIENT_SECRET, USER, BearerServer, OAuth2Provider, oauth2_provider, start_bearer_server
from support import Result, Runner, entry_point

__all__ = ["oauth2_provider"]

MESSAGE = b"Subject: oauth\n\nbody\n"
#: The access-token cache and the stored refresh token go to the state file (no keyring) unless a test says otherwise.
NO_KEYRING = "keyring.backends.fail.Keyring"


@pytest.fixture
def bearer_server(oauth2_provider: OAuth2Provider) -> Iterator[BearerServer]:
    server = start_bearer_server(oauth2_provider)
    yield server
    server.controller.stop()


def configure(run: Runner, server: BearerServer, provider: OAuth2Provider, extra: str = "",
              refresh_token: str | None = None) -> None:
    run.write_config(
        f"hostname {server.hostport}\nusername {USER}\nauth_plaintext enabled\n"
        + provider.configuration(refresh_token) + extra
    )


def env(run: Runner, **extra: str) -> dict[str, str]:
    return run.env(PYTHON_KEYRING_BACKEND=NO_KEYRING, **extra)


def send(run: Runner, *args: str) -> Result:
    return run(*args, "bob@example.net", input=MESSAGE, env=env(run), timeout=20)


def grant(provider: OAuth2Provider, expires_in: int = 3600) -> str:
    token = "rt-configured-" + os.urandom(6).hex()
    from oauth2_support import Grant

    provider.refresh[token] = Grant(USER, expires_in)
    return token


def state_files(run: Runner) -> list[Path]:
    directory = run.home / ".local/state/esmtp/oauth2"
    return sorted(directory.glob("*.json")) if directory.exists() else []


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_refreshed_token_delivers(run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer,
                                  mechanism: str) -> None:
    configure(run, bearer_server, oauth2_provider, f"auth_mechanisms {mechanism}\n", grant(oauth2_provider))
    result = send(run)
    assert result.returncode == 0, result.stderr
    assert bearer_server.sink.auths == [(mechanism, USER)]
    assert bearer_server.sink.messages[0].rcpt_tos == ["bob@example.net"]
    [(_path, fields)] = [request for request in oauth2_provider.requests if request[0] == "/token"]
    assert fields["grant_type"] == "refresh_token" and fields["scope"] == "mail"


def test_oauthbearer_is_preferred_when_both_are_offered(run: Runner, oauth2_provider: OAuth2Provider,
                                                        bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    assert send(run).returncode == 0
    assert bearer_server.sink.auths == [("OAUTHBEARER", USER)]


def test_second_process_uses_the_cached_token(run: Runner, oauth2_provider: OAuth2Provider,
                                              bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    assert send(run).returncode == 0
    second = send(run, "-v")
    assert second.returncode == 0, second.stderr
    assert "cached OAuth2 access token" in second.stderr
    assert oauth2_provider.hits("/token") == 1
    assert len(bearer_server.sink.messages) == 2
    [cache] = state_files(run)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700


def test_short_lived_token_is_not_cached(run: Runner, oauth2_provider: OAuth2Provider,
                                         bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider, expires_in=30))
    assert send(run).returncode == 0
    assert send(run).returncode == 0
    assert oauth2_provider.hits("/token") == 2


@pytest.mark.parametrize("drop", [False, True], ids=["same-connection", "server-hung-up"])
def test_rejected_cached_token_is_refreshed_once(run: Runner, oauth2_provider: OAuth2Provider, drop: bool) -> None:
    server = start_bearer_server(oauth2_provider, drop_after_failure=drop)
    try:
        configure(run, server, oauth2_provider, refresh_token=grant(oauth2_provider))
        assert send(run).returncode == 0
        oauth2_provider.revoke_all()  # the cached token is still "valid" for esmtp, but the server refuses it
        server.sink.clear()
        result = send(run, "-v")
        assert result.returncode == 0, result.stderr
        assert oauth2_provider.hits("/token") == 2
        assert server.handler is not None
        assert [accepted for _, _, accepted in server.handler.attempts] == [True, False, True]
        assert server.sink.connections == (2 if drop else 1)
        assert len(server.sink.messages) == 1
    finally:
        server.controller.stop()


def test_refused_fresh_token_reports_status_and_scope(run: Runner, oauth2_provider: OAuth2Provider,
                                                      bearer_server: BearerServer) -> None:
    from oauth2_support import Grant

    oauth2_provider.refresh["rt-for-someone-else"] = Grant("mallory@example.org")
    configure(run, bearer_server, oauth2_provider, refresh_token="rt-for-someone-else")
    result = send(run)
    assert result.returncode == 77
    assert "status 401" in result.stderr and "scope https://mail.example.org/" in result.stderr
    assert oauth2_provider.hits("/token") == 2  # the first token, then one refresh after the refusal
    assert bearer_server.sink.messages == []


def test_rotated_refresh_token_is_stored(run: Runner, oauth2_provider: OAuth2Provider,
                                         bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider)
    assert login_as_browser(run, oauth2_provider).returncode == 0
    oauth2_provider.rotate = True
    for _ in range(3):
        with oauth2_provider.lock:
            oauth2_provider.tokens.clear()
        cache = state_files(run)[0]
        data = json.loads(cache.read_text())
        data.pop("access_token", None)  # force a refresh
        cache.write_text(json.dumps(data))
        result = send(run)
        assert result.returncode == 0, result.stderr
    assert oauth2_provider.hits("/token") == 1 + 3  # the code exchange, then three refreshes, each rotating
    assert json.loads(state_files(run)[0].read_text())["refresh_token"] in oauth2_provider.refresh


def test_invalid_grant_exits_77_and_says_how_to_log_in(run: Runner, oauth2_provider: OAuth2Provider,
                                                       bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider)
    assert login_as_browser(run, oauth2_provider).returncode == 0
    oauth2_provider.refresh.clear()
    cache = state_files(run)[0]
    data = json.loads(cache.read_text())
    data.pop("access_token")
    cache.write_text(json.dumps(data))
    result = send(run)
    assert result.returncode == 77
    assert "invalid_grant" in result.stderr and "esmtp --oauth2-login" in result.stderr
    assert bearer_server.sink.messages == []


def test_no_refresh_token_yet_says_to_log_in(run: Runner, oauth2_provider: OAuth2Provider,
                                             bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider)
    result = send(run)
    assert result.returncode == 77
    assert "esmtp --oauth2-login" in result.stderr


def test_token_endpoint_down_exits_75(run: Runner, oauth2_provider: OAuth2Provider,
                                      bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    oauth2_provider.unavailable = True
    result = send(run)
    assert result.returncode == 75, result.stderr
    assert "HTTP 503" in result.stderr
    oauth2_provider.stop()  # nothing listens any more
    result = send(run)
    assert result.returncode == 75, result.stderr
    assert "cannot reach the OAuth2 endpoint" in result.stderr
    assert bearer_server.sink.messages == []


def test_bearer_token_needs_tls_like_plain(run: Runner, oauth2_provider: OAuth2Provider,
                                           bearer_server: BearerServer) -> None:
    run.write_config(f"hostname {bearer_server.hostport}\nusername {USER}\n"
                     + oauth2_provider.configuration(grant(oauth2_provider)))
    result = send(run)
    assert result.returncode == 77
    assert "refusing to send the token in clear" in result.stderr
    assert oauth2_provider.hits("/token") == 0


def test_password_mechanisms_are_not_used_for_an_oauth2_identity(run: Runner, oauth2_provider: OAuth2Provider,
                                                                 auth_server: object) -> None:
    run.write_config(f"hostname {auth_server.hostport}\nusername {USER}\nauth_plaintext enabled\n"  # type: ignore[attr-defined]
                     + oauth2_provider.configuration(grant(oauth2_provider)))
    result = send(run)
    assert result.returncode == 77
    assert "allowed: OAUTHBEARER XOAUTH2" in result.stderr
    assert oauth2_provider.hits("/token") == 0


def test_secrets_from_commands(run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer) -> None:
    refresh_token = grant(oauth2_provider)
    run.write_config(
        f"hostname {bearer_server.hostport}\nusername {USER}\nauth_plaintext enabled\n"
        f"oauth2_token_url {oauth2_provider.url}/token\noauth2_client_id esmtp-test-client\n"
        f'oauth2_client_secret_command "echo {CLIENT_SECRET}"\noauth2_refresh_token_command "echo {refresh_token}"\n'
    )
    result = send(run, "-v")
    assert result.returncode == 0, result.stderr
    assert bearer_server.sink.auths == [("OAUTHBEARER", USER)]
    assert refresh_token not in result.stderr and CLIENT_SECRET not in result.stderr


def test_no_secret_in_verbose_output_transcript_or_errors(run: Runner, oauth2_provider: OAuth2Provider,
                                                          bearer_server: BearerServer, tmp_path: Path) -> None:
    refresh_token = grant(oauth2_provider)
    configure(run, bearer_server, oauth2_provider, "auth_mechanisms XOAUTH2\n", refresh_token)
    transcript = tmp_path / "transcript"
    debug = env(run, ESMTP_DEBUG="1")  # tracebacks on, where esmtp prints them
    ok = run("-v", "-v", "-X", str(transcript), "bob@example.net", input=MESSAGE, env=debug)
    oauth2_provider.revoke_all()
    oauth2_provider.refresh.clear()
    # The cached token is refused, then the refresh is refused: invalid_grant.
    refused = run("-v", "-X", str(transcript), "bob@example.net", input=MESSAGE, env=debug)
    assert ok.returncode == 0 and refused.returncode == 77
    access_tokens = [fields.get("token", "") for path, fields in oauth2_provider.requests if path == "/introspect"]
    secrets = [refresh_token, CLIENT_SECRET, *access_tokens]
    forms = []
    for secret in secrets:
        assert secret
        forms += [secret, base64.b64encode(secret.encode()).decode()]
        forms.append(base64.b64encode(f"user={USER}\x01auth=Bearer {secret}\x01\x01".encode()).decode())
    shown = ok.stderr + refused.stderr + transcript.read_text()
    assert "C: AUTH XOAUTH2 ****" in shown
    for form in forms:
        assert form not in shown


# ---- esmtp --oauth2-login ------------------------------------------------------------------------------------------


def login_as_browser(run: Runner, provider: OAuth2Provider, *args: str, environ: dict[str, str] | None = None
                     ) -> Result:
    """Run ``esmtp --oauth2-login``, open the URL it prints as a browser would (follow the redirect home)."""
    proc = subprocess.Popen([entry_point("esmtp"), "--oauth2-login", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environ or env(run, ESMTP_OAUTH2_LOGIN_TIMEOUT="20"),
                            text=True)
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:
        printed.append(line)
        if line.startswith(provider.url + "/authorize?"):
            with urllib.request.urlopen(line.strip(), timeout=10) as page:
                assert b"login done" in page.read()
            break
    out, err = proc.communicate(timeout=30)
    return Result(proc.returncode, "".join(printed) + out, err)


def test_oauth2_login_stores_the_refresh_token_then_sending_works(run: Runner, oauth2_provider: OAuth2Provider,
                                                                  bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider)
    result = login_as_browser(run, oauth2_provider)
    assert result.returncode == 0, result.stderr
    [state] = state_files(run)
    assert f"stored in {state}" in result.stdout
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    stored = json.loads(state.read_text())
    assert stored["refresh_token"] in oauth2_provider.refresh
    assert stored["refresh_token"] not in result.stdout + result.stderr
    [(_, authorize)] = [request for request in oauth2_provider.requests if request[0] == "/authorize"]
    assert authorize["redirect_uri"].startswith("http://127.0.0.1:") and authorize["code_challenge_method"] == "S256"
    sent = send(run)
    assert sent.returncode == 0, sent.stderr
    assert oauth2_provider.hits("/token") == 1  # the access token from the code exchange is reused


def test_oauth2_login_without_a_chosen_keyring_avoids_the_plain_text_one(run: Runner, oauth2_provider: OAuth2Provider,
                                                                          bearer_server: BearerServer,
                                                                          tmp_path: Path) -> None:
    """keyrings.alt's plain-text backend is keyring's default here; nobody chose it, so the refresh token goes to
    esmtp's own 0600 state file, and the command says so and how safe that is."""
    configure(run, bearer_server, oauth2_provider)
    data = tmp_path / "data"
    environ = run.env(XDG_DATA_HOME=str(data), ESMTP_OAUTH2_LOGIN_TIMEOUT="20")
    result = login_as_browser(run, oauth2_provider, environ=environ)
    assert result.returncode == 0, result.stderr
    [state] = state_files(run)
    assert f"stored in {state} (plain text, mode 0600: only you can read it)" in result.stdout
    assert not (data / "python_keyring").exists()


def test_oauth2_login_to_the_keyring(run: Runner, oauth2_provider: OAuth2Provider, bearer_server: BearerServer,
                                     tmp_path: Path) -> None:
    configure(run, bearer_server, oauth2_provider)
    environ = run.env(PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
                      XDG_DATA_HOME=str(tmp_path / "data"), ESMTP_OAUTH2_LOGIN_TIMEOUT="20")
    result = login_as_browser(run, oauth2_provider, environ=environ)
    assert result.returncode == 0, result.stderr
    assert "stored in the keyring, service esmtp-oauth2:" in result.stdout
    assert "(keyrings.alt.file.PlaintextKeyring: in plain text (base64) in " in result.stdout  # where, how safe
    assert state_files(run) == []
    sent = run("bob@example.net", input=MESSAGE, env=environ)
    assert sent.returncode == 0, sent.stderr
    assert oauth2_provider.hits("/token") == 1


def test_oauth2_login_with_device_code(run: Runner, oauth2_provider: OAuth2Provider,
                                       bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider)
    result = run("--oauth2-login", "--device", program="esmtp", env=env(run))
    assert result.returncode == 0, result.stderr
    assert "enter the code WDJB-MJHT" in result.stdout
    assert oauth2_provider.hits("/token") == 2  # one authorization_pending, then the tokens
    assert send(run).returncode == 0


def test_oauth2_login_for_a_named_identity(run: Runner, oauth2_provider: OAuth2Provider,
                                           bearer_server: BearerServer) -> None:
    run.write_config(f"hostname {bearer_server.hostport}\n\nidentity {USER}\nhostname {bearer_server.hostport}\n"
                     f"username {USER}\nauth_plaintext enabled\n" + oauth2_provider.configuration())
    assert run("--oauth2-login", "--identity", "nobody@example.org", program="esmtp", env=env(run)).returncode == 64
    plain = run("--oauth2-login", program="esmtp", env=env(run))  # the default identity has no OAuth2 settings
    assert plain.returncode == 78
    assert f"identity default has no OAuth2 settings, so there is nothing to log in to: name one with --identity " \
           f"({USER})" in plain.stderr
    result = login_as_browser(run, oauth2_provider, "--identity", USER)
    assert result.returncode == 0, result.stderr
    sent = run("-f", USER, "bob@example.net", input=MESSAGE, env=env(run))
    assert sent.returncode == 0, sent.stderr


def test_state_file_readable_by_others_is_refused(run: Runner, oauth2_provider: OAuth2Provider,
                                                  bearer_server: BearerServer) -> None:
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    assert send(run).returncode == 0
    [state] = state_files(run)
    state.chmod(0o644)
    result = send(run)
    assert result.returncode == 78
    assert "chmod 600" in result.stderr


# ---- the mechanisms' exchanges, on their own -----------------------------------------------------------------------


def test_xoauth2_and_oauthbearer_wire_formats() -> None:
    from esmtp_plugins.sasl_oauthbearer import OAuthBearerClient
    from esmtp_plugins.sasl_xoauth2 import XOAuth2Client

    from esmtp.types import Credentials

    credentials = Credentials("a=b,c@example.org", "tok", "smtp.example.org")
    assert XOAuth2Client(credentials).step(None) == b"user=a=b,c@example.org\x01auth=Bearer tok\x01\x01"
    bearer = OAuthBearerClient(credentials)
    assert bearer.step(None) == b"n,a=a=3Db=2Cc@example.org,\x01host=smtp.example.org\x01auth=Bearer tok\x01\x01"
    error = b'{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://x"}'
    assert bearer.step(error) == b"\x01"
    assert bearer.failure == "the server says: status invalid_token, scope example_scope"
    with pytest.raises(ValueError, match="second challenge"):
        bearer.step(error)
    xoauth2 = XOAuth2Client(credentials)
    assert xoauth2.step(b"not json") == b""
    assert xoauth2.failure == "the server's error challenge was not JSON"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("username x@example.org\noauth2_provider google\n", "has OAuth2 settings but no oauth2_client_id"),
        ("oauth2_provider microsoft\noauth2_client_id abc\n", "has OAuth2 settings but no username"),
        ("username x@example.org\noauth2_client_id abc\noauth2_token_url http://oauth.example.org/token\n",
         "oauth2_token_url must be an https:// URL"),
        ("username x@example.org\noauth2_provider google\noauth2_client_id abc\noauth2_refresh_token a\n"
         "oauth2_refresh_token_command \"echo b\"\n", ":7: oauth2_refresh_token_command cannot be used together"),
        ("username x@example.org\noauth2_provider yahoo\n", "'oauth2_provider' takes one of google, microsoft"),
    ],
)
def test_oauth2_configuration_errors_exit_78(run: Runner, bearer_server: BearerServer, lines: str,
                                             message: str) -> None:
    run.write_config(f"hostname {bearer_server.hostport}\nauth_plaintext enabled\n{lines}")
    result = send(run)
    assert result.returncode == 78, result.stderr
    assert message in result.stderr
    assert bearer_server.sink.messages == []


def test_check_secrets_fails_without_a_refresh_token(run: Runner, oauth2_provider: OAuth2Provider,
                                                      bearer_server: BearerServer) -> None:
    """``--check --secrets`` must not pass an identity whose send would fail with 77: without a refresh token
    (configured or stored by ``--oauth2-login``) it exits 78 and says how to log in. Nothing is contacted."""
    configure(run, bearer_server, oauth2_provider)
    plain = run("--check", program="esmtp", env=env(run))
    assert plain.returncode == 0, plain.stderr  # without --secrets the keyring and the state file are not read
    result = run("--check", "--secrets", program="esmtp", env=env(run))
    assert result.returncode == 78, result
    assert "has no OAuth2 refresh token yet: log in once with: esmtp --oauth2-login" in result.stderr
    assert result.stdout.startswith("FAIL (global section) (default)")
    assert send(run).returncode == 77  # what the check foretold
    configure(run, bearer_server, oauth2_provider, refresh_token=grant(oauth2_provider))
    passed = run("--check", "--secrets", program="esmtp", env=env(run))
    assert passed.returncode == 0, passed.stderr
    assert "1 identity block(s) and their secrets checked" in passed.stdout  # it says that it ran
    assert not [path for path, _ in oauth2_provider.requests if path == "/token"]  # nothing was contacted
