"""Fill marks: how far a generation's data is written, sent after that data on the same connection.

`{P}:pos:fill:<g>` maps a partition (or "mysql") to the next offset (or row count) whose data
generation g holds. A mark goes after the data it covers: at the end of the batch on the
connection that carried it, or (the ordinary retry with two targets, Redis Cluster) once the
data was acknowledged. Either way Redis runs it after the data, and a snapshot, an AOF or a
replica's stream is a prefix of what Redis ran, so a rollback that keeps the mark keeps the
data. (One exception: a mark runs even when a data call before it in the same pipeline failed;
the batch is then written again, mark and all, before anything is saved, and a mark is never
sent alone without loading the fence's script first, so NOSCRIPT cannot single out the data.)
Consumers save positions only up to their marks; a rebuild flips only when its marks reach
every end (adapters/lua.py: SAVE_POSITIONS, MARK_FILLED, FLIP). Redis Cluster: one master's
prefix says nothing of another's (docs/decisions.md, "Redis going back in time").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class WritesLost(Exception):
    """A mark was found behind its writer's last one: Redis lost writes it had acknowledged."""

    def __init__(self, key: str, behind: Mapping[str, tuple[int, int]]) -> None:
        text = ", ".join(f"{f} {was} -> {now}" for f, (was, now) in sorted(behind.items()))
        super().__init__(f"{key} went back ({text})")
        self.behind = dict(behind)  # field -> (last marked, found; -1: none)


@dataclass(frozen=True)
class Mark:
    """One MARK_FILLED call: `marks` to record, `floors` (what this writer marked before) to check."""

    key: str
    marks: Mapping[str, int]
    floors: Mapping[str, int] = field(default_factory=dict)

    def args(self) -> list[str | int]:
        """ARGV triples field, mark, floor (-1: nothing to record, or nothing to check)."""
        args: list[str | int] = []
        for name in sorted(self.marks.keys() | self.floors.keys()):
            args += [name, self.marks.get(name, -1), self.floors.get(name, -1)]
        return args

    def check(self, reply: Any) -> None:
        """Raise WritesLost if the script found a field behind its floor (it then recorded nothing)."""
        if isinstance(reply, list):
            found = {bytes(f).decode(): int(n) for f, n in zip(reply[::2], reply[1::2], strict=True)}
            raise WritesLost(self.key, {f: (self.floors.get(f, -1), n) for f, n in found.items()})
