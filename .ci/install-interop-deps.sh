#!/usr/bin/env bash
# install-interop-deps.sh -- install the Debian packages the interop tests (tests/interop) need:
# Postfix (smtpd only, run from a temp dir by the test fixture) with Cyrus SASL (sasldb, NTLM plugin), and
# Dovecot (auth only, run from a temp dir by tests/interop/dovecot_server.py) for XOAUTH2/OAUTHBEARER.
#
# Idempotent and non-interactive: nothing is downloaded when everything is already installed. Needs root
# (CI runs as root, CI=true, no stdin). No system daemon is started: Postfix is preseeded to
# "No configuration" and, for the duration of the install, a policy-rc.d denies every service start.
#
# NOTE: the postfix package installs /usr/sbin/sendmail (Postfix's). Tests must run esmtp's own
# binary by explicit path, never "sendmail" from PATH.
set -euo pipefail

die() { echo "install-interop-deps: ERROR: $*" >&2; exit 1; }

PACKAGES=(postfix sasl2-bin libsasl2-modules openssl procps dovecot-core)

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install); try: sudo $0"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "needs a Debian/Ubuntu system (apt-get, dpkg)"

installed() { # package -> 0 when fully installed
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-interop-deps: all present (${PACKAGES[*]})"
  exit 0
fi
echo "install-interop-deps: installing ${missing[*]}"

export PATH="$PATH:/usr/sbin:/sbin"  # postfix and saslpasswd2 live in /usr/sbin
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
# "No configuration": the package writes no /etc/postfix/main.cf and sets up no system mail service.
debconf-set-selections <<'SEL' || die "debconf-set-selections failed"
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string interop.localhost
SEL

# Deny daemon starts during the install (invoke-rc.d honours exit 101) unless the image already has
# a policy-rc.d (Docker images usually do); a temporary one is removed again on exit.
POLICY=/usr/sbin/policy-rc.d
temp_policy=
log=$(mktemp)
cleanup() { rm -f "$log"; if [ -n "$temp_policy" ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# temporary, from install-interop-deps.sh\nexit 101\n' > "$POLICY"
  chmod 0755 "$POLICY"
  temp_policy=1
fi

apt_install() {
  apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null >"$log" 2>&1
}
# Use the existing package lists when they can satisfy the install; refresh them (once) otherwise.
if ! apt_install; then
  echo "install-interop-deps: refreshing package lists (apt-get update)"
  apt-get update -q </dev/null >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
  apt_install || { cat "$log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

# Check the pieces the fixture actually runs.
[ -x /usr/lib/postfix/sbin/master ] || die "postfix master binary missing after install"
command -v postfix >/dev/null || die "postfix command missing after install"
command -v saslpasswd2 >/dev/null || die "saslpasswd2 (sasl2-bin) missing after install"
ls /usr/lib/*/sasl2/libntlm.so >/dev/null 2>&1 || die "Cyrus NTLM plugin (libsasl2-modules) missing after install"
command -v openssl >/dev/null || die "openssl missing after install"
[ -x /usr/sbin/dovecot ] || die "dovecot (dovecot-core) missing after install"
echo "install-interop-deps: done ($(dpkg-query -W -f='${Version}' postfix) postfix)"
