#!/usr/bin/env bash
# Starts and stops the project's own processes for `make run`: the consumer and the API.
#
#   services/app.sh start   start both in the background (idempotent), wait until the API answers
#   services/app.sh stop    stop both (SIGTERM, then SIGKILL after 15 s)
#
# Expects the stack's environment (services/stack.sh env). Logs and pids in $UMS_APP_DIR (.run/app).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
APP_DIR=${UMS_APP_DIR:-$ROOT/.run/app}
BIN=${UMS_BIN:-$ROOT/.venv/bin}
API_PORT=${UMS_API_PORT:-8080}
export UMS_API_BIND=${UMS_API_BIND:-127.0.0.1:$API_PORT}
OPS_PORT=${UMS_API_OPS_PORT:-$((API_PORT + 1000))}  # /metrics, /livez, /readyz: not on the public port
export UMS_API_OPS_BIND=${UMS_API_OPS_BIND:-127.0.0.1:$OPS_PORT}
export UMS_HEARTBEAT_FILE=${UMS_HEARTBEAT_FILE:-$APP_DIR/consumer.heartbeat}
mkdir -p "$APP_DIR"

log() { printf '[app] %s\n' "$*" >&2; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_one() {  # start_one NAME COMMAND...
  local name=$1; shift
  if alive "$APP_DIR/$name.pid"; then log "$name already running (pid $(cat "$APP_DIR/$name.pid"))"; return; fi
  nohup "$@" </dev/null >>"$APP_DIR/$name.log" 2>&1 &
  echo $! >"$APP_DIR/$name.pid"
  log "$name started (pid $!, log $APP_DIR/$name.log)"
}

stop_one() {
  local pidfile=$APP_DIR/$1.pid
  alive "$pidfile" || { rm -f "$pidfile"; return; }
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "$1 stopped"
}

case ${1:-} in
  start)
    start_one consumer "$BIN/ums-find" consume
    start_one api "$BIN/gunicorn" -c "$ROOT/api/gunicorn.conf.py" --chdir "$ROOT"
    for _ in $(seq 150); do
      curl -fsS "http://${UMS_API_OPS_BIND}/livez" >/dev/null 2>&1 && exit 0
      alive "$APP_DIR/api.pid" || { tail -n 20 "$APP_DIR/api.log" >&2; log "the API exited"; exit 1; }
      sleep 0.2
    done
    log "the API did not answer on port $API_PORT within 30 s"; exit 1
    ;;
  stop) stop_one api; stop_one consumer ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
