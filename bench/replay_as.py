"""`python -m bench.replay_as KEYS_PER_CALL NICE <ums-find args>`: the CLI with another script size and niceness.

Bench only (bench/readers_first.py): a rebuild's script size is a constant of consumer/replay.py,
set here before the command runs, so a curve can be measured without a setting nobody should
turn; the niceness is UMS_MAINTENANCE_NICE.
"""

from __future__ import annotations

import os
import sys

import consumer.replay
from ums_find.cli import main as cli


def main() -> None:
    keys, nice = int(sys.argv[1]), int(sys.argv[2])
    consumer.replay.REPLAY_KEYS_PER_CALL = keys
    os.environ["UMS_MAINTENANCE_NICE"] = str(nice)
    cli(sys.argv[3:])


if __name__ == "__main__":
    main()
