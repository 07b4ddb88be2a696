#!/usr/bin/env bash
# A MySQL outage's cost per request, A/B in one run: adapters/mysql.py at REV
# against the working tree's, three alternating rounds. 16 readers ask for names nobody has
# (every request connects to MySQL, is refused, answers 503) against 2 workers x 8 threads,
# admission control off, MariaDB stopped. Prints answers/s, p50/p99 and the API's CPU per
# request. The file is swapped in place: the editable install wins over PYTHONPATH in gunicorn.
# Run inside the stack: services/stack.sh with -- bash bench/mysql_outage.sh [REV]
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bench/mysql_outage.sh REV (a commit before the change, e.g. 669b51d)}
mine=$(mktemp)
cp adapters/mysql.py "$mine"
trap 'cp "$mine" adapters/mysql.py; rm -f "$mine"' EXIT
for round in 1 2 3; do
  for variant in "$REV" working-tree; do
    if [ "$variant" = working-tree ]; then cp "$mine" adapters/mysql.py; else git show "$REV:adapters/mysql.py" >adapters/mysql.py; fi
    UMS_API_BIND=127.0.0.1:18123 UMS_API_OPS_BIND=127.0.0.1:19123 UMS_API_WORKERS=2 UMS_API_THREADS=8 \
      UMS_API_QUEUE_TARGET_MS=0 UMS_API_REQUEST_DEADLINE_MS=0 \
      .venv/bin/gunicorn -c api/gunicorn.conf.py >/dev/null 2>&1 &
    api=$!
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18123/user/Warm%20Up%20Now && break; sleep 0.2; done
    services/stack.sh stop mariadb >/dev/null
    .venv/bin/python -m bench.mysql_outage "round $round, $variant" "$api"
    services/stack.sh up >/dev/null 2>&1
    kill "$api"; wait "$api" || true
  done
done
