"""Polling with a deadline (never sleep to synchronise), free ports, unique names."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from adapters.settings import Settings
from consumer.health import Health

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Admission control off (api/admission.py), for tests that count every 503 as a failure and
# drive the API past its 10 ms queue target on purpose or by a loaded machine.
ADMISSION_OFF = {"UMS_API_QUEUE_TARGET_MS": "0", "UMS_API_REQUEST_DEADLINE_MS": "0"}


def wait_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `probe` until it returns something truthy; fail with `what` past the deadline."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = probe()
    return last


def delete_matching(client: Any, *patterns: str, batch: int = 1000) -> None:
    """Delete the keys matching `patterns`, one UNLINK per `batch` scanned keys (a Cluster client
    splits it by slot); one DEL per key took 20 s after a test of 100k users."""
    for pattern in patterns:
        keys: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                client.unlink(*keys)
                keys = []
        if keys:
            client.unlink(*keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_pids(master: int) -> list[int]:
    """A gunicorn master's workers (its children, from /proc)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process build exactly `settings`."""
    import os

    env = dict(os.environ)
    env.update({name: str(getattr(settings, name[4:].lower())) for name in Settings.variables()})
    env.update(extra)
    return env


def start_consumer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`ums-find consume` building exactly `settings`, its plain-text output in `log`, no metrics port."""
    env = env_of(settings, UMS_LOG_JSON="false", UMS_METRICS_PORT="0")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "ums-find"), "consume"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def stop_consumer(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM a consumer from `start_consumer` and assert it stops cleanly (exit 0) within 30 s."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text(errors="replace")[-3000:]


def heartbeat(path: str | Path) -> Health | None:
    """The consumer's health file (consumer/health.py); None while it is missing or half-written."""
    try:
        return Health(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def check_cli(argv: list[str]) -> None:
    """Parse a `ums-find ...` command line with the real click CLI (nothing runs)."""
    import click

    from ums_find.cli import main

    assert argv[0] == "ums-find", argv
    command: click.Command = main
    name, rest = "ums-find", list(argv[1:])
    while isinstance(command, click.Group):
        assert rest and rest[0] in command.commands, f"{argv}: no `{name} {rest[:1]}` command"
        name, rest = rest[0], rest[1:]
        command = command.commands[name]
    try:
        command.make_context(name, rest)
    except click.ClickException as exc:
        raise AssertionError(f"{argv}: {exc.format_message()}") from None


def run_cli(settings: Settings, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `ums-find --log-text ARGS` as a child process with `settings` (plus `env`); capture its output."""
    return subprocess.run(
        [str(BIN / "ums-find"), "--log-text", *args],
        env=env_of(settings, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kustomize(target: str, secrets: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl kustomize k8s/<target>` on a copy of k8s/ whose git-ignored secret files
    (k8s/base/secrets/*.env) hold placeholder values, or are absent (`secrets=False`)."""
    import re
    import shutil
    import tempfile

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render k8s/ (apt-get install kubectl): it includes kustomize"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "k8s"
        shutil.copytree(ROOT / "k8s", copy, ignore=shutil.ignore_patterns("*.env"))
        if secrets:
            for example in (copy / "base" / "secrets").glob("*.env.example"):
                text = re.sub(r"(?m)^(UMS_\w+)=$", r"\1=EXAMPLE-ONLY", example.read_text())
                example.with_name(example.name.removesuffix(".example")).write_text(text)
        return subprocess.run(
            [kubectl, "kustomize", str(copy / target)], capture_output=True, text=True, timeout=120, check=False
        )


def save_written(generations: Any, pointer: Any, offsets: dict[int, int], floors: dict[int, int] | None = None) -> bool:
    """Save positions as a consumer does: its batch's fill mark first (sent after the batch's data)."""
    generations.store.send_mark(generations.mark(pointer.live, {str(p): o for p, o in offsets.items()}))
    return bool(generations.save_positions(pointer, offsets, floors))


def produce_users(settings: Settings, names: str, count: int, first_phone: int) -> list[Any]:
    """Produce `count` "user added" events named "<names> 00000".. with phones from `first_phone`; the users."""
    from datetime import UTC, datetime

    from adapters.clients import kafka_producer
    from devtools.addservice import event_value
    from domain import Name, PhoneNumber, User

    users = [User(Name(f"{names} {i:05d}"), PhoneNumber(first_phone + i), datetime.now(UTC)) for i in range(count)]
    producer = kafka_producer(settings)
    for user in users:
        producer.produce(settings.topic, value=event_value(user))
    assert producer.flush(30) == 0
    return users


def cache_connection_id(reads: Any) -> int:
    """The Redis client id of the API read cache's one pool connection (the one that read what it holds)."""
    pool = reads.store.client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("CLIENT", "ID")
        return int(conn.read_response())
    finally:
        pool.release(conn)
