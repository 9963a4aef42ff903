# apt-lib.sh -- sourced by the .ci/install-*.sh scripts: an idempotent, non-interactive apt-get install that
# starts no service. The caller sets TAG (the prefix of its messages) before sourcing this file.

die() { echo "$TAG: ERROR: $*" >&2; exit 1; }

require_root_debian() {
  [ "$(id -u)" = 0 ] || die "must run as root (apt-get install); try: sudo $0"
  command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "needs a Debian/Ubuntu system (apt-get, dpkg)"
}

installed() { # package -> 0 when fully installed
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# missing_packages PACKAGE... -> sets the array MISSING to those that are not fully installed.
missing_packages() {
  MISSING=()
  local p
  for p in "$@"; do installed "$p" || MISSING+=("$p"); done
}

# install_missing -> apt-get install "${MISSING[@]}".
# Daemon starts are denied during the install (invoke-rc.d honours exit 101) unless the image already has a
# policy-rc.d (Docker images usually do); a temporary one is removed again on exit. Another apt run (unattended
# upgrades, a parallel job) may hold the dpkg lock: wait for it rather than fail. The existing package lists are
# used when they can satisfy the install; they are refreshed (once) otherwise.
install_missing() {
  echo "$TAG: installing ${MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
  POLICY=/usr/sbin/policy-rc.d
  temp_policy=
  log=$(mktemp)
  trap 'rm -f "$log"; if [ -n "$temp_policy" ]; then rm -f "$POLICY"; fi' EXIT
  trap 'exit 130' INT TERM
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from %s\nexit 101\n' "$TAG" > "$POLICY"
    chmod 0755 "$POLICY"
    temp_policy=1
  fi
  local lock=(-o DPkg::Lock::Timeout=600)
  if ! apt-get install -y -q --no-install-recommends "${lock[@]}" -o Dpkg::Options::=--force-confdef \
      -o Dpkg::Options::=--force-confold "${MISSING[@]}" </dev/null >"$log" 2>&1; then
    echo "$TAG: refreshing package lists (apt-get update)"
    apt-get update -q "${lock[@]}" </dev/null >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
    apt-get install -y -q --no-install-recommends "${lock[@]}" -o Dpkg::Options::=--force-confdef \
      -o Dpkg::Options::=--force-confold "${MISSING[@]}" </dev/null >"$log" 2>&1 \
      || { cat "$log" >&2; die "apt-get install ${MISSING[*]} failed"; }
  fi
}
