#!/usr/bin/env bash
# install-php-deps.sh -- install the Debian packages the PHP test (tests/test_stdio_php.py) needs:
# the PHP command line and Symfony Mailer, whose SendmailTransport runs "sendmail -bs".
#
# Idempotent and non-interactive: nothing is downloaded when everything is already installed. Needs root
# (CI runs as root, CI=true, no stdin). No service is started: a policy-rc.d denies every start during the install.
set -euo pipefail

die() { echo "install-php-deps: ERROR: $*" >&2; exit 1; }

PACKAGES=(php-cli php-symfony-mailer)
# Debian's php-symfony-mailer ships this autoloader (it pulls in its dependencies' autoloaders too).
AUTOLOAD=/usr/share/php/Symfony/Component/Mailer/autoload.php

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install); try: sudo $0"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "needs a Debian/Ubuntu system (apt-get, dpkg)"

installed() { # package -> 0 when fully installed
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-php-deps: all present (${PACKAGES[*]})"
  exit 0
fi
echo "install-php-deps: installing ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true

# Deny daemon starts during the install (invoke-rc.d honours exit 101) unless the image already has
# a policy-rc.d (Docker images usually do); a temporary one is removed again on exit.
POLICY=/usr/sbin/policy-rc.d
temp_policy=
log=$(mktemp)
cleanup() { rm -f "$log"; if [ -n "$temp_policy" ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# temporary, from install-php-deps.sh\nexit 101\n' > "$POLICY"
  chmod 0755 "$POLICY"
  temp_policy=1
fi

apt_install() {
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null >"$log" 2>&1
}
# Another apt run (unattended-upgrades) may hold the lock: wait for it rather than fail.
# Use the existing package lists when they can satisfy the install; refresh them (once) otherwise.
if ! apt_install; then
  echo "install-php-deps: refreshing package lists (apt-get update)"
  apt-get update -q -o DPkg::Lock::Timeout=600 </dev/null >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
  apt_install || { cat "$log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

# Check the pieces the test actually runs.
command -v php >/dev/null || die "php missing after install"
[ -r "$AUTOLOAD" ] || die "$AUTOLOAD missing after install"
php -r "require '$AUTOLOAD'; exit(class_exists('Symfony\\\\Component\\\\Mailer\\\\Transport\\\\SendmailTransport') ? 0 : 1);" \
  || die "Symfony Mailer's SendmailTransport cannot be autoloaded from $AUTOLOAD"
echo "install-php-deps: done (php $(php -r 'echo PHP_VERSION;'), symfony mailer $(dpkg-query -W -f='${Version}' php-symfony-mailer))"
