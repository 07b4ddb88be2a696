"""Interpreter settings each API worker applies after gunicorn forks it."""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import threading
from pathlib import Path

from adapters.settings import Settings

log = logging.getLogger(__name__)


def apply_switch_interval(settings: Settings) -> float:
    """Set the GIL switch interval from UMS_API_SWITCH_INTERVAL_MS (0: leave Python's); the interval in force."""
    milliseconds = settings.api_switch_interval_ms
    if milliseconds > 0:
        sys.setswitchinterval(milliseconds / 1000)
        log.debug("GIL switch interval set to %s ms", milliseconds)
    return sys.getswitchinterval()


def lower_this_thread(steps: int) -> int:
    """Lower the calling thread's scheduling priority by `steps` nice steps below its process's; the nice set (0: none).

    Linux applies PRIO_PROCESS with a thread id to that thread alone, and lowering needs no privilege.
    Never raises: it runs as the thread pool's initializer, and a failed initializer breaks the pool.
    """
    if steps <= 0:
        return 0
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + steps)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:  # a sandbox that refuses it: the thread serves at the process's priority
        log.warning("a serving thread keeps the main thread's priority (%s)", exc)
        return 0
    return nice


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's limit)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return max(1, cores)
    if quota != "max" and int(period) > 0:
        cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, cores)


def freeze_boot_objects() -> int:
    """Move every object alive now (the app, its modules) out of the collector's reach; how many.

    A full collection walks every tracked object: 50-60k after boot, 18-40 ms of wall time with
    the worker's threads waiting, every 10-30 s at 1,000 req/s (docs/decisions.md "Garbage
    collection pauses"). What boot built lives as long as the worker, so scanning it finds nothing.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
