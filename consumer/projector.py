"""Events in, applied count out: the Kafka-free half of the consumer."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.marks import Mark
from adapters.store import ProjectionStore
from domain import newest_per_user
from domain.projection import Event


class Projector:
    """Writes a batch of events to each target generation through the fence."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def apply(self, events: Sequence[Event], targets: Sequence[int], mark: Mark | None = None) -> int:
        """Return how many users the batch changed in the first (live) target; `mark` goes after it all."""
        # Within a batch only the newest version per user can win: send just those.
        newest = list(newest_per_user(events).values())
        applied = 0
        for n, generation in enumerate(targets):
            changed = self.store.apply(newest, generation, mark=mark if n == len(targets) - 1 else None)
            if n == 0:
                applied = changed
        return applied
