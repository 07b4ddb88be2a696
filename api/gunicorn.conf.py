"""gunicorn configuration of the API, driven by the environment (UMS_API_*).

Worker model (measured, see docs/decisions.md "API worker model" and "Tail latency below
saturation"): gthread workers, one per usable core, a few threads each.
"""

import os
import shutil
import tempfile

from adapters.settings import Settings

# prometheus_client multiprocess mode: every worker writes its samples into this
# directory and /metrics merges them, so a scrape sees all workers.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ums-find-metrics-")
    _owned_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _owned_metrics_dir = ""

# An entry point: the one settings object, built from the environment (UMS_API_* and the rest).
_settings = Settings.from_env()
wsgi_app = "api:create_app()"
# The public port (the API, its OpenAPI document) and the operational one (/metrics, /livez,
# /readyz), which the public Service does not expose; the app answers each on its own port.
bind = [_settings.api_bind, _settings.ops_bind]
# Imported only now: `api` imports prometheus_client, which picks its multiprocess mode at import
# from PROMETHEUS_MULTIPROC_DIR (set above).
from api.runtime import usable_cpus  # noqa: E402

# Two processes on one core queue each other's requests behind the scheduler's time slices:
# p99 at 1,000 req/s went from 4.5 ms (one worker) to 70 ms (three) on one core.
workers = _settings.api_workers or usable_cpus()
# gthread with the queue stamps admission control reads (api/worker.py); another class runs as is,
# its requests measured from X-Request-Start only.
worker_class = (
    "api.worker.QueueStampingWorker" if _settings.api_worker_class == "gthread" else _settings.api_worker_class
)
threads = _settings.api_threads
timeout = _settings.api_timeout
graceful_timeout = _settings.api_graceful_timeout
keepalive = _settings.api_keepalive
max_requests = _settings.api_max_requests
max_requests_jitter = _settings.api_max_requests_jitter
# Never 0 (unlimited): Settings refuses it.
limit_request_line = _settings.api_limit_request_line
limit_request_fields = _settings.api_limit_request_fields
limit_request_field_size = _settings.api_limit_request_field_size
accesslog = _settings.api_access_log
# gunicorn 25+ opens a management socket (gunicornc: worker counts, reload, shutdown) under $HOME by
# default. Nothing here uses it; a read-only root filesystem cannot hold it, and servers started side
# by side on one host (the tests) took the one path from each other.
control_socket_disable = True
logger_class = "api.accesslog.JsonAccessLogger"
errorlog = "-"
loglevel = _settings.log_level.lower()


def on_starting(server):  # type: ignore[no-untyped-def]
    # A directory given from outside (a Kubernetes emptyDir) survives a container restart:
    # samples of the previous server's workers must not be counted again.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from adapters import logs

    # The app's own loggers (api.*, adapters.*), as UMS_LOG_LEVEL and UMS_LOG_JSON say: gunicorn sets
    # up only its own, so without this their warnings came out bare and their INFO lines not at all.
    logs.configure(_settings.log_level, _settings.log_json)
    # Per process: the interval is the interpreter's, and each worker is its own interpreter.
    from api.runtime import apply_switch_interval

    apply_switch_interval(_settings)
    worker.pool_nice = _settings.api_pool_nice  # read when the worker makes its thread pool
    worker.header_timeout_s = _settings.api_header_timeout_s  # read when it loads the app


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # After the app is loaded: what boot built is never garbage; keep full collections off it.
    from api.runtime import freeze_boot_objects

    freeze_boot_objects()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
