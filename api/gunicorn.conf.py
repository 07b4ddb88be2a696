"""gunicorn configuration for the API, driven by the environment (UMS_API_*)."""

import multiprocessing
import os

wsgi_app = "api:create_app()"
bind = os.environ.get("UMS_API_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("UMS_API_WORKERS", str(max(2, multiprocessing.cpu_count()))))
worker_class = os.environ.get("UMS_API_WORKER_CLASS", "gthread")
threads = int(os.environ.get("UMS_API_THREADS", "4"))
# A request never needs more than Redis + MySQL timeouts (about 2 s); 30 s is a hang.
timeout = int(os.environ.get("UMS_API_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("UMS_API_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("UMS_API_KEEPALIVE", "5"))
max_requests = int(os.environ.get("UMS_API_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("UMS_API_MAX_REQUESTS_JITTER", "1000"))
limit_request_line = int(os.environ.get("UMS_API_LIMIT_REQUEST_LINE", "4094"))
limit_request_fields = int(os.environ.get("UMS_API_LIMIT_REQUEST_FIELDS", "50"))
limit_request_field_size = int(os.environ.get("UMS_API_LIMIT_REQUEST_FIELD_SIZE", "8190"))
accesslog = os.environ.get("UMS_API_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("UMS_LOG_LEVEL", "info").lower()
