"""Processes for e2e tests: gunicorn serving the API and `ums-find consume`, each with its own log."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import env_of, free_port, wait_until
from ums_find.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return requests.get(self.base + path, timeout=10, **kwargs)


def _stop(proc: subprocess.Popen[bytes], log: Path, name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    assert code == 0, f"{name} exited with {code}:\n" + log.read_text(errors="replace")[-3000:]


@pytest.fixture
def start_api(settings, tmp_path):
    """Factory: start gunicorn with the app for `settings` (plus env overrides); stopped at teardown."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(custom: Settings | None = None, **env: str) -> Server:
        port = free_port()
        log = tmp_path / f"api{len(started)}.log"
        environment = env_of(
            custom or settings,
            **{"UMS_API_BIND": f"127.0.0.1:{port}", "UMS_API_WORKERS": "2", "UMS_LOG_JSON": "false", **env},
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"],
                env=environment,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, log))
        server = Server(f"http://127.0.0.1:{port}", proc, log)

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return server.get("/livez").status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, 30, "the API to answer")
        return server

    yield start
    for proc, log in started:
        _stop(proc, log, "gunicorn")


@pytest.fixture
def api(start_api) -> Server:
    return start_api()


@pytest.fixture
def consumer_process(settings, tmp_path):
    log = tmp_path / "consumer.log"
    env = env_of(settings, UMS_LOG_JSON="false", UMS_METRICS_PORT="0")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "ums-find"), "consume"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    yield proc
    _stop(proc, log, "consumer")
