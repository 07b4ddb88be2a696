#!/usr/bin/env bash
# A newer Python for bench/tail.py's "py313" configuration (issue 22): Debian 13 (trixie) ships
# python3.13; Debian 12 here has only 3.11. `bench/py313.sh up` debootstraps trixie into
# $UMS_PY313_ROOT (once, ~290 MB, a few minutes), bind-mounts /proc, /dev and this worktree at the
# same path, and makes a venv inside with the API's runtime dependencies (constraints.txt pins).
# `bench/py313.sh down` unmounts. Needs root (debootstrap, chroot, mount).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${UMS_PY313_ROOT:-/var/tmp/ums-find-trixie}
VENV=/opt/ums-venv313
MIRROR=${UMS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mounted() { mountpoint -q "$ROOTFS$1"; }
bind() {  # bind SRC: SRC at the same path inside the root
  mkdir -p "$ROOTFS$1"
  mounted "$1" || mount --bind "$1" "$ROOTFS$1"
}

up() {
  if [ ! -x "$ROOTFS/usr/bin/python3.13" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates trixie "$ROOTFS" "$MIRROR"
  fi
  bind /proc
  bind /dev
  bind "$HERE"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  # The host's trust store (and pip's, if set apart): a proxy's CA the host trusts works inside too.
  for ca in /etc/ssl/certs/ca-certificates.crt ${PIP_CERT:-}; do
    if [ -f "$ca" ]; then mkdir -p "$ROOTFS$(dirname "$ca")"; cp "$ca" "$ROOTFS$ca"; fi
  done
  local wanted; wanted=$(sha1sum "$HERE/constraints.txt" "$HERE/setup.cfg" | sha1sum)
  if [ ! -x "$ROOTFS$VENV/bin/gunicorn" ] || [ "$(cat "$ROOTFS$VENV/.stamp" 2>/dev/null)" != "$wanted" ]; then
    chroot "$ROOTFS" python3.13 -m venv --clear "$VENV"
    # The runtime dependencies only (setup.cfg's install_requires), pinned; the project itself
    # comes from the bind-mounted worktree on PYTHONPATH.
    local deps
    deps=$(sed -n '/^install_requires =/,/^$/p' "$HERE/setup.cfg" | tail -n +2 | sed 's/#.*//' | xargs)
    # shellcheck disable=SC2086
    chroot "$ROOTFS" "$VENV/bin/pip" install -q -c "$HERE/constraints.txt" $deps
    echo "$wanted" > "$ROOTFS$VENV/.stamp"
  fi
  chroot "$ROOTFS" "$VENV/bin/python" -c 'import sys, hiredis; print(sys.version.split()[0])'
}

down() {
  for m in "$HERE" /dev /proc; do
    if mounted "$m"; then umount "$ROOTFS$m"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
