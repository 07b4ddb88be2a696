"""A steady open-loop reader in the background (vegeta at a fixed rate), its requests split into time windows.

One vegeta process runs from `start` to `stop`, pinned to the load generator's core; every
request keeps its send time, so the latencies of any stretch (a baseline, a rebuild, a gc)
come out of the same run afterwards. Open loop: a stalled API shows as latency and
timeouts, never as fewer requests (no coordinated omission).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import LOAD_CPUS, percentile, pinned
from bench.loadgen import TIMEOUT_S, vegeta, write_targets

log = logging.getLogger("bench")
RATE = 500


@dataclass(frozen=True)
class Window:
    """The reads sent between two wall-clock times."""

    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failed: int  # transport errors, timeouts, and every status but the expected one (503 shed included)
    codes: dict[str, int]  # status -> requests (0: no answer within the timeout, or a transport error)
    # Seconds from the window's start (whole, by send time) -> failed reads sent in it: when they failed.
    failed_at_s: dict[str, int]
    # The longest pause between two sends (nominal 1/rate; the window's ends count as sends) and when it
    # began, seconds into the window: a load generator that lost its core sends what it owes in a burst,
    # which an API may rightly shed.
    max_send_gap_ms: float = 0.0
    max_send_gap_at_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Reader:
    """vegeta reading `names` from `base` at `rate` req/s until `stop`; `window` summarises a stretch."""

    def __init__(self, base: str, names: list[str], workdir: Path, rate: int = RATE, expect: int = 200) -> None:
        self.expect = expect
        self.output = workdir / "reader.bin"
        targets = write_targets(workdir / "reader-targets", base, names)
        command = [vegeta(), "attack", f"-rate={rate}/1s", "-duration=0", f"-targets={targets}"]
        command += [f"-timeout={TIMEOUT_S}s", "-keepalive=true", f"-output={self.output}"]
        self.proc = subprocess.Popen(pinned(command, LOAD_CPUS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.rows: list[tuple[float, int, float]] = []  # (sent at, epoch s; status; latency ms)

    def stop(self) -> None:
        """End the attack (vegeta writes what is in flight on SIGINT) and read every request back."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        encoded = subprocess.run(
            [vegeta(), "encode", "-to=csv", str(self.output)], capture_output=True, text=True, check=True
        )
        self.rows = [(int(r[0]) / 1e9, int(r[1]), int(r[2]) / 1e6) for r in csv.reader(io.StringIO(encoded.stdout))]
        self.output.unlink(missing_ok=True)
        if not self.rows:
            raise RuntimeError(f"the reader sent nothing: {err.decode(errors='replace')[-500:]}")

    def window(self, start: float, end: float) -> Window:
        """Requests sent in [start, end) (time.time() seconds)."""
        picked = [(sent, code, ms) for sent, code, ms in self.rows if start <= sent < end]
        latencies = sorted(ms for _, _, ms in picked)
        codes: dict[str, int] = {}
        failed_at: dict[str, int] = {}
        for sent, code, _ in picked:
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code != self.expect:
                second = str(int(sent - start))
                failed_at[second] = failed_at.get(second, 0) + 1
        # The window's ends count as sends: a reader silent through the whole window paused through it.
        sends = [start, *sorted(sent for sent, _, _ in picked), end]
        gap, gap_at = max((b - a, a) for a, b in itertools.pairwise(sends))
        return Window(
            requests=len(picked),
            p50_ms=round(percentile(latencies, 50), 3),
            p99_ms=round(percentile(latencies, 99), 3),
            max_ms=round(latencies[-1], 3) if latencies else float("nan"),
            failed=sum(failed_at.values()),
            codes=codes,
            failed_at_s=failed_at,
            max_send_gap_ms=round(gap * 1000, 1),
            max_send_gap_at_s=round(gap_at - start, 2),
        )


def quiet(seconds: float) -> tuple[float, float]:
    """A stretch with nothing running beside the reader: (start, end) in time.time() seconds."""
    start = time.time()
    time.sleep(seconds)  # the baseline is the passing of time itself, not a wait for an event
    return start, time.time()
