#!/usr/bin/env bash
# install-interop-deps.sh -- install the Debian packages the interop tests (tests/interop) need:
# Postfix (smtpd only, run from a temp dir by the test fixture) with Cyrus SASL (sasldb, NTLM plugin), and
# Dovecot (auth only, run from a temp dir by tests/interop/dovecot_server.py) for XOAUTH2/OAUTHBEARER.
#
# Idempotent and non-interactive (see apt-lib.sh): nothing is downloaded when everything is already installed.
# Needs root (CI runs as root, CI=true, no stdin). No system daemon is started: Postfix is preseeded to
# "No configuration" and, for the duration of the install, a policy-rc.d denies every service start.
#
# NOTE: the postfix package installs /usr/sbin/sendmail (Postfix's). Tests must run esmtp's own
# binary by explicit path, never "sendmail" from PATH.
set -euo pipefail
TAG=install-interop-deps
. "$(dirname "$0")/apt-lib.sh"

PACKAGES=(postfix sasl2-bin libsasl2-modules openssl procps dovecot-core)

require_root_debian
missing_packages "${PACKAGES[@]}"
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "$TAG: all present (${PACKAGES[*]})"
  exit 0
fi

export PATH="$PATH:/usr/sbin:/sbin"  # postfix and saslpasswd2 live in /usr/sbin
# "No configuration": the package writes no /etc/postfix/main.cf and sets up no system mail service.
debconf-set-selections <<'SEL' || die "debconf-set-selections failed"
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string interop.localhost
SEL
install_missing

# Check the pieces the fixture actually runs.
[ -x /usr/lib/postfix/sbin/master ] || die "postfix master binary missing after install"
command -v postfix >/dev/null || die "postfix command missing after install"
command -v saslpasswd2 >/dev/null || die "saslpasswd2 (sasl2-bin) missing after install"
ls /usr/lib/*/sasl2/libntlm.so >/dev/null 2>&1 || die "Cyrus NTLM plugin (libsasl2-modules) missing after install"
command -v openssl >/dev/null || die "openssl missing after install"
[ -x /usr/sbin/dovecot ] || die "dovecot (dovecot-core) missing after install"
echo "install-interop-deps: done ($(dpkg-query -W -f='${Version}' postfix) postfix)"
