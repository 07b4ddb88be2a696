"""The compose stack of the deployment runs: docker compose through services/docker.sh (the
stand-in override), its containers, and a crash of one of them.

The stack's Prometheus loads a copy of the alert rules in which UmsConsumerDown's `for` is
shortened from 5m to 10s (UMS_PROMETHEUS_RULES), so that a test sees it fire within a minute.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.running import DOCKER, ROOT, sh
from tests.helpers import wait_until

RULES = ROOT / "observability" / "prometheus" / "ums-find-alerts.yaml"
TEST_RULES = ROOT / ".run" / "compose" / "ums-find-alerts.yaml"
SHORTENED = {"UmsConsumerDown": "10s"}  # alert -> the `for` the compose tests load


def write_test_rules() -> Path:
    """The alert rules with the `for` of SHORTENED's alerts replaced (and nothing else)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in SHORTENED:
                rule["for"] = SHORTENED[rule["alert"]]
    TEST_RULES.parent.mkdir(parents=True, exist_ok=True)
    TEST_RULES.write_text(yaml.safe_dump(rules, sort_keys=False))
    return TEST_RULES


def compose(*args: str, timeout: float = 900, check: bool = True) -> str:
    env = {**os.environ, "UMS_PROMETHEUS_RULES": str(TEST_RULES)}
    return sh(DOCKER, "compose", *args, timeout=timeout, check=check, env=env).stdout


def services() -> dict[str, dict[str, Any]]:
    out = compose("ps", "--all", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["Service"]: row for row in rows}


def container_of(service: str) -> str:
    return compose("ps", "--all", "-q", service).strip()


def inspect(cid: str, template: str) -> str:
    return sh("docker", "inspect", "-f", template, cid).stdout.strip()


def address_of(service: str) -> str:
    """The container's address on the stack's network (reachable from this host)."""
    return inspect(container_of(service), "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")


def crash(service: str) -> int:
    """SIGKILL the service's main process (an OOM kill, a crash); return the restart count before."""
    cid = container_of(service)
    before = int(inspect(cid, "{{.RestartCount}}"))
    os.kill(int(inspect(cid, "{{.State.Pid}}")), signal.SIGKILL)
    return before


def healthy(service: str) -> bool:
    state = inspect(container_of(service), "{{.State.Status}} {{.State.Health.Status}}").split()
    return state == ["running", "healthy"]


def healthy_again(service: str, restarts_before: int, timeout: float = 120) -> None:
    cid = container_of(service)

    def back() -> bool:
        state = inspect(cid, "{{.RestartCount}} {{.State.Status}} {{.State.Health.Status}}").split()
        return int(state[0]) > restarts_before and state[1:] == ["running", "healthy"]

    wait_until(back, timeout, f"{service} restarted by its restart policy and healthy", interval=0.5)
