#!/usr/bin/env bash
# Offline validators for the deployment files, built from the Go module proxy once into
# $UMS_CACHE_DIR/bin (default ~/.cache/ums-find, outside the checkout) and reused. Idempotent; prints the binary's path.
#
#   services/tools.sh compose-spec   compose-go's `compose-spec` loader: the library Docker
#                                    Compose itself uses to parse and validate a compose file
#   services/tools.sh checkov        checkov (PyPI), the Kubernetes security linter, in its own venv
#   services/tools.sh list           the tools this script knows, with their pinned versions
#
# Not here, and why (tests/integration/test_deploy_*.py do those checks themselves):
#   kube-linter  golang.stackrox.io/kube-linter is refused by the Go module proxy (403): checkov instead
#   promtool     Debian's prometheus package has it (services/stack.sh installs it): no build needed
#   hadolint     a Haskell binary, only downloadable from its release page
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${UMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ums-find}
BIN_DIR=${UMS_TOOLS_DIR:-$CACHE_DIR/bin}

declare -A MODULE=(
  [compose-spec]="github.com/compose-spec/compose-go/v2/cmd"
)
declare -A VERSION=(
  [compose-spec]="v2.16.2"
)

die() { printf 'tools.sh: %s\n' "$*" >&2; exit 1; }

go_bin() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
  else die "Go is not installed (needed to build the validators); install Go >= 1.24"
  fi
}

install_tool() {  # install_tool NAME -> prints the path of NAME's pinned binary
  local name=$1 module=${MODULE[$1]} version=${VERSION[$1]}
  local target=$BIN_DIR/$name-$version
  if [ ! -x "$target" ]; then
    mkdir -p "$BIN_DIR"
    exec 9>"$BIN_DIR/.$name.lock"
    flock 9
    if [ ! -x "$target" ]; then
      local go tmp
      go=$(go_bin)
      tmp=$(mktemp -d "$BIN_DIR/.build-$name.XXXXXX")
      # GOTOOLCHAIN=local: build with the machine's Go, never fetch another toolchain.
      if ! GOBIN=$tmp GOTOOLCHAIN=local GOFLAGS=-trimpath "$go" install "$module@$version" >&2; then
        rm -rf "$tmp"
        die "could not build $name ($module@$version)"
      fi
      mv "$tmp/$(basename "$module")" "$target"
      rm -rf "$tmp"
    fi
    exec 9>&-
  fi
  ln -sfn "$(basename "$target")" "$BIN_DIR/$name"
  echo "$target"
}

CHECKOV_VERSION=3.3.30

install_checkov() {  # checkov from PyPI, in a venv of its own: its pins conflict with ours
  local venv=$CACHE_DIR/checkov-$CHECKOV_VERSION
  if [ ! -x "$venv/bin/checkov" ]; then
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.checkov.lock"
    flock 9
    if [ ! -x "$venv/bin/checkov" ]; then
      rm -rf "$venv"
      python3.11 -m venv "$venv" >&2 || die "could not create a venv for checkov"
      "$venv/bin/pip" install -q "checkov==$CHECKOV_VERSION" >&2 || { rm -rf "$venv"; die "could not install checkov"; }
    fi
    exec 9>&-
  fi
  echo "$venv/bin/checkov"
}

case ${1:-} in
  list) for name in "${!MODULE[@]}"; do echo "$name ${MODULE[$name]}@${VERSION[$name]}"; done
        echo "checkov PyPI checkov==$CHECKOV_VERSION" ;;
  compose-spec) install_tool "$1" ;;
  checkov) install_checkov ;;
  *) echo "usage: $0 compose-spec|checkov|list" >&2; exit 2 ;;
esac
