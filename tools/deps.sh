#!/bin/sh
# Install the Debian packages proxyd needs to build (deps.sh build) or to run its
# tests (deps.sh test). Only missing packages are installed; services they ship are
# not started (tests start their own peers on loopback).
set -eu

build_pkgs="gcc make autoconf pkg-config libev-dev libssl-dev libc-ares-dev libyaml-dev libpcre2-dev"
test_pkgs="$build_pkgs clang libclang-rt-14-dev curl python3 python3-pytest python3-pycurl
  python3-requests python3-socks nginx-light dnsmasq-base socat iproute2 bind9-dnsutils
  openssl procps ca-certificates man-db groff-base"

case "${1:-build}" in
build) want=$build_pkgs ;;
test) want=$test_pkgs ;;
*) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing Debian packages:$missing" >&2
    echo "deps.sh: run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "deps.sh: installing$missing"
# Packages must not start services on this machine: tests run their own peers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
