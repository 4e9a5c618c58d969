#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real (Chromium for the web app, chrony and NTPsec as
# NTP peers) when any is missing. Idempotent: a machine that has them all does nothing.
set -euo pipefail

# command-on-PATH:debian-package
wanted=(
  /usr/bin/chromium:chromium
  /usr/sbin/chronyd:chrony
  /usr/bin/ntpdig:ntpsec-ntpdig
  /usr/bin/openssl:openssl
)

missing=()
for entry in "${wanted[@]}"; do
  path=${entry%%:*} package=${entry#*:}
  [ -x "$path" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian chrony package starts a system chronyd; tests run their own on loopback ports instead.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now chrony >/dev/null 2>&1 || true; fi
pkill -x chronyd 2>/dev/null || true
