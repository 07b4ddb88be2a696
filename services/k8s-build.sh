#!/usr/bin/env bash
# Builds the single-node Kubernetes of services/k8s.sh from the Go module proxy, once, into
# $UMS_CACHE_DIR (idempotent; a second run only checks the markers):
#   k8s-$K8S_VERSION/bin     kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl
#   coredns-$COREDNS_VERSION the cluster DNS server (the manifests name services by DNS)
#   pause/pause              the sandbox image's only file: a static sleeper (no registry for registry.k8s.io/pause)
#   bin/vegeta-$VEGETA_VERSION  the load generator of the rolling-restart test
#
#   services/k8s-build.sh all|k8s|coredns|pause|vegeta
set -euo pipefail
LOG_TAG=k8s-build
# shellcheck source=services/deploy-lib.sh
. "$(dirname "$0")/deploy-lib.sh"

K8S_VERSION=${K8S_VERSION:-v1.34.4}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
VEGETA_VERSION=${VEGETA_VERSION:-v12.12.0}
K8S_BIN=$CACHE_DIR/k8s-$K8S_VERSION/bin
COREDNS_BIN=$CACHE_DIR/coredns-$COREDNS_VERSION/coredns
PAUSE_BIN=$CACHE_DIR/pause/pause
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

build_k8s() {
  [ -f "$K8S_BIN/.complete" ] && return
  local t0=$SECONDS d=$CACHE_DIR/k8s-$K8S_VERSION/mod sver=v0.${K8S_VERSION#v1.} kmod minor c
  log "building Kubernetes $K8S_VERSION from the Go module proxy (about 6 minutes on 2 cores)"
  mkdir -p "$d" "$K8S_BIN"
  cd "$d"
  [ -f go.mod ] || go_env mod init local/k8sbuild >&2
  # k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) as v0.0.0 replaced by
  # ./staging paths: point each at its published v0.x release instead.
  kmod=$(go_env mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  [ -n "$kmod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  awk '/=> .\/staging/{print $1}' "$kmod" | while read -r m; do go_env mod edit -replace="$m=$m@$sver"; done
  {
    echo '//go:build tools'
    echo 'package tools'
    echo 'import ('
    for c in "${COMPONENTS[@]}"; do echo "  _ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ')'
  } >tools.go
  go_env get "k8s.io/kubernetes@$K8S_VERSION" >&2
  go_env mod tidy >&2
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for c in "${COMPONENTS[@]}"; do
    log "go build $c"
    go_env build -trimpath -tags tools -o "$K8S_BIN/$c" -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/$c" >&2
  done
  touch "$K8S_BIN/.complete"
  log "Kubernetes built in $((SECONDS - t0))s"
}

build_coredns() {  # its go.mod has replace directives too: build the module source
  [ -x "$COREDNS_BIN" ] && return
  local t0=$SECONDS src tmp
  log "building CoreDNS $COREDNS_VERSION (about 2 minutes)"
  src=$(module_dir "github.com/coredns/coredns@$COREDNS_VERSION")
  [ -n "$src" ] || die "could not download coredns@$COREDNS_VERSION"
  mkdir -p "$(dirname "$COREDNS_BIN")"
  tmp=$(mktemp -d "$CACHE_DIR/.coredns-src.XXXXXX")
  cp -r "$src/." "$tmp" && chmod -R u+w "$tmp"
  (cd "$tmp" && go_env build -trimpath -ldflags "-s -w" -o "$COREDNS_BIN.tmp" .) >&2 \
    || { rm -rf "$tmp"; die "building CoreDNS failed"; }
  rm -rf "$tmp"
  mv "$COREDNS_BIN.tmp" "$COREDNS_BIN"
  log "CoreDNS built in $((SECONDS - t0))s"
}

build_pause() {  # sleeps until SIGTERM/SIGINT, as registry.k8s.io/pause does
  [ -x "$PAUSE_BIN" ] && return
  local d=$CACHE_DIR/pause/src
  mkdir -p "$d"
  cat >"$d/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
GO
  [ -f "$d/go.mod" ] || (cd "$d" && go_env mod init pause >&2)
  (cd "$d" && go_env build -trimpath -ldflags "-s -w" -o "$PAUSE_BIN" .) >&2 || die "building pause failed"
}

build_vegeta() {
  local target=$DEPLOY_BIN/vegeta-$VEGETA_VERSION tmp
  if [ ! -x "$target" ]; then
    mkdir -p "$DEPLOY_BIN"
    tmp=$(mktemp -d "$DEPLOY_BIN/.build-vegeta.XXXXXX")
    GOBIN=$tmp go_env install -trimpath "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" >&2 \
      || { rm -rf "$tmp"; die "could not build vegeta"; }
    mv "$tmp/vegeta" "$target"
    rm -rf "$tmp"
  fi
  ln -sfn "$(basename "$target")" "$DEPLOY_BIN/vegeta"
}

# Go builds take one lock ("go"): the caches they share are pruned once the binaries exist
# (UMS_KEEP_GO_CACHE=1 keeps them).
build_one() { "$1"; go_prune; }
build_all() { build_pause; build_vegeta; build_k8s; build_coredns; go_prune; }

case ${1:-all} in
  all) locked go build_all ;;
  k8s) locked go build_one build_k8s ;;
  coredns) locked go build_one build_coredns ;;
  pause) locked go build_one build_pause ;;
  vegeta) locked go build_one build_vegeta ;;
  paths) echo "K8S_BIN=$K8S_BIN COREDNS_BIN=$COREDNS_BIN COREDNS_VERSION=$COREDNS_VERSION PAUSE_BIN=$PAUSE_BIN"
         echo "VEGETA_BIN=$DEPLOY_BIN/vegeta-$VEGETA_VERSION" ;;
  *) echo "usage: $0 all|k8s|coredns|pause|vegeta|paths" >&2; exit 2 ;;
esac
