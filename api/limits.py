"""The request limits the app answers itself (414, 431 as problem+json), below gunicorn's own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_PATH = 4096
MAX_HEADER_BYTES = 16384


def header_bytes(environ: Mapping[str, Any]) -> int:
    """The request headers' size, from the WSGI environ (werkzeug's header view title-cases every name: slow)."""
    return sum(len(k) + len(v) for k, v in environ.items() if k.startswith("HTTP_"))
