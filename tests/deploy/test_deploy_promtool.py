"""promtool on the alert rules (issue 24): `promtool check rules` and `promtool test rules`.

promtool comes from Debian's prometheus package, which services/stack.sh installs (`make test`
runs it first). A missing promtool FAILS these tests: they are the only check that Prometheus
itself accepts the rules and that each alert fires and stays quiet where its unit tests say.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "observability" / "prometheus"
RULES = RULES_DIR / "ums-find-alerts.yaml"
RULE_TESTS = RULES_DIR / "ums-find-alerts.test.yaml"
COMPOSE_CONFIG = RULES_DIR / "prometheus-compose.yml"
NEVER = "vector(0) > 1"  # an expression that never returns a sample


def promtool(*args: str | Path, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: install Debian's prometheus package (services/stack.sh up does)"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def alert_names() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"]]


def test_prometheus_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_accepts_the_compose_configuration() -> None:
    result = promtool("check", "config", COMPOSE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def silenced(rules: dict[str, Any], alert: str) -> dict[str, Any]:
    """The rules with `alert`'s expression replaced by one that never fires."""
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = NEVER
    return rules


def groups_checking(alert: str) -> dict[str, Any]:
    """The unit tests with only the groups that check `alert`.

    No rule reads another's state (no `ALERTS` series), so silencing one alert can only fail
    the groups that name it. Running just those keeps this check to ~0.1 s per alert, and to
    ~1.6 s for the alerts tested over a day. The whole file takes ~5.5 s and runs once, above.
    """
    suite = yaml.safe_load(RULE_TESTS.read_text())
    suite["tests"] = [
        group for group in suite["tests"] if any(case["alertname"] == alert for case in group["alert_rule_test"])
    ]
    assert suite["tests"], f"{alert} has no unit test"
    return suite


def test_no_rule_reads_another_alerts_state() -> None:
    """What `groups_checking` relies on."""
    assert "ALERTS" not in RULES.read_text()


@pytest.mark.parametrize("alert", alert_names())
def test_the_unit_tests_catch_an_alert_that_never_fires(alert: str, tmp_path: Path) -> None:
    """Each alert's firing case is really checked: with the alert silenced, promtool fails."""
    (tmp_path / RULES.name).write_text(yaml.safe_dump(silenced(yaml.safe_load(RULES.read_text()), alert)))
    (tmp_path / RULE_TESTS.name).write_text(yaml.safe_dump(groups_checking(alert)))
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, f"{alert}: the unit tests still pass with the alert silenced"
    assert alert in result.stdout + result.stderr
