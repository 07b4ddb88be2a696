#!/usr/bin/env bash
# CI's deployment part (`make ci-deploy`; .ci/run runs it after `make test`): the Docker engine, the
# images (local base, stand-ins, ums-find:0.1.0), then the image and the compose stack tested for
# real (tests/deploy/test_image_run.py and tests/deploy/compose/).
# Every step has a time limit; whatever happens, the trap takes the stack down and stops the
# engine if this script started it, so nothing is left running. Caches: $UMS_CACHE_DIR
# (default ~/.cache/ums-find), so a second run on the same machine is warm.
set -euo pipefail
LOG_TAG=ci-deploy
# shellcheck source=services/deploy-lib.sh
. "$(dirname "$0")/deploy-lib.sh"
cd "$ROOT"

ENGINE_LIMIT=${UMS_CI_ENGINE_TIMEOUT:-1800}  # apt + compose built from the module proxy, cold
IMAGES_LIMIT=${UMS_CI_IMAGES_TIMEOUT:-1800}  # debootstrap, Maven Central, docker builds, cold
TESTS_LIMIT=${UMS_CI_TESTS_TIMEOUT:-1200}
PUBLISHED_PORTS=(8080 29092)                 # what the compose stack publishes on 127.0.0.1

engine_was_up=0
docker info >/dev/null 2>&1 && engine_was_up=1
t0=$SECONDS

teardown() {
  local rc=$?
  trap - EXIT
  log "teardown: compose down"
  timeout 300 services/docker.sh compose down --volumes --remove-orphans >/dev/null 2>&1 || log "compose down failed"
  if [ "$engine_was_up" = 0 ]; then
    timeout 120 services/docker.sh down || log "stopping the engine failed"
  fi
  if docker info >/dev/null 2>&1 && [ -n "$(docker ps -q)" ]; then
    log "containers still running:"; docker ps >&2; [ "$rc" = 0 ] && rc=1
  else
    log "nothing left running"
  fi
  log "total $((SECONDS - t0)) s, exit $rc"
  exit "$rc"
}
trap teardown EXIT

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log its duration
  local name=$1 limit=$2 s=$SECONDS; shift 2
  log "$name (limit ${limit} s)"
  timeout --kill-after=30 "$limit" "$@" || die "$name failed or timed out (exit $?)"
  log "$name: $((SECONDS - s)) s"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in "${PUBLISHED_PORTS[@]}"; do
  port_taken "$port" && die "127.0.0.1:$port is taken (a \`make run\` API?): the compose stack publishes it"
done
step "docker engine" "$ENGINE_LIMIT" services/docker.sh up
step "images" "$IMAGES_LIMIT" services/docker.sh images
step "image and compose tests" "$TESTS_LIMIT" .venv/bin/pytest -m deploy -p no:cacheprovider \
  tests/deploy/test_image_run.py tests/deploy/compose
