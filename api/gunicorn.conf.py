"""gunicorn configuration of the API, driven by the environment (UMS_API_*).

Worker model (measured, see docs/decisions.md "API worker model"): gthread workers,
one per core plus one, a few threads each.
"""

import multiprocessing
import os
import shutil
import tempfile

wsgi_app = "api:create_app()"
bind = os.environ.get("UMS_API_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("UMS_API_WORKERS", str(multiprocessing.cpu_count() + 1)))
worker_class = os.environ.get("UMS_API_WORKER_CLASS", "gthread")
threads = int(os.environ.get("UMS_API_THREADS", "4"))
# A request needs at most the Redis and MySQL timeouts (under a second); 30 s means a hang.
timeout = int(os.environ.get("UMS_API_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("UMS_API_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("UMS_API_KEEPALIVE", "5"))
# Recycle workers now and then (leaks, fragmentation); the jitter keeps them from restarting together.
max_requests = int(os.environ.get("UMS_API_MAX_REQUESTS", "20000"))
max_requests_jitter = int(os.environ.get("UMS_API_MAX_REQUESTS_JITTER", "2000"))
# The app itself answers 414/431 (problem+json) past 16 KB, so gunicorn's own limits sit
# above that: 0 lets gunicorn read a request line of up to 1 MB; a header up to 32 KB.
limit_request_line = int(os.environ.get("UMS_API_LIMIT_REQUEST_LINE", "0"))
limit_request_fields = int(os.environ.get("UMS_API_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("UMS_API_LIMIT_REQUEST_FIELD_SIZE", "32768"))
accesslog = os.environ.get("UMS_API_ACCESS_LOG", "-")
logger_class = "api.accesslog.JsonAccessLogger"
errorlog = "-"
loglevel = os.environ.get("UMS_LOG_LEVEL", "info").lower()

# prometheus_client multiprocess mode: every worker writes its samples into this
# directory and /metrics merges them, so a scrape sees all workers.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ums-find-metrics-")
    _owned_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _owned_metrics_dir = ""


def on_starting(server):  # type: ignore[no-untyped-def]
    # A directory given from outside (a Kubernetes emptyDir) survives a container restart:
    # samples of the previous server's workers must not be counted again.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
