"""The production image, run for real (issue 14, part 1): non-root, read-only root filesystem,
every entry point starts. Built by `make image` (docker/build-images.sh app) from the real
Dockerfile on the locally made Python base; its size is recorded in .run/deploy-results.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.deploy.running import DOCKER, IMAGE, ROOT, record, sh, timed
from tests.helpers import wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1800)]

MAX_IMAGE_MB = 400  # python:3.11-slim base ~125 MB, Debian's Python ~150 MB, the venv ~170 MB


@pytest.fixture(scope="module")
def image() -> str:
    sh(DOCKER, "up", timeout=900)
    record(image_build_s=timed(lambda: sh(ROOT / "docker" / "build-images.sh", "app", timeout=1800)))
    return IMAGE


def run(image: str, *args: str, check: bool = True) -> tuple[int, str]:
    proc = sh("docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp:mode=1777", image, *args, check=check)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def container(image: str) -> Iterator[list[str]]:
    """Detached containers started by a test, removed afterwards."""
    started: list[str] = []
    yield started
    for cid in started:
        sh("docker", "rm", "-f", cid, check=False)


def detached(started: list[str], image: str, options: list[str], command: tuple[str, ...] = ()) -> str:
    hardening = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
    cid = sh("docker", "run", "-d", *hardening, "--tmpfs", "/tmp:mode=1777", *options, image, *command).stdout.strip()
    started.append(cid)
    return cid


def ip_of(cid: str) -> str:
    return sh("docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()


def test_image_runs_as_non_root_with_a_small_footprint(image: str) -> None:
    config = json.loads(sh("docker", "image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    size_mb = config["Size"] / 1e6
    record(image_size_mb=round(size_mb))
    assert size_mb < MAX_IMAGE_MB, f"{image} is {size_mb:.0f} MB"
    _, out = run(image, "id", "-u")
    assert out.strip() == "10001"


def test_root_filesystem_is_read_only_and_the_venv_not_writable(image: str) -> None:
    code, out = run(image, "sh", "-c", "touch /opt/venv/x || touch /app/x", check=False)
    assert code != 0 and "Read-only file system" in out, out
    code, _ = run(image, "touch", "/tmp/ok")
    assert code == 0, "the tmpfs over /tmp is writable"


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["ums-find", "--help"], 0, "replay"),
        (["ums-find", "replay", "--help"], 0, "Usage: ums-find replay"),
        (["ums-find", "probe", "live"], 1, "no heartbeat file"),  # the probe runs and answers: no consumer here
        (["ums-find", "probe", "ready"], 1, "no heartbeat file"),
        (["gunicorn", "--version"], 0, "gunicorn"),
    ],
)
def test_one_shot_entry_points(image: str, argv: list[str], code: int, expected: str) -> None:
    got, out = run(image, *argv, check=False)
    assert (got, expected in out) == (code, True), out


def test_api_entry_point_serves_liveness_without_its_dependencies(image: str, container: list[str]) -> None:
    """The default command (gunicorn) starts read-only; on the ops port /livez 200, /readyz 503 (no Redis, no MySQL)."""
    env = {
        "PROMETHEUS_MULTIPROC_DIR": "/run/ums-find/prometheus",
        "UMS_API_WORKERS": "1",
        "UMS_API_OPS_BIND": "0.0.0.0:9080",
        "UMS_REDIS_URL": "redis://127.0.0.1:1/0",
        "UMS_MYSQL_HOST": "127.0.0.1",
        "UMS_MYSQL_PORT": "1",
    }
    options = ["--tmpfs", "/run/ums-find/prometheus:uid=10001,gid=10001"]
    cid = detached(container, image, options + [f"-e{k}={v}" for k, v in env.items()])
    base = f"http://{ip_of(cid)}:9080"  # the ops port: probes and metrics, never on 8080

    def live() -> requests.Response | None:
        try:
            return requests.get(f"{base}/livez", timeout=2)
        except requests.ConnectionError:
            return None

    assert wait_until(live, 60, "the API's /livez", interval=0.5).status_code == 200
    ready = requests.get(f"{base}/readyz", timeout=10)
    assert (ready.status_code, ready.json()["ready"]) == (503, False)


def test_consume_entry_point_keeps_its_heartbeat_while_kafka_is_away(image: str, container: list[str]) -> None:
    """`ums-find consume` starts read-only and waits for its servers; the liveness probe passes, readiness does not."""
    env = ["-eUMS_KAFKA_BOOTSTRAP=127.0.0.1:1", "-eUMS_REDIS_URL=redis://127.0.0.1:1/0"]
    cid = detached(container, image, env, ("ums-find", "consume"))

    def alive() -> bool:
        return sh("docker", "exec", cid, "ums-find", "probe", "live", check=False).returncode == 0

    wait_until(alive, 60, "the consumer's heartbeat", interval=1)
    assert sh("docker", "inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    assert sh("docker", "exec", cid, "ums-find", "probe", "ready", check=False).returncode == 1
