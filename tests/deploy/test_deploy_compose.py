"""Offline checks of docker-compose.yml: the Compose schema, Docker Compose's own loader,
and the wiring (images, healthchecks, depends_on conditions, settings, secrets).

No Docker engine here. Validators:
- the official Compose Specification JSON schema, vendored in tests/deploy/data/
  (from the Go module github.com/compose-spec/compose-go/v2, see data/README.md);
- compose-go's loader (`compose-spec`, the library Docker Compose is built on), built once by
  services/tools.sh into .cache/bin; a build failure fails the test, naming the error.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from adapters.settings import Settings
from devtools.addservice import DEMO_USERS
from tests.helpers import check_cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
SCHEMA_SHA256 = "f266dcbb043229405d7cedd5aec918f9102c2b3d5e3850808fdd8edd564a43ff"
ENV_EXAMPLE = ROOT / "docker" / "compose.env.example"
USERS_SCRIPT = ROOT / "docker" / "mysql" / "02-users.sh"
TOOLS = ROOT / "services" / "tools.sh"

OUR_SERVICES = {"topics", "seed", "consumer", "api"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), "docker-compose.yml is missing"
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def package_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]["version"]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command if isinstance(command, list) else command.split()


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def gunicorn_variables() -> set[str]:
    return set(re.findall(r"environ\.get\(\"(UMS_API_[A-Z_]+)\"", (ROOT / "api" / "gunicorn.conf.py").read_text()))


# --- the Compose specification -----------------------------------------------------------------


def test_vendored_schema_is_the_pinned_official_file() -> None:
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "tests/deploy/data/compose-spec.json changed: see data/README.md"
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"


def test_compose_file_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def compose_spec_binary() -> str:
    if not shutil.which("bash") or not TOOLS.is_file():
        pytest.fail("services/tools.sh (bash) is needed to build the compose-go validator")
    result = subprocess.run(
        ["bash", str(TOOLS), "compose-spec"], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"could not install compose-go's compose-spec validator:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def test_compose_go_loader_accepts_the_file(services: dict[str, dict[str, Any]]) -> None:
    """Docker Compose's loader: schema, then the model (depends_on targets, ports, durations...).

    Interpolation is off: the `compose-spec` command of compose-go v2.16.2 does not pass the
    process environment to it; the ${...} variables are checked by the tests below instead.
    """
    binary = compose_spec_binary()
    result = subprocess.run(
        [binary, "--no-interpolation", "--format", "json", COMPOSE.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"compose-go rejected docker-compose.yml:\n{result.stderr}"
    model = json.loads(result.stdout)
    assert set(model["services"]) == set(services)
    assert model["services"]["api"]["ports"][0]["target"] == 8080


# --- the stack ------------------------------------------------------------------------------


def test_the_stack_has_every_part(services: dict[str, dict[str, Any]]) -> None:
    expected = {"zookeeper", "kafka", "mysql", "redis", "prometheus", *OUR_SERVICES}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_third_party_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    pins = {
        "zookeeper": r"confluentinc/cp-zookeeper:7\.\d+\.\d+",
        "kafka": r"confluentinc/cp-kafka:7\.\d+\.\d+",  # 7.x: the last line with ZooKeeper mode
        "mysql": r"mysql:8\.\d+\.\d+",
        "redis": r"redis:\d+\.\d+\.\d+(-\w+)?",
        "prometheus": r"prom/prometheus:v2\.\d+\.\d+",
    }
    for name, pattern in pins.items():
        image = services[name]["image"]
        assert re.fullmatch(pattern, image), f"{name}: {image} is not pinned as {pattern}"
    zk, kafka = services["zookeeper"]["image"], services["kafka"]["image"]
    assert zk.split(":")[1] == kafka.split(":")[1], "ZooKeeper and Kafka from the same Confluent release"


def test_our_services_run_the_one_image_built_here(services: dict[str, dict[str, Any]]) -> None:
    for name in OUR_SERVICES:
        service = services[name]
        assert service["image"] == f"ums-find:{package_version()}", f"{name}: {service['image']}"
        build = service["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
        assert service.get("read_only") is True, f"{name}: read-only root filesystem, like Kubernetes"
        assert service.get("cap_drop") == ["ALL"], name
        assert str(service.get("user", "")).startswith("10001"), name
    for name, service in services.items():
        assert ":latest" not in service.get("image", ":x") and ":" in service.get("image", ":x"), name


def test_depends_on_conditions(services: dict[str, dict[str, Any]]) -> None:
    wanted = {
        ("kafka", "zookeeper"): "service_healthy",
        ("topics", "kafka"): "service_healthy",
        ("seed", "topics"): "service_completed_successfully",
        ("seed", "mysql"): "service_healthy",
        ("consumer", "topics"): "service_completed_successfully",
        ("consumer", "redis"): "service_healthy",
        ("api", "redis"): "service_healthy",
        ("api", "mysql"): "service_healthy",
        ("api", "seed"): "service_completed_successfully",
    }
    for (service, dependency), condition in wanted.items():
        depends_on = services[service].get("depends_on", {})
        assert isinstance(depends_on, dict), f"{service}: depends_on needs the long form with conditions"
        assert depends_on.get(dependency, {}).get("condition") == condition, f"{service} -> {dependency}"


def test_every_dependency_condition_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                test = services[dependency].get("healthcheck", {}).get("test")
                assert test and test[0] in ("CMD", "CMD-SHELL"), f"{dependency} needs a healthcheck ({name} waits)"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart", "no") == "no", f"{dependency} is a one-shot"
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"depends_on cycle through {name}"
        if name in order:
            return
        visiting.add(name)
        for dependency in services[name].get("depends_on", {}):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)


def test_commands_are_ums_find_subcommands(services: dict[str, dict[str, Any]]) -> None:
    assert command_of(services["consumer"]) == ["ums-find", "consume"]
    topics = command_of(services["topics"])
    assert topics[:2] == ["ums-find", "topics"] and topics[topics.index("--partitions") + 1] == "6"
    seed = command_of(services["seed"])
    assert seed[:2] == ["ums-find", "seed"] and "--count" in seed and "--no-demo" not in seed
    assert "KrishnaMohan" in [name for name, _ in DEMO_USERS], "curl /user/KrishnaMohan needs the demo user"
    assert "command" not in services["api"], "the API runs the image's default command (gunicorn)"
    for name in OUR_SERVICES:
        command = command_of(services[name])
        if command:
            check_cli(command)
    for name in ("consumer",):
        check_cli(services[name]["healthcheck"]["test"][1:])


def test_api_is_published_on_8080_and_waits_for_the_demo_users(services: dict[str, dict[str, Any]]) -> None:
    assert "127.0.0.1:8080:8080" in [str(p) for p in services["api"]["ports"]]
    env = env_of(services["api"])
    assert env["UMS_API_BIND"].endswith(":8080")
    assert env["PROMETHEUS_MULTIPROC_DIR"] in " ".join(services["api"]["tmpfs"]), "multiproc dir must be writable"
    health = env_of(services["consumer"])["UMS_HEARTBEAT_FILE"]
    assert str(Path(health).parent) in " ".join(services["consumer"]["tmpfs"]), "health file dir must be writable"


def test_published_ports_are_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = [str(p) for service in services.values() for p in service.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published), published


def test_tmpfs_dirs_the_image_already_has_are_owned_by_its_user(services: dict[str, dict[str, Any]]) -> None:
    """Over a directory of the image Docker keeps that directory's mode, so mode=1777 would not make it writable."""
    for name in OUR_SERVICES:
        for mount in services[name].get("tmpfs", []):
            if str(mount).startswith("/run/ums-find/"):
                assert "uid=10001" in mount and "gid=10001" in mount, (name, mount)


def test_every_variable_is_a_setting_or_a_gunicorn_knob(services: dict[str, dict[str, Any]]) -> None:
    known = set(Settings.variables()) | gunicorn_variables() | {"PROMETHEUS_MULTIPROC_DIR"}
    for name in OUR_SERVICES:
        for variable in env_of(services[name]):
            assert variable in known, f"{name}: {variable} is read by nothing (typo?)"


def test_prometheus_scrapes_both_ops_ports_with_the_alert_rules(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    mounts = {v["target"]: v["source"] for v in prometheus["volumes"] if isinstance(v, dict)}
    mounts |= {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if isinstance(v, str)}
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = {c["job_name"]: t for c in config["scrape_configs"] for sc in c["static_configs"] for t in sc["targets"]}
    api_ops_port = env_of(services["api"])["UMS_API_OPS_BIND"].rsplit(":", 1)[1]
    consumer_port = env_of(services["consumer"])["UMS_METRICS_PORT"]
    assert targets == {"ums-find-api": f"api:{api_ops_port}", "ums-find-consumer": f"consumer:{consumer_port}"}
    [(rules_target, rules_source)] = [(t, s) for t, s in mounts.items() if t.startswith("/etc/prometheus/rules/")]
    assert [Path(rules_target).match(glob) for glob in config["rule_files"]] == [True]
    default = VARIABLE.fullmatch(rules_source)
    assert default and ROOT / default.group(3) == ROOT / "observability" / "prometheus" / "ums-find-alerts.yaml"


def test_addresses_point_at_services_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    kafka_listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in OUR_SERVICES:
        env = env_of(services[name])
        if "UMS_KAFKA_BOOTSTRAP" in env:
            assert env["UMS_KAFKA_BOOTSTRAP"] in kafka_listeners, f"{name}: not a listener Kafka advertises"
        if "UMS_REDIS_URL" in env:
            assert urlparse(env["UMS_REDIS_URL"]).hostname in services, name
        if "UMS_MYSQL_HOST" in env:
            assert env["UMS_MYSQL_HOST"] in services, name
    kafka_env = services["kafka"]["environment"]
    assert str(kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false", "topics come from `topics`"
    assert str(kafka_env["KAFKA_LOG_RETENTION_MS"]) == "-1", "a Kafka-only rebuild needs the whole history"


def test_redis_never_evicts_the_projection(services: dict[str, dict[str, Any]]) -> None:
    command = command_of(services["redis"])
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_every_ums_find_service_names_users_by_the_databases_collation(services: dict[str, dict[str, Any]]) -> None:
    """Which names are one user: the API's readiness compares the setting with the table's, and the
    consumer keys users by it. The schema sets no collation, so the table takes the server's default."""
    assert services["mysql"]["image"].startswith("mysql:8.4"), "mysql:8.4's default is utf8mb4_0900_ai_ci"
    chosen = {name: env_of(services[name]).get("UMS_NAME_COLLATION") for name in sorted(OUR_SERVICES)}
    assert set(chosen.values()) == {"utf8mb4_0900_ai_ci"}, chosen
    local = yaml.safe_load((ROOT / "docker-compose.local.yml").read_text())["services"]
    assert local["mysql"]["image"].endswith(":mariadb"), "MariaDB's default is utf8mb4_general_ci"
    chosen = {name: env_of(local[name]).get("UMS_NAME_COLLATION") for name in sorted(OUR_SERVICES)}
    assert set(chosen.values()) == {"utf8mb4_general_ci"}, chosen


# --- MySQL schema and users ---------------------------------------------------------------


def test_mysql_init_runs_the_schema_then_the_users(services: dict[str, dict[str, Any]]) -> None:
    mounts = {}
    for volume in services["mysql"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = ROOT / source
    schema = mounts["/docker-entrypoint-initdb.d/01-schema.sql"]
    assert schema == ROOT / "services" / "mysql" / "schema.sql", "reuse the stack's schema, do not copy it"
    ddl = " ".join(schema.read_text().split())
    assert "CREATE TABLE IF NOT EXISTS glarimy.ums_users" in ddl
    for column in ("name VARCHAR(64) NOT NULL PRIMARY KEY", "phone BIGINT NOT NULL", "since DATETIME(3) NOT NULL"):
        assert column in ddl, column
    assert mounts["/docker-entrypoint-initdb.d/02-users.sh"] == USERS_SCRIPT
    init_files = sorted(Path(t).name for t in mounts if t.startswith("/docker-entrypoint-initdb.d/"))
    assert init_files == ["01-schema.sql", "02-users.sh"], "the entrypoint runs them in name order"


def test_users_script_is_valid_bash_and_grants_read_only_to_the_api_user(services: dict[str, dict[str, Any]]) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to syntax-check docker/mysql/02-users.sh"
    result = subprocess.run([bash, "-n", str(USERS_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    script = USERS_SCRIPT.read_text()
    assert "GRANT SELECT ON glarimy.ums_users TO ${ro_user}" in script
    assert re.search(r"GRANT SELECT, INSERT, UPDATE, DELETE ON glarimy\.ums_users TO \$\{rw_user\}", script)
    needed = set(re.findall(r"\$\{(UMS_[A-Z_]+|MYSQL_ROOT_PASSWORD):\?\}", script))
    assert needed == set(env_of(services["mysql"])), "the script reads exactly what the mysql service passes"


# --- secrets ------------------------------------------------------------------------------


def test_no_password_is_written_in_the_compose_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for variable, value in env_of(service).items():
            if "PASSWORD" in variable:
                match = VARIABLE.fullmatch(value)
                assert match and match.group(2) == ":?", f"{name}: {variable} must be ${{{variable}:?...}} from .env"


def test_every_interpolated_variable_has_a_default_or_an_example() -> None:
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    used = VARIABLE.findall(COMPOSE.read_text())
    assert used
    for variable, operator, _ in used:
        assert operator in (":-", ":?"), f"${{{variable}}} needs a default (:-) or an error message (:?)"
        if operator == ":?":
            assert variable in example, f"{variable} is required but not in docker/compose.env.example"
    for variable, value in example.items():
        if "PASSWORD" in variable:
            assert "example" in value.lower() and "CHANGE-ME" in value, f"{variable}: an obviously fake example"
    assert "EXAMPLE VALUES ONLY" in ENV_EXAMPLE.read_text()
