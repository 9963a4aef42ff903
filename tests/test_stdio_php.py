"""A real Symfony Mailer (Debian's ``php-symfony-mailer``) sending through ``sendmail -bs`` to a real smarthost.

Symfony's ``SendmailTransport`` runs ``sendmail -bs`` and speaks SMTP to it over pipes (plain SMTP: HELO, and no
SMTPUTF8 even for a UTF-8 address); Laravel, Drupal and TYPO3 use it as their default. ``.ci/install-php-deps.sh``
installs PHP and Symfony Mailer; without them this test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import quopri
import shutil
import subprocess
from pathlib import Path

import pytest
from support import Runner, SmtpServer, entry_point

AUTOLOAD = "/usr/share/php/Symfony/Component/Mailer/autoload.php"

# One transport (one sendmail -bs process) for every message, as an application sends them.
SCRIPT = r"""<?php
require $argv[1];
use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mime\Email;

$mailer = new Mailer(new SendmailTransport($argv[2] . ' -bs'));
$big = str_repeat("A line of the large message, long enough to count.\n", 40000);
$messages = [
    (new Email())->from('alice@example.org')->to('bob@example.net')->bcc('hidden@example.net')
        ->subject('with bcc')->text("Hello Bob.\n.\nA lone dot above.\n"),
    (new Email())->from('alice@example.org')->to('jörg@example.net')->subject('Grüße')->text("Hallo Jörg!\n"),
    (new Email())->from('alice@example.org')->to('carol@example.net')->subject('large')->text($big),
    (new Email())->from('alice@example.org')->to('nobody@example.net')->subject('refused')->text("x\n"),
];
$outcomes = [];
foreach ($messages as $email) {
    try {
        $mailer->send($email);
        $outcomes[] = 'sent';
    } catch (\Throwable $error) {
        $outcomes[] = get_class($error) . ': ' . $error->getMessage();
    }
}
echo json_encode($outcomes), "\n";
"""


def _php_unavailable() -> str | None:
    if shutil.which("php") is None:
        return "php is not installed (.ci/install-php-deps.sh installs php-cli)"
    if not Path(AUTOLOAD).exists():
        return f"{AUTOLOAD} is missing (.ci/install-php-deps.sh installs php-symfony-mailer)"
    return None


def test_symfony_mailer_sends_through_sendmail_bs(run: Runner, smtp_server: SmtpServer, tmp_path: Path) -> None:
    reason = _php_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason}; CI=true: the PHP test must run in CI, so a skip is a failure", pytrace=False)
        pytest.skip(reason)
    smtp_server.sink.rcpt_replies["nobody@example.net"] = "550 5.1.1 <nobody@example.net>: Recipient unknown"
    run.write_config(f"hostname {smtp_server.hostport}\n")
    smtp_server.sink.clear()
    script = tmp_path / "send.php"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        ["php", str(script), AUTOLOAD, entry_point()], capture_output=True, env=run.env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    outcomes = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert outcomes[:3] == ["sent", "sent", "sent"], outcomes
    # The smarthost's refusal reaches the application as the SMTP reply it can show.
    assert "TransportException" in outcomes[3] and "550" in outcomes[3] and "Recipient unknown" in outcomes[3]

    bcc, utf8, large = smtp_server.sink.messages
    assert bcc.mail_from == "alice@example.org"
    assert sorted(bcc.rcpt_tos) == ["bob@example.net", "hidden@example.net"]
    assert b"hidden@example.net" not in bcc.data and b"\nBcc:" not in bcc.data
    assert b"\r\n.\r\nA lone dot above." in bcc.data  # dot-stuffed by Symfony, unstuffed here, intact at the end
    assert utf8.rcpt_tos == ["jörg@example.net"] and "SMTPUTF8" in utf8.mail_options
    assert b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=" in utf8.data
    assert large.rcpt_tos == ["carol@example.net"] and len(large.data) > 2_000_000
    body = quopri.decodestring(large.data.split(b"\r\n\r\n", 1)[1])  # Symfony sends text quoted-printable
    assert body.count(b"A line of the large message, long enough to count.\r\n") == 40000
    assert smtp_server.sink.connections == 1  # one upstream connection for the whole transport
