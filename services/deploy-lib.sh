#!/usr/bin/env bash
# Shared by services/docker.sh and services/k8s.sh (sourced, not run): paths, logging, apt (apt-lib.sh),
# pid-file processes and Go builds from the module proxy, cached under $UMS_CACHE_DIR.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${UMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ums-find}
RUN_DIR=${UMS_DEPLOY_RUN_DIR:-$ROOT/.run}
GO_DIR=$CACHE_DIR/go            # module and build caches of the Go builds below
DEPLOY_BIN=$CACHE_DIR/bin       # built tools, one file per pinned version

log() { printf '[%s] %s\n' "${LOG_TAG:-deploy}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-deploy}" "$*" >&2; exit 1; }

# shellcheck source=services/apt-lib.sh
. "$ROOT/services/apt-lib.sh"

go_bin() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
  else die "Go >= 1.24 is needed to build the deployment tools from the Go module proxy"
  fi
}

go_env() {  # run a Go command with the project's caches, static binaries, the machine's toolchain
  GOMODCACHE=$GO_DIR/mod GOCACHE=$GO_DIR/build GOPATH=$GO_DIR/path GOTOOLCHAIN=local \
    CGO_ENABLED=0 GOFLAGS="-buildvcs=false -modcacherw" "$(go_bin)" "$@"
}

module_dir() {  # module_dir MODULE@VERSION: download the module's source, print its directory
  go_env mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'
}

go_prune() {  # after a build: drop Go's build and module caches (5-7 GB), keep the binaries
  [ "${UMS_KEEP_GO_CACHE:-0}" = 1 ] && return
  [ -d "$GO_DIR" ] || return 0
  go_env clean -cache -modcache >/dev/null 2>&1 || true
  rm -rf "$GO_DIR"
}

locked() {  # locked NAME COMMAND...: one builder at a time per NAME (parallel callers wait)
  local name=$1; shift
  mkdir -p "$CACHE_DIR"
  (flock 9; "$@") 9>"$CACHE_DIR/.$name.lock"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, wait up to 20 s, then KILL; only our own pid
  local name=$1 f=$2 pid i
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    log "stopped $name ($pid)"
  fi
  rm -f "$f"
}

wait_until() {  # wait_until SECONDS WHAT COMMAND...: poll COMMAND every 0.5 s until it succeeds
  local limit=$1 what=$2 deadline; shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "$what: not ready after ${limit}s"
    sleep 0.5
  done
}
