"""`python -m bench.replay_as KEYS_PER_CALL NICE WORKERS PACE DELAY_MS START CREEP CREEP_AFTER_S <ums-find args>`:
the CLI with another script size, niceness, number of replay workers, pace (events/s, 0: none), governor target
(ms, 0: none), the governor's start (events/s, 0: full speed at once), its creep (1: the limit holds between half the
target and the target) and how long the creep waits (s, from the first chunk each replay phase or worker hands over).

Bench only (bench/readers_first.py): a rebuild's script size is a constant of consumer/replay_kafka.py
(for Kafka events and MySQL pages alike), set here before the command runs, so a curve can be
measured without a setting nobody should turn; the niceness is UMS_MAINTENANCE_NICE, the workers
UMS_REPLAY_WORKERS, the pace UMS_REBUILD_EVENTS_PER_S, the target UMS_REBUILD_REDIS_DELAY_MS and the start
UMS_REBUILD_START_EVENTS_PER_S, and the creep and its wait are constants of consumer/governor.py set as the
script size is. READERS_LOG_LEVEL, when set, is the command's log level (DEBUG otherwise: bench/growth_phases.to_flip).
A spawned replay worker imports the constants afresh, so another script size, creep or creep wait is refused
with more than one worker.
"""

from __future__ import annotations

import os
import sys

import consumer.governor
import consumer.replay_kafka
from ums_find.cli import main as cli


def main() -> None:
    keys, nice, workers, pace = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    delay_ms, start, creep, after = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
    constants = (consumer.replay_kafka.REPLAY_KEYS_PER_CALL, consumer.governor.CREEP, consumer.governor.CREEP_AFTER_S)
    if workers > 1 and (keys, creep, after) != constants:
        raise SystemExit(
            "another script size, creep or creep wait needs one replay worker (spawned workers import the constants)"
        )
    consumer.replay_kafka.REPLAY_KEYS_PER_CALL = keys
    consumer.governor.CREEP = creep
    consumer.governor.CREEP_AFTER_S = after
    os.environ["UMS_MAINTENANCE_NICE"] = str(nice)
    os.environ["UMS_REPLAY_WORKERS"] = str(workers)
    os.environ["UMS_REBUILD_EVENTS_PER_S"] = str(pace)
    os.environ["UMS_REBUILD_REDIS_DELAY_MS"] = str(delay_ms)
    os.environ["UMS_REBUILD_START_EVENTS_PER_S"] = str(start)
    if level := os.environ.get("READERS_LOG_LEVEL"):  # over to_flip's DEBUG (every governor window)
        os.environ["UMS_LOG_LEVEL"] = level
    cli(sys.argv[9:])


if __name__ == "__main__":
    main()
