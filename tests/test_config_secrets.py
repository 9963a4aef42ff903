"""A syntax error in the configuration never shows a secret: on a statement whose keyword is secret (``password``,
``pass``, ``certificate_passphrase``, ``passphrase``, a plugin keyword declared ``secret``), the value is masked.

The classic case is an unquoted password with a space: ``password Rt-S3c ret-pw`` reads as the value ``Rt-S3c``
followed by a statement starting with ``ret-pw``, and the error used to quote ``'ret-pw'``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Runner

from esmtp.config.files import load_config
from esmtp.config.model import Config
from esmtp.errors import ConfigError
from esmtp.plugins import load_hooks, resolve_config

SECRET_WORDS = ("Rt-S3c", "ret-pw", "S3c", "cr3t")


@pytest.mark.parametrize("statement", [
    "password Rt-S3c ret-pw",
    "pass Rt-S3c ret-pw",
    "password = Rt-S3c ret-pw",
    "certificate_passphrase Rt-S3c ret-pw",
    "passphrase Rt-S3c ret-pw extra",
    "username bob password Rt-S3c ret-pw",
    'password "Rt-S3c" ret-pw',
    "password Rt-S3c ret-pw = x",
    "password Rt-S3c, ret-pw",
    "password Rt-S3c ret-pw=x",
    "password Rt-S3c smtps ret-pw",
    "password Rt-S3c\\0777",
    "password\n  Rt-S3c ret-pw",
    "password Rt-S3c ret-pw\\",
    "password Rt-S3c 'ret-pw",
    # plugin keywords: the built-in oauth2 and password_command plugins declare these secret
    "oauth2_client_secret Rt-S3c ret-pw",
    "oauth2_refresh_token = Rt-S3c ret-pw extra",
    "password_command Rt-S3c ret-pw",
])
def test_error_after_a_secret_masks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the plugin index goes to the test's own cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    path = tmp_path / "esmtprc"
    path.write_text(f"hostname mail.example.org:587\n{statement}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as raised:
        load(path)  # some of these parse, and fail when the extension keywords are resolved
    message = str(raised.value)
    assert f"{path}:2:" in message or f"{path}:3:" in message
    assert not any(word in message for word in SECRET_WORDS), message


def load(path: Path) -> Config:
    """As a run does: parse, then resolve the extension keywords against the plugins' declarations."""
    config = load_config(str(path))
    resolve_config(config, load_hooks(config))
    return config


def test_sendmail_names_the_line_and_hides_the_password(run: Runner) -> None:
    config = run.write_config("hostname mail.example.org:587\nusername alice\npassword Rt-S3c ret-pw\n")
    result = run("b@example.net", input=b"Subject: x\n\nx\n")
    assert result.returncode == 78
    assert f"{config}:3:" in result.stderr and "password" in result.stderr and "quote" in result.stderr
    assert "Rt-S3c" not in result.stderr and "ret-pw" not in result.stderr


def test_errors_on_other_statements_still_quote_the_word(tmp_path: Path) -> None:
    path = tmp_path / "esmtprc"
    path.write_text("hostname mail.example.org:587 bogus-word\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="'bogus-word' is not a keyword"):
        load_config(str(path))


def test_plugin_secret_keyword_value_is_not_shown() -> None:
    from esmtp.config.parser import parse_config
    from esmtp.types import KeywordSpec

    config = parse_config("oauth2_client_secret = Rt-S3c\n", "esmtprc")
    spec = KeywordSpec("oauth2_client_secret", choices=("a", "b"), secret=True)
    with pytest.raises(ConfigError) as raised:
        config.resolve_extensions([spec])
    assert "esmtprc:1:" in str(raised.value) and "Rt-S3c" not in str(raised.value)
