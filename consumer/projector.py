"""Events in, applied count out: the Kafka-free half of the consumer."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.store import ProjectionStore
from domain import newest_per_user
from domain.projection import Event


class Projector:
    """Writes a batch of events to each target generation through the fence."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def apply(self, events: Sequence[Event], targets: Sequence[int]) -> int:
        """Return how many users the batch changed in the first (live) target."""
        # Within a batch only the newest version per user can win: send just those.
        newest = list(newest_per_user(events).values())
        applied = 0
        for n, generation in enumerate(targets):
            changed = self.store.apply(newest, generation)
            if n == 0:
                applied = changed
        return applied
