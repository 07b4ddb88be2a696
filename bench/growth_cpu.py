"""CPU seconds by process over a growth phase: whose cost per event grows with the number of users.

Every process of a growth run shares the machine's cores, so a rate that falls at 10M says only
that some process spent more per event. A snapshot at a phase's start and end, per process:
Redis (its own INFO counters), the broker (its pid from the stack), the API the readers use
(master and workers), the command itself (read by phases.Command while it runs: it may be
SIGKILLed at its flip), and the machine's busy time, whose remainder is everything else
(MariaDB, the load generator, this harness).

CPU seconds say who worked, not who waited: on shared cores a reader's request is late when
Redis or the API is runnable but not running. Their run-queue delay (schedstat) over a phase,
in seconds per second, says how long that was.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import redis

from bench.common import children, cpu_seconds, cpu_ticks


def machine_busy_s() -> float:
    """CPU seconds all cores have run something since boot (/proc/stat): not idle, iowait or steal."""
    ticks = cpu_ticks()
    # Steal is time the hypervisor ran someone else: counted as busy, it read as "other" per event.
    return (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (0 for a process already gone)."""
    total = 0.0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(each)
    return total


def run_queue_wait_s(pid: int) -> float:
    """Seconds a process's threads (and its children's) were runnable but not running (0 if gone)."""
    total = 0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{each}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += int((task / "schedstat").read_text().split()[1])  # nanoseconds
    return total / 1e9


def kafka_pid() -> int | None:
    """The stack's broker (services/stack.sh writes its pid); None outside the stack."""
    stack = os.environ.get("UMS_STACK_DIR")
    path = Path(stack, "kafka", "kafka.pid") if stack else None
    try:
        return int(path.read_text().split()[0]) if path else None
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """Snapshots of Redis's, the broker's, the API's and the machine's CPU seconds, and the servers' run-queue waits."""

    def __init__(self, client: redis.Redis, api_pid: int) -> None:
        self.client, self.api_pid = client, api_pid
        self.kafka, self.redis = kafka_pid(), int(client.info("server")["process_id"])  # local here

    def snapshot(self) -> dict[str, float]:
        info = self.client.info("cpu")
        shot = {
            "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "api": tree_cpu_s(self.api_pid),
            "machine": machine_busy_s(),
        }
        if self.kafka is not None:
            shot["kafka"] = tree_cpu_s(self.kafka)
        return shot

    def waits(self) -> dict[str, float]:
        """Run-queue seconds so far of Redis, the API (master and workers) and the broker."""
        pids = {"redis": self.redis, "api": self.api_pid, "kafka": self.kafka}
        return {name: run_queue_wait_s(pid) for name, pid in pids.items() if pid is not None}


def wait_per_s(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Run-queue seconds per second of a phase, by process: 0.4 means runnable, not running, 40 % of it."""
    return {name: round((after[name] - before[name]) / seconds, 3) for name in before if name in after}


def per_event_us(before: dict[str, float], after: dict[str, float], command_s: float, events: int) -> dict[str, float]:
    """CPU µs per event by process over a phase; `other` is the machine's busy time nobody named took."""
    used = {name: after[name] - before[name] for name in before if name in after}
    used["command"] = command_s
    used["other"] = used.pop("machine") - sum(used.values())
    return {name: round(seconds / events * 1e6, 2) for name, seconds in used.items()}
