"""The manifests on a real Kubernetes node (issue 14, parts 3 and 4): services/k8s.sh brings up
the node, the stand-ins (k8s/overlays/local-deps) and ums-find from k8s/overlays/dev as shipped,
in a namespace that enforces the restricted Pod Security Standard.

From this host the tests reach the API through its Service's cluster IP (kube-proxy), Redis
through its Service, and Kafka through the stand-in's second listener on the pod's address.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from adapters import clients
from adapters.settings import Settings
from devtools.addservice import AddService
from domain import Name, PhoneNumber, User
from tests.deploy.running import K8S, ROOT, Stream, record, settings_for, sh, store_for
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(3600)]

NS = "ums-find-dev"
LOAD_RATE, LOAD_SECONDS = 200, 60


def kubectl(*args: str, check: bool = True, timeout: float = 600, stdin: str | None = None) -> str:
    if stdin is None:
        return sh(K8S, "kubectl", *args, check=check, timeout=timeout).stdout
    proc = subprocess.run(
        [str(K8S), "kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout + proc.stderr


def get(kind: str, name: str = "", namespace: str = NS) -> dict:  # type: ignore[type-arg]
    return json.loads(kubectl("-n", namespace, "get", kind, *([name] if name else []), "-o", "json"))


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.api = env["UMS_K8S_API_URL"]
        self.settings: Settings = settings_for(env["UMS_KAFKA_BOOTSTRAP"], env["UMS_REDIS_URL"])
        self.writer = dataclasses.replace(
            self.settings,
            mysql_host=env["UMS_MYSQL_HOST"],
            addservice_mysql_user=env["UMS_ADDSERVICE_MYSQL_USER"],
            addservice_mysql_password=env["UMS_ADDSERVICE_MYSQL_PASSWORD"],
        )

    def add(self, name: str, phone: int) -> None:
        """As the AddService does: the row in MySQL (the stand-in), then the event."""
        users = clients.mysql_users(self.writer, writer=True)
        try:
            AddService(users, clients.kafka_producer(self.writer), self.writer.topic).add_many(
                [User(Name(name), PhoneNumber(phone), datetime.now(UTC))]
            )
        finally:
            users.pool.close()

    def publish(self, name: str, phone: int) -> None:
        producer = clients.kafka_producer(self.settings)
        producer.produce(self.settings.topic, json.dumps({"name": name, "phone": phone, "since": 1_750_000_000_000}))
        assert producer.flush(30) == 0

    def wait_user(self, name: str, timeout: float = 60, base: str = "") -> requests.Response:
        def answered() -> requests.Response | None:
            response = requests.get(f"{base or self.api}/user/{name}", timeout=5)
            return response if response.status_code == 200 else None

        return wait_until(answered, timeout, f"{name} through the API's Service", interval=0.2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = "not running" not in sh(K8S, "status", check=False).stdout
    started = time.monotonic()
    log = sh(K8S, "up", timeout=3000).stderr
    marks = dict(re.findall(r"(node Ready|Deployments Available)[^\n]* after (\d+)s", log))
    record(k8s_up={"seconds": round(time.monotonic() - started, 1), "node_was_running": running, **marks})
    env = dict(line.split("=", 1) for line in sh(K8S, "env").stdout.splitlines())
    yield Cluster(env)
    if not running:
        sh(K8S, "down", check=False, timeout=300)


def available(name: str) -> bool:
    deploy = get("deployment", name)
    conditions = {c["type"]: c["status"] for c in deploy["status"].get("conditions", [])}
    status = deploy["status"]
    return (
        conditions.get("Available") == "True"
        and status.get("updatedReplicas") == status.get("readyReplicas") == (deploy["spec"]["replicas"])
    )


def pods(component: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        p
        for p in get("pods")["items"]
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == component
        and p["metadata"].get("deletionTimestamp") is None
    ]


def test_deployments_available_with_probes_passing(cluster: Cluster) -> None:
    for name in ("ums-find-api", "ums-find-consumer"):
        assert available(name), name
    for component in ("api", "consumer"):
        for pod in pods(component):
            ready = [s["ready"] for s in pod["status"]["containerStatuses"]]
            assert ready == [True], (pod["metadata"]["name"], pod["status"]["containerStatuses"])


def test_api_reached_through_its_service(cluster: Cluster) -> None:
    name, phone = unique("Kube").replace("-", ""), 9_123_456_780
    cluster.publish(name, phone)
    response = cluster.wait_user(name)
    assert (response.json()["phone"], response.headers["X-Ums-Source"]) == (phone, "projection")


def test_rolling_restart_of_the_api_under_load_fails_no_request(cluster: Cluster) -> None:
    # A user the AddService made (MySQL row, then event): a projection read that fails over
    # to MySQL still answers 200, as it would for any real user.
    name = unique("Load").replace("-", "")
    cluster.add(name, 9_000_000_001)
    cluster.wait_user(name)
    # Each pod remembers a name it did not find for UMS_NEGATIVE_CACHE_S: wait until every pod
    # answers 200, or the load's first requests would count that cache, not the restart.
    for pod in pods("api"):
        cluster.wait_user(name, base=f"http://{pod['status']['podIP']}:8080")
    before = {p["metadata"]["name"] for p in pods("api")}
    results = ROOT / ".run" / "vegeta-rolling-restart.bin"  # kept: `vegeta encode` shows each response
    results.unlink(missing_ok=True)
    vegeta = cluster.env["UMS_VEGETA"]
    attack = subprocess.Popen(
        [vegeta, "attack", f"-rate={LOAD_RATE}", f"-duration={LOAD_SECONDS}s", "-timeout=10s", f"-output={results}"],
        stdin=subprocess.PIPE,
        text=True,
    )
    assert attack.stdin is not None
    attack.stdin.write(f"GET {cluster.api}/user/{name}\n")
    attack.stdin.close()
    wait_until(lambda: results.exists() and results.stat().st_size > 0, 10, "vegeta's first results")
    started = time.monotonic()
    kubectl("-n", NS, "rollout", "restart", "deployment/ums-find-api")
    kubectl("-n", NS, "rollout", "status", "deployment/ums-find-api", "--timeout=120s", timeout=180)
    rollout_s = round(time.monotonic() - started, 1)
    assert attack.poll() is None, f"the rollout ({rollout_s} s) outlasted the load"
    assert attack.wait(LOAD_SECONDS + 60) == 0
    report = json.loads(sh(vegeta, "report", "-type=json", results).stdout)
    codes = report["status_codes"]
    failed = report["requests"] - codes.get("200", 0)
    encoded = sh(vegeta, "encode", "-to=json", results).stdout.splitlines()
    sources = Counter(",".join(json.loads(line).get("headers", {}).get("X-Ums-Source", ["-"])) for line in encoded)
    figures = {"requests": report["requests"], "failed": failed, "codes": codes, "errors": report["errors"][:5]}
    record(k8s_rolling_restart={**figures, "rollout_s": rollout_s, "sources": dict(sources)})
    assert report["requests"] >= LOAD_RATE * LOAD_SECONDS * 0.99
    assert (failed, report["errors"]) == (0, []), report
    after = {p["metadata"]["name"] for p in pods("api")}
    assert not before & after, "every API pod was replaced"


def test_consumer_pod_deleted_mid_stream_loses_nothing(cluster: Cluster) -> None:
    stream = Stream(cluster.settings, unique("kd")).start()
    stream.wait_produced(0.3)
    victim = pods("consumer")[0]["metadata"]["name"]
    kubectl("-n", NS, "delete", "pod", victim, "--wait=false")
    assert stream.model.produced < len(stream.values), "the delete came after the stream ended"
    stream.join()
    diff = stream.wait_whole(store_for(cluster.settings))
    record(k8s_consumer_delete={"events": len(stream.values), "missing": diff.missing, "stale": diff.stale})
    assert (diff.missing, diff.stale, diff.extra) == (0, 0, 0), diff
    wait_until(lambda: available("ums-find-consumer"), 120, "the consumer Deployment Available again", interval=1)


def test_replay_job_from_the_cronjob_completes_and_flips(cluster: Cluster) -> None:
    store = store_for(cluster.settings)
    stream = Stream(cluster.settings, unique("kr"), count=2_000, users=500).start()
    stream.join()
    assert stream.wait_whole(store).ok
    before = store.live_generation()
    job = unique("replay")
    kubectl("-n", NS, "create", "job", "--from=cronjob/ums-find-replay", job)
    kubectl("-n", NS, "wait", "--for=condition=complete", f"job/{job}", "--timeout=600s", timeout=660)
    after = store.live_generation()
    assert before is not None and after is not None and after > before, (before, after)
    diff = stream.diff(store)
    assert (diff.missing, diff.stale) == (0, 0), diff


def test_hpa_and_pdbs_accepted_and_tracked(cluster: Cluster) -> None:
    hpa = get("hpa", "ums-find-api")
    assert (hpa["spec"]["scaleTargetRef"]["name"], hpa["spec"]["minReplicas"]) == ("ums-find-api", 2)
    for name in ("ums-find-api", "ums-find-consumer"):
        pdb = get("pdb", name)
        wait_until(lambda pdb_name=name: get("pdb", pdb_name)["status"].get("expectedPods") == 2, 60, f"PDB {name}")
        assert pdb["status"]["disruptionsAllowed"] >= 1, pdb["status"]


BAD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "breaks-restricted"},
    "spec": {"containers": [{"name": "c", "image": "ums-find:0.1.0", "imagePullPolicy": "IfNotPresent"}]},
}


def test_restricted_namespace_rejects_a_pod_that_breaks_the_profile(cluster: Cluster) -> None:
    labels = get("namespace", NS, namespace="default")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    out = kubectl("-n", NS, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(BAD_POD), check=False)
    assert 'violates PodSecurity "restricted:latest"' in out and "runAsNonRoot" in out, out


def test_restricted_namespace_admits_the_shipped_pod_templates(cluster: Cluster) -> None:
    templates = [get("deployment", name)["spec"]["template"] for name in ("ums-find-api", "ums-find-consumer")]
    templates.append(get("cronjob", "ums-find-replay")["spec"]["jobTemplate"]["spec"]["template"])
    for n, template in enumerate(templates):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"shipped-{n}"}, "spec": template["spec"]}
        out = kubectl("-n", NS, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
        assert "created (server dry run)" in out and "Warning" not in out, out
