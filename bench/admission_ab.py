"""Admission policies side by side past capacity (`python -m bench.admission_ab`, stack environment loaded).

usage: python -m bench.admission_ab CAPACITY ROUNDS STEP_S NAME=VAR=VALUE,VAR=VALUE ...
Each variant is our API (gunicorn as `make bench` pins it) with those UMS_* variables; every round
runs each variant at 2x and 4x of CAPACITY req/s for STEP_S seconds (vegeta open loop, client
timeout 1 s), draining between steps, in alternating order. Per step: goodput, 2xx p99, the 503s
and their p99 on arrival and after queueing, client timeouts (bench/overload.py's summary).
Writes .run/admission-ab.json; never bench/results (a run of one part). docs/decisions.md
"Admission control" has the run of 2026-12-03 and its command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from adapters.settings import Settings
from bench.common import BIN, PORT_BASE, ROOT, env_for
from bench.loadgen import attack_csv, write_targets
from bench.overload import CLIENT_TIMEOUT_S, drain, parse, summarise
from bench.overload_run import forget, projected
from bench.servers import Server

log = logging.getLogger("bench")
MULTIPLES = (2.0, 4.0)


def variants(args: list[str]) -> dict[str, dict[str, str]]:
    """NAME=VAR=VALUE,VAR=VALUE arguments as {name: {var: value}}."""
    out = {}
    for arg in args:
        name, _, pairs = arg.partition("=")
        out[name] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    return out


def run_variant(env: dict[str, str], names: list[str], capacity: int, step_s: float, workdir: Path) -> list[dict]:
    server = Server([str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"], env, PORT_BASE)
    try:
        targets = write_targets(workdir / "targets", server.base, names)
        url = server.base + "/user/" + names[0].replace(" ", "%20")
        attack_csv(targets, 100, 1.0, workdir, CLIENT_TIMEOUT_S)  # warm-up
        drain(url)
        steps = []
        for multiple in MULTIPLES:
            rate = round(capacity * multiple)
            step = summarise(
                parse(attack_csv(targets, rate, step_s, workdir, CLIENT_TIMEOUT_S)), multiple, rate, step_s
            )
            drain(url)
            server.quiesce()
            steps.append(asdict(step))
        return steps
    finally:
        server.stop()


def alternating(
    settings: Settings, chosen: dict[str, dict[str, str]], rounds: int
) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(round, variant, the API's environment) for every variant of every round, in alternating order."""
    for r in range(rounds):
        for name in list(chosen) if r % 2 == 0 else list(reversed(chosen)):
            env = env_for(settings, UMS_API_BIND=f"127.0.0.1:{PORT_BASE}", UMS_API_ACCESS_LOG="/dev/null",
                          UMS_LOG_LEVEL="WARNING", **chosen[name])  # fmt: skip
            yield r + 1, name, env


@contextlib.contextmanager
def projected_names(prefix: str) -> Iterator[tuple[Settings, list[str]]]:
    """Settings under a fresh key prefix and the names of the users projected there, deleted after."""
    run = uuid.uuid4().hex[:6]
    tag = f"{prefix}-{run}"
    settings, people = projected(run, tag)
    try:
        yield settings, [u.name.value for u in people]
    finally:
        forget(settings, tag)


def write_run(name: str, payload: dict) -> None:
    """A comparison's figures under .run/ (never bench/results: a run of one part)."""
    out = ROOT / ".run" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    capacity, rounds, step_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    chosen = variants(sys.argv[4:])
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    with projected_names("bench-ab") as (settings, names), tempfile.TemporaryDirectory() as tmp:
        for r, name, env in alternating(settings, chosen, rounds):
            for step in run_variant(env, names, capacity, step_s, Path(tmp)):
                results[name].append(step)
                log.info("round %d %s %.0fx: goodput %.0f/s, 2xx p99 %.1f ms, 503 %d p99 %.1f ms (on arrival "
                         "%d, p99 %.1f; after queueing p99 %.1f), timeouts %d", r, name, step["multiple"],
                         step["goodput_rps"], step["admitted_p99_ms"], step["rejected"], step["reject_p99_ms"],
                         step["rejected_on_arrival"], step["reject_arrival_p99_ms"],
                         step["reject_dequeue_p99_ms"], step["timeouts"])  # fmt: skip
    write_run("admission-ab.json", {"capacity": capacity, "step_s": step_s, "variants": chosen, "steps": results})


if __name__ == "__main__":
    main()
