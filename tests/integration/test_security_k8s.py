"""Offline: k8s/base ships no usable password and exposes nothing it should not."""

from __future__ import annotations

import subprocess

import yaml

from tests.helpers import ROOT, kustomize


def test_without_the_secret_files_kustomize_fails_naming_them() -> None:
    result = kustomize("base", secrets=False)
    assert result.returncode != 0
    assert "secrets/api.env" in result.stderr and "no such file" in result.stderr, result.stderr


def test_the_secret_files_are_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "k8s/base/secrets/api.env", "k8s/base/secrets/jobs.env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 0, "k8s/base/secrets/*.env must be git-ignored"


def test_the_public_service_exposes_no_operational_port() -> None:
    result = kustomize("base")
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    services = [o for o in objects if o["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["ums-find-api"]
    assert [(p["port"], p["targetPort"]) for p in services[0]["spec"]["ports"]] == [(8080, "http")]
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "ums-find-api")
    template = api["spec"]["template"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["UMS_API_OPS_BIND"].endswith(f":{ports['ops']}") and ports["ops"] != ports["http"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["ops"])
