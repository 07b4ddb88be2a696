#!/usr/bin/env bash
# A local Docker engine and Compose v2 for the deployment runs, from Debian packages and the
# Go module proxy (no image registry needed), cached under $UMS_CACHE_DIR and idempotent.
#
#   services/docker.sh install   apt: docker.io, containerd, runc, debootstrap; compose built once
#   services/docker.sh up        containerd (CRI on, shared with services/k8s.sh) and dockerd, if not running
#   services/docker.sh down      stop what `up` started (and nothing else)
#   services/docker.sh images    base images, Kafka/ZooKeeper/MariaDB/Redis stand-ins (docker/build-images.sh)
#   services/docker.sh compose ARGS...   docker compose with the stand-in override (docker-compose.local.yml)
#   services/docker.sh status
#
# Pids, logs and the containerd config live in $UMS_DEPLOY_RUN_DIR/docker (default .run/docker).
set -euo pipefail
LOG_TAG=docker
# shellcheck source=services/deploy-lib.sh
. "$(dirname "$0")/deploy-lib.sh"

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
COMPOSE_BIN=$DEPLOY_BIN/docker-compose-$COMPOSE_VERSION
D=$RUN_DIR/docker
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

build_compose() {  # `go install .../cmd@v` is refused (exclude directives in its go.mod): build the source
  [ -x "$COMPOSE_BIN" ] && return
  local src tmp t0=$SECONDS
  log "building docker compose $COMPOSE_VERSION from the Go module proxy (about 2 minutes)"
  src=$(module_dir "github.com/docker/compose/v2@$COMPOSE_VERSION")
  [ -n "$src" ] || die "could not download github.com/docker/compose/v2@$COMPOSE_VERSION"
  tmp=$(mktemp -d "$CACHE_DIR/.compose-src.XXXXXX")
  cp -r "$src/." "$tmp" && chmod -R u+w "$tmp"
  mkdir -p "$DEPLOY_BIN"
  (cd "$tmp" && go_env build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
    -o "$COMPOSE_BIN.tmp" ./cmd) >&2 || { rm -rf "$tmp"; die "building compose failed"; }
  rm -rf "$tmp"
  mv "$COMPOSE_BIN.tmp" "$COMPOSE_BIN"
  log "compose built in $((SECONDS - t0))s"
}

build_compose_and_prune() { build_compose; go_prune; }  # one lock with services/k8s-build.sh

install() {
  apt_install docker.io containerd runc debootstrap iptables ca-certificates
  locked go build_compose_and_prune
  mkdir -p "$PLUGIN_DIR"
  ln -sfn "$COMPOSE_BIN" "$PLUGIN_DIR/docker-compose"
}

containerd_config() {  # CRI on (kubelet uses it), the local pause image, no oom_score_adj below ours
  mkdir -p "$D"
  cat >"$D/containerd.toml" <<'TOML'
version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "local/pause:3.10"
    # root without CAP_SYS_RESOURCE cannot set the sandbox's -998: clamp to containerd's own
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
TOML
}

engine_up() {
  install
  if docker info >/dev/null 2>&1; then log "docker engine already answers"; return; fi
  mkdir -p "$D"
  if ! alive "$D/containerd.pid"; then
    [ -S /run/containerd/containerd.sock ] && pgrep -x containerd >/dev/null \
      && die "a containerd this script did not start is running; stop it first"
    containerd_config
    log "starting containerd"
    nohup containerd --config "$D/containerd.toml" >"$D/containerd.log" 2>&1 </dev/null &
    echo $! >"$D/containerd.pid"
    wait_until 30 containerd test -S /run/containerd/containerd.sock
  fi
  log "starting dockerd"
  nohup dockerd --containerd=/run/containerd/containerd.sock >"$D/dockerd.log" 2>&1 </dev/null &
  echo $! >"$D/dockerd.pid"
  wait_until 60 dockerd docker info
  log "docker engine up: $(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}}')"
}

engine_down() {
  stop_pidfile dockerd "$D/dockerd.pid"
  stop_pidfile containerd "$D/containerd.pid"
}

compose() {
  cd "$ROOT"
  [ -f .env ] || { log "no .env: using docker/compose.env.example's example passwords"; cp docker/compose.env.example .env; }
  docker compose -f docker-compose.yml -f docker-compose.local.yml "$@"
}

case ${1:-} in
  install) install ;;
  up) engine_up ;;
  down) engine_down ;;
  images) engine_up; "$ROOT/docker/build-images.sh" "${@:2}" ;;
  compose) shift; compose "$@" ;;
  status) docker info --format 'docker {{.ServerVersion}}: {{.ContainersRunning}} containers running' 2>/dev/null \
            || echo "docker: not running" ;;
  *) echo "usage: $0 install|up|down|images|compose ARGS...|status" >&2; exit 2 ;;
esac
