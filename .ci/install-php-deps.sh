#!/usr/bin/env bash
# install-php-deps.sh -- install the Debian packages the PHP test (tests/test_stdio_php.py) needs:
# the PHP command line and Symfony Mailer, whose SendmailTransport runs "sendmail -bs".
#
# Idempotent and non-interactive (see apt-lib.sh): nothing is downloaded when everything is already installed.
# Needs root (CI runs as root, CI=true, no stdin). No service is started.
set -euo pipefail
TAG=install-php-deps
. "$(dirname "$0")/apt-lib.sh"

PACKAGES=(php-cli php-symfony-mailer)
# Debian's php-symfony-mailer ships this autoloader (it loads its dependencies' autoloaders too).
AUTOLOAD=/usr/share/php/Symfony/Component/Mailer/autoload.php

require_root_debian
missing_packages "${PACKAGES[@]}"
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "$TAG: all present (${PACKAGES[*]})"
  exit 0
fi
install_missing

# Check the pieces the test actually runs.
command -v php >/dev/null || die "php missing after install"
[ -r "$AUTOLOAD" ] || die "$AUTOLOAD missing after install"
php -r "require '$AUTOLOAD'; exit(class_exists('Symfony\\\\Component\\\\Mailer\\\\Transport\\\\SendmailTransport') ? 0 : 1);" \
  || die "Symfony Mailer's SendmailTransport cannot be autoloaded from $AUTOLOAD"
echo "$TAG: done (php $(php -r 'echo PHP_VERSION;'), symfony mailer $(dpkg-query -W -f='${Version}' php-symfony-mailer))"
