"""Progress of long work: a real progress bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

import click

log = logging.getLogger(__name__)


class Progress:
    """`with Progress(total, "replay") as p: p.update(n)`; shows done/total, rate and ETA."""

    def __init__(self, total: int, label: str, tty: bool | None = None, every_s: float = 5.0) -> None:
        self.total = total
        self.label = label
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every_s = every_s
        self.done = 0
        self._started = time.monotonic()
        self._logged = self._started
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if self.tty:
            self._bar = click.progressbar(
                length=max(self.total, 1),
                label=self.label,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda rate: f"{rate:,.0f}/s" if rate else None,
                file=sys.stderr,
            ).__enter__()
        return self

    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n, current_item=self.rate())
            return
        now = time.monotonic()
        if now - self._logged >= self.every_s:
            self._logged = now
            self.log_line()

    def log_line(self) -> None:
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        log.info(
            "%s: %d of %d (%.1f%%), %.0f/s, ETA %.0f s",
            self.label,
            self.done,
            self.total,
            pct,
            rate,
            left,
            extra={"done": self.done, "total": self.total, "rate": round(rate)},
        )

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)
        elif kind is None:
            self.log_line()
