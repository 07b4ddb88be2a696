"""The rig's floor past capacity (`python -m bench.rig_floor CAPACITY ROUNDS`, or within `make bench`).

A Go server (bench/peers/floor) answers every request with the 503 our API sheds with, and does
nothing else, on the API's pinned core; the same vegeta drives it at the overload steps' rates.
Whatever p99 the client measures from it is what the rig (the client, the loopback, scheduling
on the pinned core) adds at that rate in that run, not a server's work (docs/decisions.md "The rig's floor").
Standalone, it writes .run/rig-floor.json (a run of one part); never bench/results.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import PORT_BASE, ROOT
from bench.loadgen import attack_csv
from bench.overload import CLIENT_TIMEOUT_S, STEP_S, parse, summarise
from bench.servers import Server

log = logging.getLogger("bench")
MULTIPLES = (2.0, 3.0, 4.0)  # where the API sheds most of what it is offered
PORT = PORT_BASE + 8  # bench/fresh_limit.py's run of one part takes + 7


def floor_binary() -> str:
    """The floor server (bench/tools.sh builds it once into the cache)."""
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "tools.sh"), "floor"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def floor_steps(capacity_rps: int, workdir: Path, step_s: float = STEP_S) -> list[dict[str, Any]]:
    """One step per multiple of `capacity_rps` against the floor server: the overload steps' figures."""
    server = Server([floor_binary(), f"127.0.0.1:{PORT}"], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, PORT)
    try:
        targets = workdir / "t-floor"
        targets.write_text(f"GET {server.base}/user/floor\n")
        attack_csv(targets, 100, 1.0, workdir, CLIENT_TIMEOUT_S)  # warm-up, as every peer's steps have
        steps = []
        for multiple in MULTIPLES:
            rate = round(multiple * capacity_rps)
            step = summarise(
                parse(attack_csv(targets, rate, step_s, workdir, CLIENT_TIMEOUT_S)), multiple, rate, step_s
            )
            log.info("  floor %.0fx (%d/s): 503 %d, p99 %.1f ms, timeouts %d", multiple, rate, step.rejected,
                     step.reject_p99_ms, step.timeouts)  # fmt: skip
            steps.append(asdict(step))
        return steps
    finally:
        server.stop()


def floor_or_none(capacity_rps: int, workdir: Path) -> list[dict[str, Any]]:
    """floor_steps, or [] if the floor cannot run (a port taken, no Go): it never costs the suite its results."""
    try:
        return floor_steps(capacity_rps, workdir)
    except Exception:
        log.exception("the rig's floor was not measured")
        return []


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    capacity, rounds = int(sys.argv[1]), int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        runs = [floor_steps(capacity, Path(tmp)) for _ in range(rounds)]
    out = ROOT / ".run" / "rig-floor.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"capacity_rps": capacity, "step_s": STEP_S, "rounds": runs}, indent=1))


if __name__ == "__main__":
    main()
