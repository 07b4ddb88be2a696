"""Which topic a generation's positions are offsets of: Kafka's topic id (KIP-516), kept beside them.

    {P}:pos:topic:<g>   the id of the event topic whose offsets {P}:pos:<g> holds

An offset means nothing across topics. A topic deleted and created again under its name, or its
events mirrored to a new cluster (MirrorMaker), numbers them from 0 again; a consumer resuming
at positions saved on the old one skips that many events of the new one, silently. So each
generation records the topic id its positions were read from: a replay stamps the generation it
builds before reading, a live consumer records the id where none is, and one that finds another
id there clears the generation's positions (consumer/lineage.py). The sweep deletes the record
with the positions (same `pos:` prefix, generation last).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from adapters.generations import Generations
from adapters.lua import RETOPIC

# How `adopt` ended.
MOVED, RECORDED, CLEARED = 0, 1, 2


def topic_id(admin: AdminClient, topic: str, timeout: float = 5.0) -> str | None:
    """The topic's id as the broker reports it now; None when unknown (missing, unreachable, refused)."""
    return described_id(admin, topic, timeout)[0]


def described_id(admin: AdminClient, topic: str, timeout: float = 5.0) -> tuple[str | None, str]:
    """The topic's id, or None and why the broker did not give it."""
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    try:
        found = future.result(timeout).topic_id
    except TimeoutError:
        return None, f"no answer within {timeout:.0f} s"
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None, "the topic does not exist"
        return None, err.str()
    if found is None or not (found.get_most_significant_bits() or found.get_least_significant_bits()):
        return None, "a broker without topic ids (before 2.8)"  # it answers the zero id for every topic
    return str(found), ""


class TopicRecord:
    """The topic id recorded for each generation of one key prefix."""

    def __init__(self, generations: Generations) -> None:
        self.generations = generations
        self.client = generations.client
        self._retopic = self.client.register_script(RETOPIC)

    def read(self, generation: int) -> str | None:
        found = self.client.get(self.generations.topic_key(generation))
        return found.decode() if isinstance(found, bytes) else found

    def stamp(self, generation: int, topic: str) -> None:
        """A rebuild's generation will hold offsets of `topic` (set before it reads any)."""
        self.client.set(self.generations.topic_key(generation), topic)

    def adopt(self, generation: int, found: str | None, topic: str) -> int:
        """Record `topic` for `generation` if the record still says `found`; clear its positions when it
        named another topic. MOVED: the record changed since it was read, nothing done."""
        gens = self.generations
        keys = [gens.topic_key(generation), gens.pos_key(generation), gens.fill_key(generation)]
        return int(self._retopic(keys=keys, args=[found or "", topic]))
