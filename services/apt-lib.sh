#!/usr/bin/env bash
# apt_install, shared by services/stack.sh and services/deploy-lib.sh (sourced, not run; the
# sourcing script defines log and die).

apt_updated=0
apt_install() {  # apt_install PACKAGE...: install the Debian packages that are missing
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || die "cannot install ${missing[*]}: no apt-get on this machine"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}
