"""schemathesis, every check, against /openapi.json on the running gunicorn server."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.generations import Generations
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.helpers import free_port

ST = str(Path(sys.executable).parent / "st")


def schemathesis(base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ST, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "100", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def krishna(store):
    """The documented example user, in this test's projection only."""
    user = User(Name("KrishnaMohan"), PhoneNumber(9731423166), datetime(2022, 9, 1, tzinfo=UTC))
    Generations(store).ensure()
    store.apply([UserAdded(user, Version(user.since_ms, 0, 0))], 1)
    return user


@pytest.mark.parametrize("redis_state", ["warm", "stopped"])
def test_schemathesis_finds_nothing(start_api, settings, krishna, redis_state):
    if redis_state == "stopped":
        settings = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    api = start_api(settings)
    result = schemathesis(api.base)
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
