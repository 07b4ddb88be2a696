"""Our consumer as it fetched before issue 15: `consume(batch_size, batch_timeout_s)`, which waits for a
full batch or the timeout, so a lone event always waited the whole timeout. Everything else is
`ums-find consume`; bench/freshness.py measures it beside the current fetch, in the same run.
"""

from __future__ import annotations

from confluent_kafka import Message

from consumer.loop import ConsumeLoop
from ums_find.cli import main


def fetch_full_batch(self: ConsumeLoop) -> list[Message]:
    return self.consumer.consume(self.settings.batch_size, self.settings.batch_timeout_s)


if __name__ == "__main__":
    ConsumeLoop.fetch = fetch_full_batch  # type: ignore[method-assign]
    main(["consume"])
