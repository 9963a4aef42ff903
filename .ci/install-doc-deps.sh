#!/usr/bin/env bash
# install-doc-deps.sh -- the Debian package the manual-page tests need: groff (groff-base) to lint man/ pages
# (tests/test_manpages.py runs `groff -man -ww -z`). Idempotent and non-interactive; needs root to install.
set -euo pipefail

if command -v groff >/dev/null; then
  echo "install-doc-deps: groff present"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-doc-deps: ERROR: groff is missing and installing it needs root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends groff-base </dev/null >/dev/null; }
# Use the existing package lists when they can satisfy the install; refresh them (once) otherwise.
install || { apt-get update -q </dev/null >/dev/null && install; }
command -v groff >/dev/null || { echo "install-doc-deps: ERROR: groff missing after install" >&2; exit 1; }
echo "install-doc-deps: done"
