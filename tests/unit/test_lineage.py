"""Positions saved on a topic that was then replaced (deleted and created again, mirrored to a new
cluster): found by the topic id and never resumed from; the consume loop on fakeredis."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from adapters.generations import Generations
from adapters.lineage import CLEARED, MOVED, RECORDED, TopicRecord
from consumer.lineage import Lineage, TopicWatch
from tests.helpers import save_written, wait_until
from tests.unit.test_loop import make_loop, phones, put, two_partitions


class Id:
    """A topic id as confluent-kafka gives it (Uuid): shown as `name`; ZERO is a broker without ids."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def get_most_significant_bits(self) -> int:
        return 0

    def get_least_significant_bits(self) -> int:
        return 0 if self.name == ZERO else 1


ZERO = "AAAAAAAAAAAAAAAAAAAAAA"


class Described:
    def __init__(self, topic_id: str | None) -> None:
        self.topic_id = Id(topic_id) if topic_id else None

    def result(self, timeout=None):
        if self.topic_id is None:
            raise TimeoutError("no answer")
        return self


class FakeAdmin:
    """describe_topics as confluent-kafka answers it; `topic_id` is what the broker says now."""

    def __init__(self, topic_id: str | None) -> None:
        self.topic_id = topic_id
        self.asked = 0

    def describe_topics(self, topics, request_timeout=None):
        self.asked += 1
        return {name: Described(self.topic_id) for name in topics.topic_names}


def watch_of(admin: FakeAdmin) -> TopicWatch:
    """A watch that has asked once, as its thread does at once."""
    watch = TopicWatch(admin, "t.users", threading.Event())  # type: ignore[arg-type]
    watch.ask()
    return watch


def new_topic_logs() -> dict:
    """The replaced topic's events, numbered from 0 again: three new users on partition 0, one on 1."""
    return {
        0: [
            put("Ganesh Rao", 9_000_000_011, 0, 0),
            put("Ravi Teja", 9_000_000_012, 0, 1),
            put("Anil Kapoor", 9_000_000_013, 0, 2),
        ],
        1: [put("Mahesh Babu", 9_000_000_014, 1, 0)],
    }


def replaced_errors(caplog) -> list[str]:
    return [r.getMessage()[:61] for r in caplog.records if r.name == "consumer.lineage"]


def test_a_restart_on_a_replaced_topic_reads_every_partition_from_its_beginning(store, tmp_path, caplog):
    admin = FakeAdmin("id-A")
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()
    assert TopicRecord(Generations(store)).read(1) == "id-A"
    assert Generations(store).all_positions(1) == {0: 2, 1: 2}
    admin.topic_id = "id-B"  # deleted and created again: offsets start at 0
    with caplog.at_level(logging.ERROR, logger="consumer.lineage"):
        loop, consumer = make_loop(store, new_topic_logs(), tmp_path, watch_of(admin))
        loop.step()
    assert consumer.assigned_offsets == [[(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]]
    assert store.get("ganesh rao", 1) is not None  # offset 0 of the new topic: skipped before
    assert store.get("anil kapoor", 1) is not None
    assert store.get("mahesh babu", 1) is not None
    assert phones(store)["suresh babu"] == 9_000_000_003  # only the old topic had it: it stays
    assert Generations(store).all_positions(1) == {0: 3, 1: 1}
    assert TopicRecord(Generations(store)).read(1) == "id-B"
    assert replaced_errors(caplog) == ["event topic t.users is not the topic generation 1's positions"]
    assert loop.metrics.replaced._value.get() == 1
    assert loop.metrics.replaced_at._value.get() > 0  # the alert reads when
    assert admin.asked == 3  # once by each watch, once more to confirm the other id: never by a check alone


def test_a_topic_replaced_while_running_is_read_again_from_its_beginning(store, tmp_path):
    admin = FakeAdmin("id-A")
    watch = watch_of(admin)
    loop, consumer = make_loop(store, two_partitions(), tmp_path, watch)
    loop.step()
    consumer.logs.clear()
    consumer.logs.update(new_topic_logs())  # replaced under the running consumer, which reads on at 2
    admin.topic_id = "id-B"
    watch.ask()  # what the watch's thread does every CHECK_S
    assert loop.positions.topic_moved()
    loop.step()  # that batch is dropped: every partition goes back to its beginning
    assert sorted(consumer.seeks) == [(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]
    loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("ravi teja", 1) is not None
    assert Generations(store).all_positions(1) == {0: 3, 1: 1}
    assert not loop.positions.topic_moved()


def test_a_consumer_that_heard_the_old_id_leaves_the_new_record_alone(store, tmp_path, caplog):
    admin = FakeAdmin("id-A")
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()
    record = TopicRecord(Generations(store))
    assert record.adopt(1, "id-A", "id-B") == CLEARED  # another consumer saw the new topic first
    save_written(Generations(store), Generations(store).read(), {0: 1})
    admin.topic_id = "id-B"
    stale = watch_of(admin)
    stale.current = "id-A"  # heard before the replacement
    with caplog.at_level(logging.ERROR, logger="consumer.lineage"):
        Lineage(stale, Generations(store)).check(1)
    assert stale.current == "id-B" and record.read(1) == "id-B"
    assert Generations(store).all_positions(1) == {0: 1}  # the new topic's positions stay
    assert replaced_errors(caplog) == []


def test_positions_another_consumer_cleared_are_not_reported_as_lost_writes(store, tmp_path, caplog):
    admin = FakeAdmin("id-A")
    loop, consumer = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()
    TopicRecord(Generations(store)).adopt(1, "id-A", "id-B")
    admin.topic_id = "id-B"
    consumer.logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    with caplog.at_level(logging.WARNING):
        loop.step()  # its save finds the positions gone: not Redis losing writes
    assert loop.metrics.redis_rewinds._value.get() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert loop.positions.positioned is None
    loop.step()
    assert sorted(consumer.seeks) == [(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]


def test_an_id_the_broker_does_not_give_yet_is_checked_once_it_does(store, tmp_path):
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(FakeAdmin("id-A")))
    loop.step()
    admin = FakeAdmin(None)  # restarted on a replaced topic while describing it fails
    loop, consumer = make_loop(store, new_topic_logs(), tmp_path, watch_of(admin))
    assert consumer.assigned_offsets == [[(0, 2), (1, 2)]]  # the positions stand: nothing says otherwise
    assert consumer.seeks == [(0, 2), (1, 2)]  # the same, sought again so that librdkafka checks the epochs
    consumer.seeks.clear()
    assert TopicRecord(Generations(store)).read(1) == "id-A" and not loop.positions.topic_moved()
    admin.topic_id = "id-B"
    loop.positions.lineage.watch.ask()  # the watch's first answer
    assert loop.positions.topic_moved()
    loop.step()
    loop.step()
    assert sorted(consumer.seeks) == [(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]
    assert store.get("ganesh rao", 1) is not None  # offset 0 of the new topic


def test_a_record_the_broker_does_not_confirm_or_deny_is_left_alone(store, tmp_path):
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(FakeAdmin("id-A")))
    loop.step()
    record = TopicRecord(Generations(store))
    assert record.adopt(1, "id-A", "id-B") == CLEARED  # a consumer that heard of a newer topic
    save_written(Generations(store), Generations(store).read(), {0: 1})
    admin = FakeAdmin("id-A")
    watch = watch_of(admin)  # heard before the replacement; the broker stops answering after
    admin.topic_id = None
    lineage = Lineage(watch, Generations(store))
    assert lineage.check(1)  # a first check: checked against something now
    assert record.read(1) == "id-B" and Generations(store).all_positions(1) == {0: 1}  # nothing undone
    assert lineage.positioned_on == "id-B"  # saves go under the record, as the positions read
    assert not lineage.moved()  # asked again after the watch's period (UMS_TOPIC_CHECK_S), not at every step
    watch.every_s = 0.0
    assert not lineage.check(1) and lineage.moved()
    admin.topic_id = "id-B"  # the broker answers again: the record was right
    assert not lineage.check(1) and not lineage.moved() and watch.current == "id-B"
    assert Generations(store).all_positions(1) == {0: 1}


def test_a_save_after_another_consumer_cleared_the_positions_is_refused(store, tmp_path):
    admin = FakeAdmin("id-A")
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()  # positioned on id-A, positions {0: 2, 1: 2}
    TopicRecord(Generations(store)).adopt(1, "id-A", "id-B")
    pointer = Generations(store).read()
    # A partition first read from its beginning (floor -1): only the topic check stops its save.
    generations = Generations(store)
    generations.store.send_mark(generations.mark(1, {"3": 57}))  # its batch's data, written
    assert not generations.save_positions(pointer, {3: 57}, {3: -1}, "id-A")
    assert generations.all_positions(1) == {}
    assert generations.save_positions(pointer, {3: 57}, {3: -1}, "id-B")  # on the recorded topic


def test_a_clear_found_at_a_later_assignment_repositions_every_partition(store, tmp_path):
    admin = FakeAdmin("id-A")
    loop, consumer = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()
    admin.topic_id = "id-B"
    loop.positions.lineage.watch.ask()
    consumer.callbacks["assign"](consumer, [TopicPartition("t.users", 2)])  # cooperative: one more partition
    assert loop.positions.positioned is None  # partitions 0 and 1 resume from the cleared positions too


def test_a_clear_keeps_the_mysql_fill_mark(store):
    generations = Generations(store)
    generations.store.send_mark(generations.mark(1, {"0": 9, "mysql": 500}))
    assert TopicRecord(generations).adopt(1, None, "id-A") == RECORDED
    assert TopicRecord(generations).adopt(1, "id-A", "id-B") == CLEARED
    assert generations.over_mysql(1)
    assert store.client.hgetall(generations.fill_key(1)) == {b"mysql": b"500"}


@pytest.mark.parametrize("stamped", ["id-A", "id-B", None])
def test_a_flip_hands_positions_over_only_between_generations_of_one_topic(store, stamped):
    generations, record = Generations(store), TopicRecord(Generations(store))
    pointer, _ = generations.ensure()
    assert record.adopt(1, None, "id-A") == RECORDED
    save_written(generations, pointer, {0: 7})
    target, claim = generations.start(lease_ms=60_000)
    if stamped:
        record.stamp(target, stamped)
    generations.flip(claim, target, pointer.epoch)
    handed = stamped in ("id-A", None)
    assert generations.all_positions(target) == ({0: 7} if handed else {})
    assert record.read(target) == (stamped or "id-A")
    generations.sweep()
    assert record.read(1) is None  # swept with the old generation's positions


def test_a_record_changed_since_it_was_read_is_not_overwritten(store):
    record = TopicRecord(Generations(store))
    assert record.adopt(1, None, "id-A") == RECORDED
    assert record.adopt(1, None, "id-B") == MOVED
    assert record.read(1) == "id-A"


def test_a_broker_without_topic_ids_leaves_the_positions_unchecked(store, tmp_path):
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(FakeAdmin(ZERO)))
    loop.step()
    loop, consumer = make_loop(store, new_topic_logs(), tmp_path, watch_of(FakeAdmin(ZERO)))
    assert consumer.assigned_offsets == [[(0, 2), (1, 2)]]  # as before topic ids: nothing to tell by
    assert TopicRecord(Generations(store)).read(1) is None


def test_a_consumer_assigned_before_its_watch_answered_takes_a_clear_for_what_it_is(store, tmp_path, caplog):
    loop, _ = make_loop(store, two_partitions(), tmp_path, watch_of(FakeAdmin("id-A")))
    loop.step()  # positions {0: 2, 1: 2} on id-A
    admin = FakeAdmin(None)  # restarted on the replaced topic; its watch has no answer yet
    late, consumer = make_loop(store, new_topic_logs(), tmp_path, watch_of(admin))
    assert consumer.assigned_offsets == [[(0, 2), (1, 2)]]  # the record's positions, unchecked as yet
    TopicRecord(Generations(store)).adopt(1, "id-A", "id-B")  # another consumer saw the new topic first
    with caplog.at_level(logging.WARNING):
        late.step()  # its save is refused: the record is not the one its positions were read under
    assert Generations(store).all_positions(1) == {}
    # Not taken for Redis losing writes (an ERROR, and the UmsRedisLostWrites alert).
    assert late.metrics.redis_rewinds._value.get() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    admin.topic_id = "id-B"
    late.positions.lineage.watch.ask()
    late.step()
    late.step()
    assert store.get("ganesh rao", 1) is not None and Generations(store).all_positions(1) == {0: 3, 1: 1}


def test_the_watch_asks_at_once_then_every_period(monkeypatch):
    admin, stop = FakeAdmin("id-A"), threading.Event()
    watch = TopicWatch(admin, "t.users", stop, every_s=0.01)  # type: ignore[arg-type]
    thread = watch.start()
    try:
        wait_until(lambda: admin.asked >= 3 and watch.current == "id-A", 5, "three asks")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_an_id_the_broker_keeps_back_is_said_once(caplog):
    watch = watch_of(FakeAdmin(None))
    with caplog.at_level(logging.INFO, logger="consumer.lineage"):
        for _ in range(5):
            watch.ask()
        watch.admin.topic_id = "id-A"  # type: ignore[attr-defined]
        watch.ask()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "does not give its id (no answer within 5 s)" in said[0], said
    assert said[1] == "topic t.users: its id is known again"
