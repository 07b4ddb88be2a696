"""The commands a growth run times: `consume`, `replay`, `backfill --from-mysql`, `gc`, `reconcile`.

Each runs as its own `ums-find` process. Its peak resident memory is the kernel's high-water
mark of the process's own address space (VmHWM in /proc/<pid>/status), read every 20 ms until
it exits (the mark only rises). Not os.wait4()'s ru_maxrss: Linux folds the *parent's* peak
RSS into a child's ru_maxrss when the child execs (the address space it leaves behind is the
parent's copy), so every child of this harness showed the harness's own 60-140 MiB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapters.generations import Generations
from adapters.settings import Settings
from adapters.store import ProjectionStore, make_redis
from bench.common import BIN, ROOT, cpu_seconds, env_for, wait_for

log = logging.getLogger("bench")
POLL_S = 0.02


@dataclass
class Run:
    """One command: wall-clock marks (time.time()), exit code, peak RSS, what it printed."""

    started: float
    ended: float = 0.0
    returncode: int | None = None
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0  # the process's own CPU seconds when last seen alive (replay workers not counted)
    output: str = ""
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def since_start(self, mark: str) -> float:
        return self.marks[mark] - self.started


class Command:
    """`ums-find <args>` started now, with the run's settings; its output kept in `workdir`."""

    def __init__(
        self, settings: Settings, args: list[str], workdir: Path, program: list[str] | None = None, level: str = "INFO"
    ) -> None:
        self.args = args
        self.log = workdir / f"{args[0]}.log"
        self.run = Run(time.time())
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [*(program or [str(BIN / "ums-find")]), "--log-text", *args],
                env=env_for(settings, UMS_LOG_LEVEL=level),  # at INFO the governor says when it slows down
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                # As a supervisor starts it: the pid watched is the worker's, not a parent that
                # waits for it in a session of its own (ums_find/priority.py).
                start_new_session=True,
            )
        self.peak_kib = 0
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while True:
            try:
                lines = status.read_text().splitlines()
            except OSError:
                return  # reaped
            hwm = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
            if not hwm:
                return  # a zombie: its memory is gone, the last reading stands
            self.peak_kib = max(self.peak_kib, hwm[0])
            with contextlib.suppress(OSError, IndexError, ValueError):
                self.run.cpu_s = cpu_seconds(self.proc.pid)
            time.sleep(POLL_S)

    def finish(self, kill: bool = False) -> Run:
        """Wait for the process (SIGKILL it first if `kill`) and record its exit and peak RSS."""
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        _, status, _ = os.wait4(self.proc.pid, 0)
        self.run.ended = time.time()
        self.proc.returncode = self.run.returncode = os.waitstatus_to_exitcode(status)
        self.watcher.join()
        self.run.peak_rss_mib = round(self.peak_kib / 1024, 1)
        self.run.output = self.log.read_text()
        return self.run

    def stop(self) -> Run:
        """SIGTERM (a clean stop), then wait."""
        self.proc.terminate()
        return self.finish()

    def check(self, run: Run, allowed: tuple[int, ...] = (0,)) -> Run:
        if run.returncode not in allowed:
            raise RuntimeError(f"{self.args} exited {run.returncode}: {run.output[-2000:]}")
        return run


def store_for(settings: Settings) -> ProjectionStore:
    return ProjectionStore(make_redis(settings, timeout_s=10), settings.key_prefix)


def projected(generations: Generations) -> int:
    """Events the live generation's positions cover, summed over partitions (the topic starts at 0)."""
    pointer = generations.read()
    return sum(generations.all_positions(pointer.live).values()) if pointer else 0


def consume(settings: Settings, events: int, workdir: Path) -> tuple[Command, dict[str, float]]:
    """Start the live consumer on the whole topic; time it from process start until its positions
    cover every event. Steady: the rate between 10 % and 90 % of the events. It keeps running."""
    command = Command(settings, ["consume"], workdir)
    generations = Generations(store_for(settings))
    samples: list[tuple[float, int]] = []

    def done() -> bool:
        if command.proc.poll() is not None:
            raise RuntimeError(f"the consumer exited {command.proc.returncode}: {command.log.read_text()[-2000:]}")
        samples.append((time.time(), projected(generations)))
        return samples[-1][1] >= events

    wait_for(done, 3600, "the consumer to project the whole topic", interval=0.05)
    seconds = samples[-1][0] - command.run.started
    first = next(s for s in samples if s[1] >= events * 0.1)
    last = next(s for s in samples if s[1] >= events * 0.9)
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else events / seconds
    return command, {"seconds": seconds, "eps_from_start": events / seconds, "eps_steady": steady}


def until_flip(command: Command, store: ProjectionStore, before: int | None) -> None:
    """Poll the pointer until it names another generation; mark the moment as `flip`."""

    def flipped() -> bool:
        if store.live_generation() != before:
            return True
        if command.proc.poll() is not None:
            raise RuntimeError(f"{command.args} ended without a flip: {command.log.read_text()[-2000:]}")
        return False

    wait_for(flipped, 7200, "the flip", interval=POLL_S)
    command.run.marks["flip"] = time.time()


def to_flip(settings: Settings, args: list[str], workdir: Path, program: list[str] | None = None) -> Run:
    """`ums-find <args>` (a replay or a backfill), SIGKILLed right after its flip: the generation
    it replaced is left whole for `gc` to delete. After flipping, a rebuild waits
    2 x UMS_GENERATION_CACHE_S + 0.5 s (readers move to the new generation) before it deletes
    anything; polling every 20 ms lands well inside that, and its deletion is the very call
    `gc` makes (Generations.sweep), so it is measured once, as `gc`."""
    store = store_for(settings)
    # DEBUG: every governor window (~2 lines a second), so a shed second can be set against them.
    command = Command(settings, args, workdir, program, level="DEBUG")
    until_flip(command, store, store.live_generation())
    run = command.finish(kill=True)
    run.ended = run.marks["flip"]
    return command.check(run, allowed=(0, -signal.SIGKILL))


def gc(settings: Settings, workdir: Path) -> tuple[Run, int]:
    """`ums-find gc`: the run and how many user keys it deleted."""
    command = Command(settings, ["gc"], workdir)
    run = command.check(command.finish())
    words = [line for line in run.output.splitlines() if line.startswith("deleted ")]
    return run, int(words[-1].split()[1]) if words else -1


def reconcile(settings: Settings, workdir: Path) -> Run:
    """`ums-find reconcile` (report only; exit 1 means drift, which this data set should not have)."""
    command = Command(settings, ["reconcile"], workdir)
    return command.check(command.finish(), allowed=(0, 1))
