# syntax=docker/dockerfile:1
# ums-find: ONE image for every entry point.
#   API (default):  gunicorn -c /etc/ums-find/gunicorn.conf.py
#   consumer:       ums-find consume
#   one-shots:      ums-find topics | seed | replay | reconcile | backfill --from-mysql
#   probes:         ums-find probe live | probe ready
# Build:  docker build -t ums-find:0.1.0 .
#   Where no registry is reachable, `make image` passes a locally made base instead:
#   --build-arg BASE_IMAGE=local/python:3.11-bookworm (docker/build-images.sh, docs/deploy.md).
# Checked offline by tests/deploy/test_deploy_image.py and run by tests/deploy/test_image_run.py.

ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: a virtualenv with the package and its pinned dependencies -------------
FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml setup.cfg README.md constraints.txt ./
COPY domain/ domain/
COPY consumer/ consumer/
COPY api/ api/
COPY adapters/ adapters/
COPY devtools/ devtools/
COPY ums_find/ ums_find/

# Every dependency has a wheel for this platform, so no compiler is needed even here.
# PyMySQL[rsa] (cryptography, pinned in constraints.txt) lets the driver log in to MySQL 8
# with its default caching_sha2_password plugin over a plain connection.
RUN pip install --prefer-binary -c constraints.txt . "PyMySQL[rsa]" \
 && pip check \
 && ums-find --help >/dev/null

# ---- runtime: the venv on the same slim base, no build tools, non-root --------------
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ums-find" \
      org.opencontainers.image.description="FindService read model: Kafka consumer and Flask API (one image)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# uid/gid 10001: the Kubernetes manifests run as this user (runAsUser 10001).
# /run/ums-find/{health,prometheus}: writable dirs for the consumer's health file and the
# API's prometheus multiprocess files (emptyDirs over them under readOnlyRootFilesystem).
RUN groupadd --system --gid 10001 ums \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ums \
 && mkdir -p /run/ums-find/health /run/ums-find/prometheus \
 && chown -R 10001:10001 /run/ums-find

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/api/gunicorn.conf.py /etc/ums-find/gunicorn.conf.py

WORKDIR /app
USER 10001:10001

# 8080: the API; 9102: the consumer's Prometheus metrics (UMS_METRICS_PORT).
EXPOSE 8080 9102

CMD ["gunicorn", "-c", "/etc/ums-find/gunicorn.conf.py"]
