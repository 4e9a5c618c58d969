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
# NTPsec's ntpd and chrony both claim to be "the time daemon" and Debian lets only one be installed.
# The tests need both as peers, so ntpsec is unpacked (not installed) into this folder; nothing in it
# runs unless a test starts it.
NTPSEC_ROOT=/opt/lockstep-peers/ntpsec

missing=()
for entry in "${wanted[@]}"; do
  path=${entry%%:*} package=${entry#*:}
  [ -x "$path" ] || missing+=("$package")
done
need_ntpsec=0
[ -x "$NTPSEC_ROOT/usr/sbin/ntpd" ] || need_ntpsec=1
[ ${#missing[@]} -eq 0 ] && [ $need_ntpsec -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (and ntpsec unpacked: $need_ntpsec); run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian chrony package starts a system chronyd; tests run their own on loopback ports instead.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now chrony >/dev/null 2>&1 || true; fi
  pkill -x chronyd 2>/dev/null || true
fi
if [ $need_ntpsec -eq 1 ]; then
  echo "unpacking ntpsec into $NTPSEC_ROOT"
  workdir=$(mktemp -d)
  chown _apt "$workdir" 2>/dev/null || true  # apt downloads as its own user
  (cd "$workdir" && apt-get download -qq ntpsec >/dev/null)
  mkdir -p "$NTPSEC_ROOT"
  dpkg-deb -x "$workdir"/ntpsec_*.deb "$NTPSEC_ROOT"
  rm -rf "$workdir"
fi
