#!/usr/bin/env bash
# install-routing-deps.sh -- install the Debian packages the routing tests (tests/test_network_paths.py) need:
# microsocks, a small SOCKS5 server that the tests start on 127.0.0.1 themselves (no system service is set up).
#
# Idempotent and non-interactive (see apt-lib.sh): nothing is downloaded when everything is already installed.
# Needs root (CI runs as root, CI=true, no stdin).
set -euo pipefail
TAG=install-routing-deps
. "$(dirname "$0")/apt-lib.sh"

PACKAGES=(microsocks)

require_root_debian
missing_packages "${PACKAGES[@]}"
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "$TAG: all present (${PACKAGES[*]})"
  exit 0
fi
install_missing

[ -x /usr/bin/microsocks ] || die "microsocks missing after install"
echo "$TAG: done ($(dpkg-query -W -f='${Version}' microsocks) microsocks)"
