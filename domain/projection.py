"""The projection rule: which event a user's view shows.

The rule is the same in every store: an event replaces the current view only
when its version is strictly newer. Duplicates (same version) and stale
events (older version) change nothing, so at-least-once delivery, replays and
reordering all converge on "the newest version per user".
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.events import UserAdded, UserRemoved, Version

Event = UserAdded | UserRemoved


def newer(candidate: Version, current: Version | None) -> bool:
    """True when an event with `candidate` must replace a view at `current`."""
    return current is None or candidate > current


def newest_per_user(events: Iterable[Event]) -> dict[str, Event]:
    """Fold events into the view each user ends with (tombstones included)."""
    view: dict[str, Event] = {}
    for event in events:
        key = event.key
        held = view.get(key)
        if newer(event.version, held.version if held is not None else None):
            view[key] = event
    return view
