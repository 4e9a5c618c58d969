#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real (Chromium for the web app, and NSS's certutil to
# give it a test-made root in its own certificate database; chrony and NTPsec as NTP peers, PostgreSQL's
# server binaries for the storage tests, nginx as the reverse proxy in front of `lockstep serve`,
# redis-server for the multi-instance tests, coturn as the TURN relay of the call tests) when any is
# missing. Idempotent: a machine that has them all does nothing.
set -euo pipefail

# command-on-PATH:debian-package
wanted=(
  /usr/bin/chromium:chromium
  /usr/sbin/chronyd:chrony
  /usr/bin/ntpdig:ntpsec-ntpdig
  /usr/bin/openssl:openssl
  /usr/bin/certutil:libnss3-tools
  /usr/sbin/nginx:nginx
  /usr/bin/redis-server:redis-server
  /usr/bin/turnserver:coturn
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
# The tests start their own throwaway PostgreSQL with initdb + pg_ctl (tests/pg_server.py); the path of
# those binaries carries the major version, so look for any.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# The C extension (src/lockstep/ntp/nts/_fastpath.c): a compiler, Nettle's and Python's headers.
[ -x /usr/bin/gcc ] || missing+=(gcc)
[ -f /usr/include/nettle/siv-cmac.h ] || missing+=(nettle-dev)
python_include=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$python_include/Python.h" ] || missing+=(python3-dev)
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
  # Only PostgreSQL's binaries are wanted: no system cluster is made (nor started) on install.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  fi
  # confold: keep that pre-written createcluster.conf without asking.
  apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  # The Debian chrony package starts a system chronyd; tests run their own on loopback ports instead.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now chrony >/dev/null 2>&1 || true; fi
  # Likewise Debian's redis-server starts a system Redis; tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
  pkill -x chronyd 2>/dev/null || true
  # Likewise coturn: the call tests start their own on a free loopback port (tests/turn_server.py).
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn >/dev/null 2>&1 || true; fi
  # Likewise nginx: the tests run their own on free loopback ports (tests/reverse_proxy.py).
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  if [ -x /etc/init.d/nginx ]; then /etc/init.d/nginx stop >/dev/null 2>&1 || true; fi
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
