"""The compose stack, up once for the compose tests of this package (marker deploy) and down after
them, before any other deployment run (the Kubernetes node) starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.settings import Settings
from tests.deploy.compose.composerun import address_of, compose, write_test_rules
from tests.deploy.running import record, settings_for, timed


@pytest.fixture(scope="package")
def compose_stack() -> Iterator[Settings]:
    """`compose up --wait` from nothing; settings that reach its Kafka and Redis; `down` after."""
    write_test_rules()
    compose("down", "--volumes", "--remove-orphans")
    record(compose_up_to_healthy_s=timed(lambda: compose("up", "-d", "--wait", timeout=900)))
    yield settings_for("127.0.0.1:29092", f"redis://{address_of('redis')}:6379/0")
    compose("down", "--volumes", "--remove-orphans", check=False)
