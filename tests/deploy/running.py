"""Helpers of the deployment runs (tests marked `deploy`, run by `make deploy-test`).

The runs use the project's own scripts: services/docker.sh (engine, compose with the stand-in
override), docker/build-images.sh, services/k8s.sh (the single-node cluster). Figures the
closing notes need (image size, time to healthy, failed requests, missing/stale) are written
to .run/deploy-results.json as they are measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters import clients
from adapters.clients import Role
from adapters.settings import Settings
from adapters.store import ProjectionStore
from tests.faults.rig import Diff, Model, compare, live_snapshot, produce, random_events
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "services" / "docker.sh"
K8S = ROOT / "services" / "k8s.sh"
RESULTS = ROOT / ".run" / "deploy-results.json"
IMAGE = os.environ.get("UMS_IMAGE", "ums-find:0.1.0")


def sh(
    *argv: str | Path, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows its output."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def record(**figures: Any) -> None:
    """Merge figures into .run/deploy-results.json (the closing notes read them from there)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(figures)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return round(time.monotonic() - started, 1)


def settings_for(kafka_bootstrap: str, redis_url: str) -> Settings:
    return Settings.from_env({}, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)


def store_for(settings: Settings) -> ProjectionStore:
    return clients.projection_store(settings, Role.ADMIN)


class Stream:
    """20k AddService events for 5k users (4 versions each, in random order) produced in the
    background at a fixed rate, with the model of what the broker acknowledged."""

    def __init__(self, settings: Settings, tag: str, count: int = 20_000, users: int = 5_000, rate: float = 2_000):
        self.settings, self.tag, self.model = settings, tag, Model()
        self.values = random_events(random.Random(tag), users, count, tag)
        self.producer = clients.kafka_producer(settings)
        self.thread = threading.Thread(
            target=produce, args=(self.producer, settings.topic, self.values, self.model), kwargs={"per_second": rate}
        )

    def start(self) -> Stream:
        self.thread.start()
        return self

    def wait_produced(self, fraction: float, timeout: float = 60) -> None:
        wanted = int(len(self.values) * fraction)
        wait_until(lambda: self.model.produced >= wanted, timeout, f"{wanted} events acknowledged", interval=0.05)

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the producer did not finish"
        assert self.model.failed == 0, f"{self.model.failed} events were not acknowledged"

    def diff(self, store: ProjectionStore) -> Diff:
        """Missing and stale among this stream's users; extra: keys of this tag the model lacks."""
        view = self.model.view()
        tag = self.tag.lower()
        mine = {key: held for key, held in live_snapshot(store).items() if key in view or tag in key.lower()}
        return compare(view, mine)

    def wait_whole(self, store: ProjectionStore, timeout: float = 180) -> Diff:
        """Poll until the projection holds this stream exactly; return the last diff either way."""
        last: list[Diff] = []

        def whole() -> bool:
            last[:] = [self.diff(store)]
            return last[0].ok

        with contextlib.suppress(AssertionError):  # the caller asserts on the diff, which names the counts
            wait_until(whole, timeout, "the projection to equal the model", interval=1)
        return last[0]
