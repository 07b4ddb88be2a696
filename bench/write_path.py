"""Where the live consumer's per-batch time goes, and before/after runs of `ums-find consume` (issue 25, item 3).

    python -m bench.write_path produce TOPIC COUNT          # one topic of COUNT events, 6 partitions
    python -m bench.write_path stages TOPIC COUNT           # in-process ConsumeLoop, µs per event per stage
    python -m bench.write_path ab TOPIC COUNT ROUNDS A=DIR B=DIR ...
                                                            # `ums-find consume` of each source tree, alternating

Uses its own Redis database (UMS_BENCH_WRITE_DB, default 9), flushed before every run, so it never
touches the benchmarks' database 1 or the tests' 0. "from start" counts the 3 s group join,
"steady" runs from the first saved position to the last (the per-event cost).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from adapters.generations import Generations
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import BIN, cpu_seconds, env_for, wait_for
from bench.projection import decoded_events, produce, run_ceiling

log = logging.getLogger("bench")
DB = int(os.environ.get("UMS_BENCH_WRITE_DB", "9"))


def settings_for(topic: str) -> Settings:
    base = Settings.from_env()
    url = base.redis_url.rsplit("/", 1)[0] + f"/{DB}"
    return replace(base, redis_url=url, metrics_port=0, topic=topic, key_prefix="wp")


def saved(generations: Generations) -> int:
    """Events covered by saved positions (generation 1: nothing flips here)."""
    return sum(generations.all_positions(1).values())


def run_tree(settings: Settings, tree: Path, count: int) -> dict[str, float]:
    """`ums-find consume` from the source tree `tree`, until its positions cover every event."""
    client = make_redis(settings, timeout_s=30)
    client.flushdb()
    generations = Generations(ProjectionStore(client, settings.key_prefix))
    group = f"wp-{uuid.uuid4().hex[:6]}"
    env = env_for(replace(settings, group_id=group), UMS_LOG_LEVEL="WARNING", PYTHONPATH=str(tree))
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-c", "from ums_find.cli import main; main()", "consume"],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first: list[float] = []

    def done() -> bool:
        n = saved(generations)
        if n and not first:
            first.append(time.monotonic())
        return n >= count

    try:
        wait_for(done, 600, "the consumer to save every position", interval=0.02)
        end = time.monotonic()
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    control = sum(1 for _ in client.scan_iter(match=f"{{{settings.key_prefix}}}:*", count=1000))
    users = int(client.dbsize()) - control  # pointer, positions, fill marks, topic record
    client.flushdb()
    steady = end - first[0]
    return {
        "eps_start": count / (end - started),
        "eps_steady": count / steady,
        "cpu_us_per_event": cpu / count * 1e6,  # start-up included: the same in both trees
        "users": users,
    }


def ab(topic: str, count: int, rounds: int, trees: dict[str, Path]) -> dict[str, Any]:
    settings = settings_for(topic)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    ceiling = os.environ.get("WP_CEILING", "") not in ("", "0")
    events = decoded_events(settings, count) if ceiling else []
    if ceiling:
        runs["ceiling"] = []
    for r in range(rounds):
        if ceiling:  # the fenced script from pre-decoded events, no Kafka (bench/projection.py)
            runs["ceiling"].append(run_ceiling(settings, events))
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            result = run_tree(settings, tree, count)
            assert result["users"] == count, result
            runs[name].append(result)
            log.warning("round %d %s: %s", r + 1, name, {k: round(v, 1) for k, v in result.items()})
    return {"runs": runs, "ratios": ratios(runs)}


def ratios(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """Each tree against the first, round by round (the machine's load drifts between rounds)."""
    names = [name for name in runs if name != "ceiling"]
    out: dict[str, dict[str, list[float]]] = {}
    for name in names if "ceiling" in runs else []:
        out[f"{name}/ceiling"] = {
            "eps_steady": sorted(
                round(b["eps_steady"] / a["eps"], 3) for a, b in zip(runs["ceiling"], runs[name], strict=True)
            )
        }
    for name in names[1:]:
        out[f"{name}/{names[0]}"] = {
            k: sorted(round(b[k] / a[k], 3) for a, b in zip(runs[names[0]], runs[name], strict=True))
            for k in ("eps_start", "eps_steady", "cpu_us_per_event")
        }
    return out


# ---- the stage profile ---------------------------------------------------------------------


class Stages:
    """Seconds per named stage, added up over a run (perf_counter around batch-level calls only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        real = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t
                self.calls[stage] += 1

        setattr(owner, attr, timed)


def stages(topic: str, count: int) -> dict[str, Any]:
    """The real ConsumeLoop and clients, in this process, with a timer around each batch-level call."""
    import redis.client

    from adapters.clients import Role, kafka_consumer, kafka_producer, projection_store
    from adapters.generations import Generations
    from consumer import loop as loop_module
    from consumer.dlq import DeadLetters
    from consumer.metrics import ConsumerMetrics
    from consumer.positions import Positions
    from consumer.projector import Projector
    from consumer.tuning import tune_gc
    from domain import use_collation

    settings = replace(settings_for(topic), group_id=f"wp-{uuid.uuid4().hex[:6]}")
    use_collation(settings.name_collation)
    client = make_redis(settings, timeout_s=30)
    client.flushdb()
    timer = Stages()
    timer.wrap(loop_module.ConsumeLoop, "step", "step (all)")
    real_fetch = loop_module.ConsumeLoop.fetch

    def fetch(self: Any) -> Any:
        t = time.perf_counter()
        messages = real_fetch(self)
        stage = "kafka poll (batches)" if messages else "kafka poll (empty: group join, end)"
        timer.seconds[stage] += time.perf_counter() - t
        timer.calls[stage] += 1
        return messages

    loop_module.ConsumeLoop.fetch = fetch  # type: ignore[method-assign]
    timer.wrap(loop_module.ConsumeLoop, "process", "process (decode+write+save)")
    timer.wrap(Positions, "current", "pointer read")
    timer.wrap(Projector, "apply", "write (args + script)")
    timer.wrap(redis.client.Pipeline, "execute", "redis pipeline round trip")
    timer.wrap(Generations, "save_positions", "positions save")
    try:  # the pipelined write (after item 3); absent in older trees
        from adapters.pipelined import PipelinedWrite

        timer.wrap(PipelinedWrite, "send", "pipelined send (args + packing + socket write)")
        timer.wrap(PipelinedWrite, "wait", "pipelined wait (reading replies)")
    except ImportError:
        pass
    timer.wrap(Positions, "_store_kafka_offsets", "store kafka offsets")
    stop = threading.Event()
    tune_gc()
    loop = loop_module.ConsumeLoop(
        kafka_consumer(settings),
        projection_store(settings, Role.CONSUMER),
        DeadLetters(kafka_producer(settings), settings.dead_letter_topic, stop),
        settings,
        ConsumerMetrics.create(CollectorRegistry()),
        stop,
    )
    watcher = Generations(ProjectionStore(make_redis(settings, timeout_s=30), settings.key_prefix))

    def until_done() -> None:
        wait_for(lambda: saved(watcher) >= count, 600, "every position", interval=0.05)
        stop.set()

    threading.Thread(target=until_done, daemon=True).start()
    started = time.perf_counter()
    loop.run()
    wall = time.perf_counter() - started
    client.flushdb()
    per_event = {k: round(v / count * 1e6, 3) for k, v in timer.seconds.items()}
    process = per_event["process (decode+write+save)"]
    write = sum(
        per_event.get(k, 0.0)
        for k in (
            "write (args + script)",
            "pipelined send (args + packing + socket write)",
            "pipelined wait (reading replies)",
        )
    )
    per_event["decode+fold+metrics (process - write - save)"] = round(process - write - per_event["positions save"], 3)
    idle = timer.seconds["kafka poll (empty: group join, end)"]
    per_event["step (all) without empty polls"] = round((timer.seconds["step (all)"] - idle) / count * 1e6, 3)
    return {"events": count, "wall_s": wall, "us_per_event": per_event, "calls": dict(timer.calls)}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    mode, topic, count = argv[0], argv[1], int(argv[2])
    result: Any
    if mode == "produce":
        produce(settings_for(topic), count)
        result = {"produced": count, "topic": topic}
    elif mode == "stages":
        result = stages(topic, count)
    elif mode == "ab":
        trees = {name: Path(path) for name, path in (a.split("=", 1) for a in argv[4:])}
        result = ab(topic, count, int(argv[3]), trees)
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
