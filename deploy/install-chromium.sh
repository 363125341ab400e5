#!/usr/bin/env bash
# The browser the UI tests and the UI benchmark drive: Debian's Chromium (never a browser a test tool
# downloads; this machine reaches only the package registries). Idempotent; run by `make install`.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-chromium: /usr/bin/chromium is missing; install Debian's chromium package (as root:" \
       "apt-get install -y chromium) for the browser tests" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
/usr/bin/chromium --version
