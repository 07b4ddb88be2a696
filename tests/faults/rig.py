"""The fault-test rig: produce events while keeping a model, run consumers as processes, compare.

The model is the fold of every *acknowledged* produced event with the version Kafka
gave it (since, partition, offset), i.e. the newest version per user. A projection is
right when it equals that fold: 0 missing, 0 stale, 0 extra.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from adapters.kafka import consumer_config
from adapters.settings import Settings
from adapters.store import ProjectionStore
from adapters.values import Stored, parse_value
from consumer.decode import Envelope, PoisonEvent, decode
from domain import newest_per_user
from domain.projection import Event
from tests.helpers import env_of, free_port, run_cli, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def random_events(
    rng: random.Random, users: int, count: int, tag: str, base_ms: int = 1_700_000_000_000
) -> list[bytes]:
    """AddService events for `users` users, in random order of `since` (so partitions reorder them)."""
    values = []
    for n in range(count):
        i = n % users if count >= users else rng.randrange(users)  # every user at least once
        since = base_ms + rng.randrange(10_000_000)
        values.append(
            json.dumps(
                {"name": f"{tag} u{i:06d}", "phone": 9_000_000_000 + rng.randrange(10**9), "since": since}
            ).encode()
        )
    return values


@dataclass
class Model:
    """Events the broker acknowledged, decoded exactly as the consumer decodes them."""

    events: list[Event] = field(default_factory=list)
    poison: int = 0
    failed: int = 0
    produced: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_delivery(self, err, msg) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            if err is not None:
                self.failed += 1
                return
            self.produced += 1
            _, ts = msg.timestamp()
            try:
                self.events.append(decode(Envelope(msg.key(), msg.value(), msg.partition(), msg.offset(), ts)))
            except PoisonEvent:
                self.poison += 1

    def view(self) -> dict[str, Event]:
        with self.lock:
            return newest_per_user(self.events)


def produce(
    producer: Producer,
    topic: str,
    values: Iterable[bytes | None],
    model: Model,
    keys: Iterable[bytes | None] | None = None,
    per_second: float = 0,
) -> None:
    """Produce every value (rate-limited if asked) and wait for every acknowledgement."""
    started = time.monotonic()
    key_iter = iter(keys) if keys is not None else None
    for n, value in enumerate(values, 1):
        key = next(key_iter) if key_iter else None
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=model.on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if per_second and n % 500 == 0:
            # Pacing the stream, not synchronising. poll() returns as soon as it has served a
            # delivery report, so one call is no pause: until 2026-12-04 "9,000 at 750/s" took 0.5 s.
            due = started + n / per_second
            while (ahead := due - time.monotonic()) > 0:
                producer.poll(ahead)
    assert producer.flush(120) == 0, "the broker did not acknowledge every event"


def produce_in_background(
    producer: Producer, topic: str, values: list[bytes], model: Model, per_second: float
) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(producer, topic, values, model), kwargs={"per_second": per_second})
    thread.start()
    return thread


def snapshot(store: ProjectionStore, generation: int) -> dict[str, Stored]:
    """The whole projection of a generation: SCAN, then GET in pipelined chunks."""
    head = len(store.key(generation, ""))
    keys = list(store.client.scan_iter(match=store.key(generation, "*"), count=5000))
    result: dict[str, Stored] = {}
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        pipe = store.client.pipeline(transaction=False)  # not MGET: keys span Cluster slots
        for key in chunk:
            pipe.get(key)
        for key, raw in zip(chunk, pipe.execute(), strict=True):
            if raw is not None:
                canonical = key.decode()[head:]
                result[canonical] = parse_value(raw, canonical)
    return result


@dataclass(frozen=True)
class Diff:
    missing: int
    stale: int
    extra: int
    checked: int

    @property
    def ok(self) -> bool:
        return self.missing == self.stale == self.extra == 0


def compare(view: dict[str, Event], projection: dict[str, Stored]) -> Diff:
    missing = stale = 0
    for key, event in view.items():
        held = projection.get(key)
        if held is None:
            missing += 1
        elif held.version != event.version or held.user != getattr(event, "user", None):
            stale += 1
    extra = len(projection.keys() - view.keys())
    return Diff(missing, stale, extra, len(view))


def committed_count(settings: Settings, partitions: int = 6) -> int:
    """How many events the group has committed (written to Redis) so far."""
    reader = Consumer(consumer_config(settings))
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in reader.committed(tps, timeout=10))
    finally:
        reader.close()


def positions_reach_end(settings: Settings, partitions: int = 6) -> bool:
    """True when the live generation's saved positions reach every partition's end (everything written).

    Positions in Redis are where consumers resume (docs/decisions.md "Recovery"); Kafka's
    committed offsets are monitoring only and may lag after a coordinator moves.
    """
    from adapters.clients import Role, projection_store
    from adapters.generations import Generations

    generations = Generations(projection_store(settings, Role.ADMIN))
    pointer = generations.read()
    if pointer is None:
        return False
    saved = generations.positions(pointer.live, range(partitions))
    reader = Consumer(consumer_config(settings))
    try:
        for partition in range(partitions):
            _, high = reader.get_watermark_offsets(TopicPartition(settings.topic, partition), timeout=10)
            if high > 0 and saved.get(partition, -1) < high:
                return False
        return True
    except KafkaException as exc:
        if exc.args[0].retriable():  # a broker restarting: not yet, ask again
            return False
        raise
    finally:
        reader.close()


def wait_converged(settings: Settings, timeout: float = 90) -> None:
    wait_until(lambda: positions_reach_end(settings), timeout, "positions to reach every partition's end", interval=0.5)


class ConsumerProcess:
    """`ums-find consume` as a child process, with its own log and health file."""

    def __init__(self, settings: Settings, workdir: Path, name: str, **env: str) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.health_path = workdir / f"{name}.health"
        self.env = env_of(
            settings, UMS_HEARTBEAT_FILE=str(self.health_path), UMS_LOG_JSON="true", UMS_METRICS_PORT="0", **env
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs: list[Path] = []

    def start(self) -> ConsumerProcess:
        run_log = self.log_path.with_suffix(f".{len(self.runs)}.log")
        self.runs.append(run_log)
        with open(run_log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "ums-find"), "consume"], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self, timeout: float = 10) -> float:
        """SIGTERM; return the seconds it took to exit (cleanly, or the test fails)."""
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        code = self.proc.wait(timeout + 5)
        assert code == 0, f"{self.name} exited with {code}:\n{self.text()[-3000:]}"
        return time.monotonic() - started

    def wait_running(self, timeout: float = 30) -> None:
        """Until the current run has its partitions (a stop before that tests start-up, not stopping)."""
        wait_until(
            lambda: "partitions assigned" in self.runs[-1].read_text(errors="replace"),
            timeout,
            f"{self.name} to get partitions",
        )

    def text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.runs if p.exists())

    def records(self) -> Iterator[dict]:  # type: ignore[type-arg]
        for line in self.text().splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    def totals(self) -> list[dict]:  # type: ignore[type-arg]
        """The totals every cleanly stopped run logged."""
        return [r["totals"] for r in self.records() if r.get("message") == "consumer closed"]

    def assigned(self) -> int:
        try:
            return int(json.loads(self.health_path.read_text())["assigned"])
        except (OSError, ValueError, KeyError):
            return 0


class PrivateRedis:
    """A redis-server of this test only; with `persist`, an fsync-always AOF so a restart keeps the data."""

    def __init__(self, workdir, persist: bool = True) -> None:
        self.persist = persist
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.dir / "redis.log"),
            ]
        )
        wait_until(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip()
                == b"PONG"
            ),
            20,
            "the private redis",
        )

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(20)

    def crash(self) -> None:
        """SIGKILL: no save on the way out, so a restart loads whatever was last persisted."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)


# ---- recovery: the live generation, replays as processes, keys left behind


def live_snapshot(store: ProjectionStore) -> dict[str, Stored]:
    generation = store.live_generation()
    return snapshot(store, generation) if generation is not None else {}


def wait_whole(store: ProjectionStore, model: Model, timeout: float, what: str = "the projection") -> float:
    """Poll until the live generation equals the model (0 missing, 0 stale, 0 extra); return the seconds."""
    started = time.monotonic()
    last: list[Diff] = []

    def whole() -> bool:
        last[:] = [compare(model.view(), live_snapshot(store))]
        return last[0].ok

    try:
        wait_until(whole, timeout, f"{what} to equal the model", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last diff {last}") from None
    return time.monotonic() - started


def keys_outside_live(store: ProjectionStore) -> int:
    """User keys and position hashes of any generation but the live one."""
    live = store.live_generation()
    users = sum(1 for key in store.scan_all(count=5000) if store.generation_of(key) != live)
    positions = sum(
        1
        for key in store.client.scan_iter(match=f"{store.control_prefix}:pos:*", count=1000)
        if int(key.decode().rsplit(":", 1)[1]) != live
    )
    return users + positions


class ReplayProcess:
    """`ums-find replay` as a child process (so it can be killed, paused and resumed)."""

    def __init__(self, settings: Settings, workdir: Path, name: str = "replay", **env: str) -> None:
        self.log_path = workdir / f"{name}.log"
        self.env = env_of(settings, UMS_LOG_JSON="false", **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ReplayProcess:
        with open(self.log_path, "ab") as out:
            # A session of its own, as a supervisor starts it: the pid is then the worker's (SIGSTOP pauses
            # it; its workers are its children), not a parent waiting for it (ums_find/priority.py).
            self.proc = subprocess.Popen(
                [str(BIN / "ums-find"), "replay", *args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 300) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_replay(settings: Settings, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, "replay", *args, timeout=timeout, **env)


# fixed_pace: the probe runs beside the replay, but with a target of 1 s (never reached here) the
# slow start lifts the governor's limit within a window or two and it never slows the rebuild again, so the
# pace alone sets the rebuild's length whatever the host's load does to the probe (with the default 2 ms,
# the governor's walk on this loaded 2-core host set those tests' length: 15-63 s and 26-77 s for the whole
# test). These tests are no coverage of a governor that slows; that has its own tests
# (tests/integration/test_replay_governor.py, which checks every user, and tests/unit/test_governor.py).
def fixed_pace(events_per_s: int) -> dict[str, str]:
    """The replay's environment for a rebuild at `events_per_s` with the governor unhindered (above)."""
    return {"UMS_REBUILD_REDIS_DELAY_MS": "1000", "UMS_REBUILD_EVENTS_PER_S": str(events_per_s)}


def replayed_events(stdout: str) -> int:
    """The Kafka events a finished replay wrote (the backlog at its claim; later ones are the live consumers')."""
    found = re.search(r"generation \d+ is live: (\d+) events", stdout)
    assert found, f"no 'generation N is live' line in the replay's output: {stdout[-500:]!r}"
    return int(found.group(1))
