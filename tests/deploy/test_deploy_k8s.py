"""Offline checks of the Kubernetes manifests (k8s/base and k8s/overlays/dev).

No cluster here. Validators:
- `kubectl kustomize` renders the base and every overlay;
- kubernetes-validate (PyPI) validates every rendered object strictly (unknown fields are
  errors) against the schemas of pinned Kubernetes versions;
- the Pod Security "restricted" profile on every pod template, and kube-linter's default
  checks written out (latest tag, resources, dangling Services/HPAs/NetworkPolicies,
  mismatching selectors, probe ports, service accounts, ...), since kube-linter itself is
  refused by the Go module proxy; checkov runs too (test_deploy_checkov.py).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from adapters.settings import Settings
from tests.helpers import check_cli, kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = ["base", "overlays/dev"]
# The oldest Kubernetes we support and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
APP_UID = 10001
# The ports of the existing servers ums-find talks to (NetworkPolicy egress).
KAFKA, REDIS, MYSQL, DNS = 9092, 6379, 3306, 53
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

Objects = list[dict[str, Any]]


def render(kustomization: str) -> Objects:
    result = kustomize(kustomization)  # on a copy, with placeholder secret files (never committed)
    assert result.returncode == 0, f"kubectl kustomize k8s/{kustomization} failed:\n{result.stderr}"
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert objects, f"k8s/{kustomization} renders nothing"
    return objects


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> Objects:
    return render(request.param)


@pytest.fixture(scope="module")
def base() -> Objects:
    return render("base")


@pytest.fixture(scope="module")
def dev() -> Objects:
    return render("overlays/dev")


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind/name, pod template metadata, pod spec) of every workload."""
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            template = obj["spec"]["template"]
        elif kind == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            template = obj
        else:
            continue
        yield f"{kind}/{name}", template.get("metadata", {}), template["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def package_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]["version"]


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and (match.group(2) in units or not match.group(2)), f"bad quantity {value!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def env_names(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


# --- render and schema ------------------------------------------------------------------------


def test_every_object_validates_strictly(rendered: Objects) -> None:
    failures = []
    for obj in rendered:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_rejects_an_unknown_field(base: Objects) -> None:
    deployment = one(base, "Deployment", "ums-find-api")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_the_base_has_every_part(base: Objects) -> None:
    expected = {
        ("ServiceAccount", "ums-find"),
        ("ConfigMap", "ums-find-config"),
        ("Deployment", "ums-find-consumer"),
        ("Deployment", "ums-find-api"),
        ("Service", "ums-find-api"),
        ("HorizontalPodAutoscaler", "ums-find-api"),
        ("PodDisruptionBudget", "ums-find-api"),
        ("PodDisruptionBudget", "ums-find-consumer"),
        ("NetworkPolicy", "ums-find-default-deny"),
        ("NetworkPolicy", "ums-find-api"),
        ("NetworkPolicy", "ums-find-consumer"),
        ("CronJob", "ums-find-replay"),
    }
    present = {(o["kind"], o["metadata"]["name"]) for o in base}
    assert expected <= present, f"missing: {sorted(expected - present)}"
    assert one(base, "HorizontalPodAutoscaler", "ums-find-api")["apiVersion"] == "autoscaling/v2"


def test_names_are_unique(rendered: Objects) -> None:
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered]
    assert len(keys) == len(set(keys))


# --- Pod Security "restricted" ----------------------------------------------------------------


def test_restricted_pod_security_on_every_pod(rendered: Objects) -> None:
    templates = list(pod_templates(rendered))
    assert len(templates) >= 3
    for where, _, spec in templates:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot"
        assert pod.get("runAsUser") == APP_UID and pod.get("runAsGroup") == APP_UID, f"{where}: uid/gid 10001"
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp"
        assert spec.get("automountServiceAccountToken") is False, f"{where}: no service account token"
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), f"{where}: {host}"
        assert not pod.get("sysctls"), f"{where}: no sysctls"
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"{where}: volume {volume['name']} of type {kinds}"


def test_restricted_security_context_on_every_container(rendered: Objects) -> None:
    for where, _, spec in pod_templates(rendered):
        for container in containers(spec):
            name = f"{where}/{container['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert context.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
            assert context.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
            assert context.get("runAsUser", APP_UID) == APP_UID, f"{name}: runAsUser"
            assert context.get("privileged", False) is False, f"{name}: privileged"
            assert context.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drop ALL"
            assert not context.get("capabilities", {}).get("add"), f"{name}: no added capabilities"
            assert context.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault", name
            assert context.get("procMount", "Default") == "Default", name
            for port in container.get("ports", []):
                assert "hostPort" not in port, f"{name}: hostPort"
                assert port["containerPort"] != 22, f"{name}: ssh port"


def test_writable_paths_are_emptydirs(rendered: Objects) -> None:
    """readOnlyRootFilesystem: /tmp, the health file and prometheus' multiprocess dir on emptyDirs."""
    for where, _, spec in pod_templates(rendered):
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            writable = {path for path, volume in mounts.items() if volume in empty_dirs}
            needed = {"/tmp"}
            env = env_names(container)
            if "UMS_HEARTBEAT_FILE" in env:
                needed.add(str(Path(env["UMS_HEARTBEAT_FILE"]["value"]).parent))
            if "PROMETHEUS_MULTIPROC_DIR" in env:
                needed.add(env["PROMETHEUS_MULTIPROC_DIR"]["value"])
            assert needed <= writable, f"{where}/{container['name']}: not writable: {sorted(needed - writable)}"
            for volume in spec.get("volumes", []):
                if "emptyDir" in volume:
                    assert volume["emptyDir"].get("sizeLimit"), f"{where}: emptyDir {volume['name']} needs a sizeLimit"


def test_resources_everywhere(rendered: Objects) -> None:
    for where, _, spec in pod_templates(rendered):
        for container in containers(spec):
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{where}/{container['name']}: {resource} request and limit"
                assert quantity(request) <= quantity(limit), f"{where}/{container['name']}: {resource} request > limit"


def test_images_are_pinned_and_never_latest(rendered: Objects) -> None:
    for where, _, spec in pod_templates(rendered):
        for container in containers(spec):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and "/" not in tag, f"{where}: {image} has no tag"
            assert tag != "latest", f"{where}: {image}"
            assert image.endswith(f"ums-find:{package_version()}"), f"{where}: {image} is not this release"
            assert container.get("imagePullPolicy") == "IfNotPresent", where


# --- the linter's checks -----------------------------------------------------------------------


def test_selectors_match_their_pods(rendered: Objects) -> None:
    pods = [(where, meta.get("labels", {})) for where, meta, _ in pod_templates(rendered)]
    for deployment in find(rendered, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert labels_match(selector, deployment["spec"]["template"]["metadata"]["labels"]), "mismatching selector"
        itself = f"Deployment/{deployment['metadata']['name']}"
        others = [w for w, labels in pods if labels_match(selector, labels) and w != itself]
        assert not others, f"{deployment['metadata']['name']}'s selector also matches {others}"
    for service in find(rendered, "Service"):
        assert any(labels_match(service["spec"]["selector"], labels) for _, labels in pods), "dangling Service"
    for pdb in find(rendered, "PodDisruptionBudget"):
        assert any(labels_match(pdb["spec"]["selector"]["matchLabels"], labels) for _, labels in pods), "dangling PDB"
    for policy in find(rendered, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert any(labels_match(selector, labels) for _, labels in pods), f"dangling {policy['metadata']['name']}"


def test_references_exist(rendered: Objects) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    for hpa in find(rendered, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in names, "dangling HorizontalPodAutoscaler"
    for where, _, spec in pod_templates(rendered):
        assert ("ServiceAccount", spec.get("serviceAccountName", "default")) in names, f"{where}: service account"
        for container in containers(spec):
            for source in container.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert (kind, source[key]["name"]) in names, f"{where}: {kind} {source[key]['name']}"
    for account in find(rendered, "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False


def test_probe_and_service_ports_exist(rendered: Objects) -> None:
    for where, _, spec in pod_templates(rendered):
        for container in spec["containers"]:
            ports = {p.get("name") for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])
            }
            for probe in PROBES:
                http = container.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in ports, f"{where}: {probe} port {http['port']}"
    for service in find(rendered, "Service"):
        pods = [s for _, m, s in pod_templates(rendered) if labels_match(service["spec"]["selector"], m["labels"])]
        for port in service["spec"]["ports"]:
            names = {p.get("name") for s in pods for c in s["containers"] for p in c.get("ports", [])}
            assert port["targetPort"] in names, f"Service port {port['port']}: no container port {port['targetPort']}"


def test_no_literal_secrets_in_env(rendered: Objects) -> None:
    for where, _, spec in pod_templates(rendered):
        for container in containers(spec):
            for name, env in env_names(container).items():
                if re.search(r"PASSWORD|SECRET|TOKEN|KEY$", name):
                    assert "value" not in env, f"{where}: {name} must come from a Secret"


def test_settings_in_configmap_and_passwords_in_generated_secrets(rendered: Objects) -> None:
    known = set(Settings.variables())
    config = one(rendered, "ConfigMap", "ums-find-config")["data"]
    assert set(config) <= known, f"unknown settings: {sorted(set(config) - known)}"
    assert not [k for k in config if "PASSWORD" in k], "passwords belong in the Secret"
    secrets = find(rendered, "Secret")
    assert {s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets} == {
        "ums-find-api",
        "ums-find-consumer",
        "ums-find-jobs",
    }, "one generated Secret per component (a hash suffix after the name)"
    for secret in secrets:
        assert set(secret["data"]) <= known and all("PASSWORD" in k for k in secret["data"])


def test_every_variable_is_read_by_something(rendered: Objects) -> None:
    gunicorn = set(re.findall(r"environ\.get\(\"(UMS_API_[A-Z_]+)\"", (ROOT / "api/gunicorn.conf.py").read_text()))
    known = set(Settings.variables()) | gunicorn | {"PROMETHEUS_MULTIPROC_DIR"}
    for where, _, spec in pod_templates(rendered):
        for container in containers(spec):
            unknown = set(env_names(container)) - known
            assert not unknown, f"{where}: {sorted(unknown)} are read by nothing"


# --- the consumer -----------------------------------------------------------------------------


def test_consumer_replicas_never_exceed_the_partitions(rendered: Objects) -> None:
    consumer = one(rendered, "Deployment", "ums-find-consumer")
    partitions = int(one(rendered, "ConfigMap", "ums-find-config")["data"]["UMS_TOPIC_PARTITIONS"])
    assert 1 <= consumer["spec"]["replicas"] <= partitions
    assert "partitions" in " ".join(consumer["metadata"].get("annotations", {}).values())
    assert "MUST NOT EXCEED THE TOPIC'S PARTITIONS" in (K8S / "base" / "consumer-deployment.yaml").read_text()
    # A surge pod would find every partition taken, never become ready, and stall the rollout.
    assert consumer["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert not find(rendered, "HorizontalPodAutoscaler", "ums-find-consumer"), "no autoscaling past partitions"


def test_every_ums_find_command_line_parses(rendered: Objects) -> None:
    seen = 0
    for _, _, spec in pod_templates(rendered):
        for container in containers(spec):
            assert "args" not in container, "the whole command line is in `command`"
            lines = [container.get("command", [])]
            lines += [container.get(p, {}).get("exec", {}).get("command", []) for p in PROBES]
            for line in lines:
                if line and line[0] == "ums-find":
                    check_cli(line)
                    seen += 1
    assert seen >= 5


def test_consumer_probes_use_the_cli_and_check_no_dependency(rendered: Objects) -> None:
    spec = one(rendered, "Deployment", "ums-find-consumer")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["ums-find", "consume"]
    live = container["livenessProbe"]["exec"]["command"]
    ready = container["readinessProbe"]["exec"]["command"]
    assert live[:3] == ["ums-find", "probe", "live"] and "--max-age" in live
    assert ready[:3] == ["ums-find", "probe", "ready"]
    assert container["startupProbe"]["exec"]["command"] == live
    assert "UMS_HEARTBEAT_FILE" in env_names(container)
    refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
    assert [r.rsplit("-", 1)[0] for r in refs] == ["ums-find-consumer"], "the consumer's own Secret only"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert str(port) == env_names(container)["UMS_METRICS_PORT"]["value"]


# --- the API ---------------------------------------------------------------------------------


def test_api_deployment_service_hpa_and_pdb(rendered: Objects) -> None:
    api = one(rendered, "Deployment", "ums-find-api")
    assert api["spec"]["replicas"] >= 2
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {container[p]["httpGet"]["port"] for p in PROBES} == {"ops"}, "probes on the ops port"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "ops": 9102}
    assert env_names(container)["UMS_API_BIND"]["value"].endswith(":8080")
    service = one(rendered, "Service", "ums-find-api")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    hpa = one(rendered, "HorizontalPodAutoscaler", "ums-find-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ums-find-api"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(rendered, "PodDisruptionBudget", "ums-find-api")
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a PDB that blocks every drain"
    consumer_pdb = one(rendered, "PodDisruptionBudget", "ums-find-consumer")
    assert consumer_pdb["spec"]["maxUnavailable"] >= 1


def test_workloads_spread_across_nodes(rendered: Objects) -> None:
    for deployment in find(rendered, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        spread = [c["topologyKey"] for c in spec.get("topologySpreadConstraints", [])]
        anti = spec.get("affinity", {}).get("podAntiAffinity")
        assert "kubernetes.io/hostname" in spread or anti, f"{deployment['metadata']['name']}: all on one node?"


# --- NetworkPolicy ----------------------------------------------------------------------------


def egress_ports(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for rule in policy["spec"].get("egress", []) for p in rule["ports"]}


def test_network_policies(rendered: Objects) -> None:
    policies = find(rendered, "NetworkPolicy")
    deny = one(rendered, "NetworkPolicy", "ums-find-default-deny")["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    for where, meta, _ in pod_templates(rendered):
        assert labels_match(deny["podSelector"]["matchLabels"], meta["labels"]), f"{where} escapes default deny"
        own = [
            p
            for p in policies
            if p["metadata"]["name"] != "ums-find-default-deny"
            and labels_match(p["spec"]["podSelector"]["matchLabels"], meta["labels"])
        ]
        assert own, f"{where}: no NetworkPolicy of its own"
        for policy in own:
            ports = egress_ports(policy)
            assert ports <= {("TCP", KAFKA), ("TCP", REDIS), ("TCP", MYSQL), ("UDP", DNS), ("TCP", DNS)}, ports
            assert {("UDP", DNS), ("TCP", DNS)} <= ports, f"{policy['metadata']['name']}: DNS over UDP and TCP"
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), "an egress rule without ports allows everything"
                assert rule.get("to"), "an egress rule without peers allows every address"
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), "an ingress rule without peers allows every address"
    api = one(rendered, "NetworkPolicy", "ums-find-api")["spec"]
    assert [(p["protocol"], p["port"]) for rule in api["ingress"] for p in rule["ports"]] == [
        ("TCP", 8080),
        ("TCP", 9102),
    ]
    assert egress_ports(one(rendered, "NetworkPolicy", "ums-find-api")) >= {("TCP", REDIS), ("TCP", MYSQL)}
    assert egress_ports(one(rendered, "NetworkPolicy", "ums-find-consumer")) >= {("TCP", KAFKA), ("TCP", REDIS)}


# --- the replay Job template --------------------------------------------------------------------


def test_replay_job_template_never_runs_by_itself(rendered: Objects) -> None:
    cron = one(rendered, "CronJob", "ums-find-replay")
    assert cron["spec"]["suspend"] is True, "a template, started by `kubectl create job --from=cronjob/...`"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["ums-find", "replay"]


# --- the dev overlay ------------------------------------------------------------------------------


def test_dev_overlay_namespace_enforces_restricted(dev: Objects) -> None:
    namespace = one(dev, "Namespace", "ums-find-dev")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in dev:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "ums-find-dev", f"{obj['kind']}/{obj['metadata']['name']}"


def test_local_overlay_is_dev_with_plaintext_links_only(dev: Objects) -> None:
    """k8s/overlays/local (services/k8s.sh, the stand-ins have no TLS or users) changes nothing else."""
    patch = yaml.safe_load((ROOT / "k8s" / "overlays" / "local" / "configmap-patch.yaml").read_text())["data"]
    assert set(patch) == {
        "UMS_KAFKA_SECURITY_PROTOCOL",
        "UMS_KAFKA_SASL_USERNAME",
        "UMS_REDIS_API_USER",
        "UMS_REDIS_CONSUMER_USER",
        "UMS_REDIS_ADMIN_USER",
        "UMS_MYSQL_SSL_CA",
    }
    local = render("overlays/local")
    assert one(local, "ConfigMap", "ums-find-config")["data"] == {
        **one(dev, "ConfigMap", "ums-find-config")["data"],
        **patch,
    }
    others = [o for o in local if o["kind"] != "ConfigMap"]
    assert others == [o for o in dev if o["kind"] != "ConfigMap"]
