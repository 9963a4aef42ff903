#!/usr/bin/env bash
# install-listener-deps.sh -- install the SMTP clients the listener's tests (tests/test_listener*.py) drive
# esmtp --listen with: swaks, and msmtp as a client.
#
# Only the package msmtp, never msmtp-mta: that one takes over /usr/sbin/sendmail (Postfix's here).
# Idempotent and non-interactive (see apt-lib.sh): nothing is downloaded when everything is already installed.
# Needs root (CI runs as root, CI=true, no stdin). No service is started.
set -euo pipefail
TAG=install-listener-deps
. "$(dirname "$0")/apt-lib.sh"

# swaks speaks TLS through Net::SSLeay and IO::Socket::SSL (only recommended by the package, which apt-lib skips).
PACKAGES=(swaks libnet-ssleay-perl libio-socket-ssl-perl msmtp)

require_root_debian
missing_packages "${PACKAGES[@]}"
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "$TAG: all present (${PACKAGES[*]})"
  exit 0
fi
install_missing

command -v swaks >/dev/null || die "swaks missing after install"
command -v msmtp >/dev/null || die "msmtp missing after install"
echo "$TAG: done (swaks $(dpkg-query -W -f='${Version}' swaks), msmtp $(dpkg-query -W -f='${Version}' msmtp))"
