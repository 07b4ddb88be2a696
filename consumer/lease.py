"""The rebuild's lease: its claim renewed in the background, so a replay that stops renewing loses it."""

from __future__ import annotations

import logging
import threading

from adapters.generations import ClaimLost, Generations

log = logging.getLogger(__name__)


class Lease:
    """Renews the rebuild's claim in the background; `check()` raises ClaimLost once it is gone."""

    def __init__(self, generations: Generations, claim: str, lease_ms: int) -> None:
        self.generations = generations
        self.claim = claim
        self.lease_ms = lease_ms
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="rebuild-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def check(self) -> None:
        if self.lost.is_set():
            raise ClaimLost(f"the rebuild's claim {self.claim} expired or was taken: stopping without a flip")

    def _renew(self) -> None:
        while not self._done.wait(self.lease_ms / 3000):
            try:
                if not self.generations.renew(self.claim, self.lease_ms):
                    self.lost.set()
                    return
            except Exception as exc:  # a blip must not kill the rebuild; the lease covers it
                log.warning("could not renew the rebuild's lease: %r", exc)
