#!/usr/bin/env bash
# bench/tools.sh: install the benchmarks' load generator (vegeta) into the cache.
#
# Idempotent and cached under $UMS_CACHE_DIR (default ~/.cache/ums-find, outside the checkout, as
# services/stack.sh keeps the Kafka jars: a new clone or git worktree is warm):
#   vegeta  `go install github.com/tsenart/vegeta/v12@$VEGETA_VERSION` from the Go module proxy;
#   go      always the pinned official toolchain module (golang.org/toolchain, the zips that
#           `GOTOOLCHAIN=auto` downloads) from proxy.golang.org, so every machine builds with the
#           same Go: go.dev's tarballs are not reachable from CI, the proxy is, and Debian 12's
#           golang-go (1.19) is older than vegeta's go.mod needs (1.22).
#   floor   `bench/tools.sh floor`: the rig's floor server (bench/peers/floor, bench/rig_floor.py), built
#           with the same Go, cached by its source's hash.
# Prints the binary's path on stdout; everything else goes to stderr.
set -euo pipefail

CACHE_DIR=${UMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ums-find}
VEGETA_VERSION=v12.13.0
GO_VERSION=1.24.13
GOPROXY_URL=${GOPROXY_URL:-https://proxy.golang.org}

say() { echo "[bench-tools] $*" >&2; }


install_go() {  # the toolchain module zip: golang.org/toolchain@v0.0.1-go<version>.linux-<arch>
  local arch dest zip module
  case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) say "no Go toolchain for $(uname -m)"; exit 1 ;;
  esac
  dest=$CACHE_DIR/bench-tools/go$GO_VERSION
  module=v0.0.1-go$GO_VERSION.linux-$arch
  zip=$CACHE_DIR/bench-tools/go-$module.zip
  mkdir -p "$CACHE_DIR/bench-tools"
  say "downloading Go $GO_VERSION from $GOPROXY_URL (golang.org/toolchain@$module)"
  curl -fsSL --retry 3 -o "$zip.part" "$GOPROXY_URL/golang.org/toolchain/@v/$module.zip"
  mv "$zip.part" "$zip"
  rm -rf "$dest.part"
  # The zip holds golang.org/toolchain@<module>/...: strip that prefix; zips carry no modes, so
  # make the binaries executable (as the go command does when it unpacks a toolchain).
  python3 - "$zip" "$dest.part" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        parts = info.filename.split("/", 2)  # golang.org, toolchain@<module>, the path
        name = parts[2] if len(parts) == 3 else ""
        if not name or name.endswith("/"):
            continue
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as r, open(target, "wb") as w:
            w.write(r.read())
        if name.startswith("bin/") or name.startswith("pkg/tool/"):
            os.chmod(target, 0o755)
PY
  rm -rf "$dest"
  mv "$dest.part" "$dest"
  rm -f "$zip"
  echo "$dest/bin/go"
}

toolchain() {  # the pinned Go, installed once
  local go=$CACHE_DIR/bench-tools/go$GO_VERSION/bin/go
  [ -x "$go" ] || go=$(install_go)
  echo "$go"
}

if [ "${1:-}" = floor ]; then
  src=$(cd "$(dirname "$0")/peers/floor" && pwd)
  floor=$CACHE_DIR/bench-tools/floor-$( (cat "$src/main.go" "$src/go.mod"; echo "$GO_VERSION") | sha256sum | cut -c1-12)/floor
  if [ ! -x "$floor" ]; then
    go=$(toolchain)
    say "building the floor server with $("$go" env GOVERSION)"
    mkdir -p "$(dirname "$floor")"
    work=$CACHE_DIR/bench-tools/gopath
    (cd "$src" && GOPATH=$work GOMODCACHE=$work/mod GOCACHE=$work/build GOTOOLCHAIN=local CGO_ENABLED=0 \
      "$go" build -o "$floor.part" . >&2)
    mv "$floor.part" "$floor"
  fi
  echo "$floor"
  exit 0
fi

vegeta=$CACHE_DIR/bench-tools/vegeta-$VEGETA_VERSION/vegeta
if [ -x "$vegeta" ]; then
  echo "$vegeta"
  exit 0
fi
go=$(toolchain)
say "building vegeta $VEGETA_VERSION with $("$go" env GOVERSION)"
work=$CACHE_DIR/bench-tools/gopath
mkdir -p "$(dirname "$vegeta")"
GOPATH=$work GOMODCACHE=$work/mod GOCACHE=$work/build GOFLAGS=-modcacherw GOTOOLCHAIN=local \
  GOPROXY=$GOPROXY_URL GOBIN=$(dirname "$vegeta") CGO_ENABLED=0 \
  "$go" install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" >&2
[ -x "$vegeta" ] || { say "vegeta missing after go install"; exit 1; }
echo "$vegeta"
