#!/usr/bin/env bash
# install-dkim-deps.sh -- install the Debian packages the DKIM tests (tests/test_dkim.py) need: OpenDKIM's
# verifier (opendkim-testmsg, in opendkim-tools; the opendkim package for its configuration parser and library)
# and dnsmasq (dnsmasq-base: the binary only, no service), which the tests start on 127.0.0.x at a high port to
# serve the public keys as TXT records.
#
# Idempotent and non-interactive (see apt-lib.sh): nothing is downloaded when everything is already installed.
# Needs root (CI runs as root, CI=true, no stdin). No service is started: a policy-rc.d denies every service start
# for the duration of the install (the opendkim package would otherwise start its milter).
set -euo pipefail
TAG=install-dkim-deps
. "$(dirname "$0")/apt-lib.sh"

PACKAGES=(opendkim opendkim-tools dnsmasq-base)

require_root_debian
missing_packages "${PACKAGES[@]}"
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "$TAG: all present (${PACKAGES[*]})"
  exit 0
fi
install_missing

# Check the pieces the tests actually run.
export PATH="$PATH:/usr/sbin:/sbin"
command -v opendkim-testmsg >/dev/null || die "opendkim-testmsg (opendkim-tools) missing after install"
command -v dnsmasq >/dev/null || die "dnsmasq (dnsmasq-base) missing after install"
echo "$TAG: done (opendkim $(dpkg-query -W -f='${Version}' opendkim-tools), dnsmasq $(dpkg-query -W -f='${Version}' dnsmasq-base))"
