#!/usr/bin/env bash
# Builds the images of the deployment runs with the local Docker engine, no registry needed:
#   base      local/debian:bookworm (debootstrap --variant=minbase, tarball cached in $UMS_CACHE_DIR/images)
#             local/python:3.11-bookworm (Debian's Python 3.11; stands in for python:3.11-slim-bookworm)
#   standins  ums-find-standin/{kafka:3.9.1,zookeeper:3.8.4,mysql:mariadb,redis:7,prometheus:2.42}: Kafka
#             and ZooKeeper from Maven Central jars (docker/kafka/pom.xml), MariaDB, Redis, Prometheus from Debian
#   app       ums-find:0.1.0 from the real Dockerfile, BASE_IMAGE=local/python:3.11-bookworm
#   all       the three, in that order (default)
# Called by `services/docker.sh images` and `make image`. Idempotent: the base is made once; the
# Python base and the stand-ins carry a label with the hash of what built them (context files,
# build arguments, local base images) and are not rebuilt while it matches; the app image is a
# `docker build` that reuses its layer cache.
set -euo pipefail
LOG_TAG=images
export DOCKER_BUILDKIT=0  # the engine's own builder: Debian's docker.io has no buildx
# shellcheck source=services/deploy-lib.sh
. "$(dirname "$0")/../services/deploy-lib.sh"

APP_IMAGE=${UMS_IMAGE:-ums-find:0.1.0}
PYTHON_BASE=local/python:3.11-bookworm
STANDIN_KAFKA=ums-find-standin/kafka:3.9.1
CTX=$RUN_DIR/docker/context

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

dbuild() {  # docker build -q ARGS..., quiet unless it fails
  mkdir -p "$CTX"
  docker build -q "$@" >/dev/null 2>"$CTX/build.err" || { cat "$CTX/build.err" >&2; die "docker build $* failed"; }
}

build_key() {  # build_key CONTEXT ARGS...: what builds the image (files, arguments, the images it starts from)
  local ids arg
  ids=$(docker image inspect -f '{{.Id}}' local/debian:bookworm)
  for arg in "${@:2}"; do  # a build argument naming a local image (KAFKA_IMAGE=...): that image's id
    has_image "${arg#*=}" && ids+=" $(docker image inspect -f '{{.Id}}' "${arg#*=}")"
  done
  { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf - . ; printf '%s\n' "${@:2}" "$ids"; } \
    | sha256sum | cut -c1-16
}

keyed_build() {  # keyed_build TAG CONTEXT ARGS...: skip the build when TAG was built from the same key
  local tag=$1 context=$2 key
  key=$(build_key "$context" "${@:3}")
  if [ "$(docker image inspect -f '{{index .Config.Labels "ums-find.build-key"}}' "$tag" 2>/dev/null)" = "$key" ]; then
    log "$tag: up to date (build key $key)"
    return
  fi
  dbuild -t "$tag" --label "ums-find.build-key=$key" "${@:3}" "$context"
}

base() {
  local tar=$CACHE_DIR/images/debian-bookworm-minbase.tar mirror rootfs
  if ! has_image local/debian:bookworm; then
    if [ ! -s "$tar" ]; then
      apt_install debootstrap
      # the Debian mirror this machine's apt already uses (one-line or deb822 sources)
      mirror=$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | awk '{print $2}' | head -1 || true)
      [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*"
      log "debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
      rootfs=$(mktemp -d "$CACHE_DIR/.rootfs.XXXXXX")
      debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      mkdir -p "$(dirname "$tar")"
      tar -C "$rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
      rm -rf "$rootfs" "$rootfs.log"
    fi
    log "docker import local/debian:bookworm"
    docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$tar" local/debian:bookworm >/dev/null
  fi
  rm -rf "$CTX/python" && mkdir -p "$CTX" && cp -r "$ROOT/docker/python" "$CTX/python"
  mkdir -p "$CTX/python/extra-ca"
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$CTX/python/extra-ca/" \; 2>/dev/null || true
  keyed_build "$PYTHON_BASE" "$CTX/python"
}

kafka_libs() {  # the Kafka 3.9.1 + ZooKeeper classpath, fetched once
  local libs  # keyed by the pom that lists them
  libs=$CACHE_DIR/kafka-3.9.1-$(sha256sum "$ROOT/docker/kafka/pom.xml" | cut -c1-12)/libs
  if [ ! -f "$libs/.complete" ]; then
    apt_install maven
    log "fetching Kafka 3.9.1 and ZooKeeper jars from Maven Central"
    rm -rf "$libs" && mkdir -p "$libs"
    mvn -q -B -f "$ROOT/docker/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$libs" >"$libs.mvn.log" 2>&1 \
      || { tail -20 "$libs.mvn.log" >&2; die "Maven Central did not serve the Kafka 3.9.1 jars"; }
    touch "$libs/.complete"
  fi
  echo "$libs"
}

standins() {
  local libs
  libs=$(kafka_libs)
  rm -rf "$CTX/kafka" && mkdir -p "$CTX" && cp -r "$ROOT/docker/kafka" "$CTX/kafka"
  cp -r "$libs" "$CTX/kafka/libs" && rm -f "$CTX/kafka/libs/.complete"
  log "building the stand-ins (Kafka, ZooKeeper, MySQL, Redis, Prometheus)"
  keyed_build "$STANDIN_KAFKA" "$CTX/kafka"
  keyed_build ums-find-standin/zookeeper:3.8.4 "$ROOT/docker/zookeeper" --build-arg KAFKA_IMAGE="$STANDIN_KAFKA"
  keyed_build ums-find-standin/mysql:mariadb "$ROOT/docker/mysql"
  keyed_build ums-find-standin/redis:7 "$ROOT/docker/redis"
  keyed_build ums-find-standin/prometheus:2.42 "$ROOT/docker/prometheus"
}

app() {
  has_image "$PYTHON_BASE" || base
  log "docker build $APP_IMAGE (BASE_IMAGE=$PYTHON_BASE)"
  dbuild -t "$APP_IMAGE" --build-arg BASE_IMAGE="$PYTHON_BASE" "$ROOT"
  log "$APP_IMAGE: $(docker image inspect -f '{{.Size}}' "$APP_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

case ${1:-all} in
  base) base ;;
  standins) has_image local/debian:bookworm || base; standins ;;
  app) app ;;
  all) base; standins; app ;;
  *) echo "usage: $0 base|standins|app|all" >&2; exit 2 ;;
esac
