"""The system service relaying PHP's mail() for ``www-data`` through the real Postfix with Cyrus SASL (AUTH).

The service runs as root in the foreground (:mod:`system_support`); PHP runs as ``www-data`` with ``runuser``; what
Postfix delivered (the envelope, the SASL login it recorded, the message) is the oracle.
"""

from __future__ import annotations

import pwd
import shutil

import pytest
from postfix_server import PostfixServer
from system_support import SystemService, shared_python, system, test_users

pytestmark = pytest.mark.interop
__all__ = ["shared_python", "system", "test_users"]


def test_php_mail_as_www_data_through_postfix_with_auth(system: SystemService, clean_postfix: PostfixServer) -> None:
    if shutil.which("php") is None:
        pytest.skip("php is not installed (.ci/install-php-deps.sh installs php-cli)")
    postfix = clean_postfix
    system.write_config(f"hostname {postfix.host}:{postfix.ports.notls}\nusername \"{postfix.user}\"\n"
                        f"password \"{postfix.password}\"\nauth_plaintext enabled\n")
    system.start()
    script = 'exit(mail("rcpt@example.net", "php via postfix", "Hello.", "From: shop@example.org") ? 0 : 1);'
    result = system.as_user("www-data", "php", "-d", f"sendmail_path={system.bin / 'sendmail'} -t -i", "-r", script)
    assert result.returncode == 0, result.stderr + system.log()
    [got] = postfix.wait_for_messages(1)
    assert got.sasl_username == postfix.sasl_username(postfix.user)
    assert got.sender == "shop@example.org"
    assert f"from userid {pwd.getpwnam('www-data').pw_uid} (www-data)" in " ".join(
        str(value) for value in got.message().get_all("Received", []))
    assert postfix.password not in result.stdout + result.stderr
    assert system.as_user("www-data", "cat", str(system.config)).returncode != 0
