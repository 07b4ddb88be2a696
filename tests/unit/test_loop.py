"""The consume loop driven by a hand-written fake Kafka consumer, on fakeredis: positions, wipes, flips."""

from __future__ import annotations

import json
import logging
import threading

import fakeredis
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from prometheus_client import CollectorRegistry

from adapters.diagnose import OutOfMemoryError
from adapters.generations import Generations, PositionsWentBack
from adapters.pipelined import PipelinedWrite
from adapters.settings import Settings
from adapters.store import ProjectionStore
from consumer.group import ConsumerFenced
from consumer.loop import CHUNK, ConsumeLoop
from consumer.metrics import ConsumerMetrics
from consumer.positions import Positions
from consumer.projector import Projector
from tests.helpers import save_written

TOPIC = "t.users"
TS = 1_700_000_000_000


class FakeMessage:
    def __init__(
        self, partition: int, offset: int, value: bytes | None, key: bytes | None = None, epoch: int | None = 0
    ) -> None:
        self._p, self._o, self._v, self._k, self._e = partition, offset, value, key, epoch

    def error(self):
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self):
        return self._v

    def key(self):
        return self._k

    def topic(self) -> str:
        return TOPIC

    def timestamp(self):
        return (1, TS + self._o)

    def leader_epoch(self) -> int | None:
        return self._e


class FakeConsumer:
    """The confluent-kafka calls the loop makes, over in-memory partition logs."""

    def __init__(self, logs: dict[int, list[FakeMessage]]) -> None:
        self.logs = logs
        self.next: dict[int, int] = {}
        self.assigned_offsets: list[list[tuple[int, int]]] = []
        self.seeks: list[tuple[int, int]] = []
        self.assigned_epochs: list[list[int | None]] = []
        self.stored: dict[int, int] = {}
        self.callbacks: dict = {}
        self.consume_calls: list[tuple[int, float]] = []
        self.group_calls: list[str] = []  # unsubscribe, poll and close, in order
        self.member: str | None = "pod-a-1"
        self.log_start: dict[int, int] = {}  # partition -> first offset the broker still holds
        self.leaves = True  # a poll after unsubscribe revokes everything and sends the LeaveGroup

    def subscribe(self, topics, on_assign, on_revoke, on_lost) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def assign_all(self) -> None:
        self.callbacks["assign"](self, [TopicPartition(TOPIC, p) for p in sorted(self.logs)])

    def incremental_assign(self, partitions) -> None:
        self.assigned_offsets.append([(tp.partition, tp.offset) for tp in partitions])
        self.assigned_epochs.append([tp.leader_epoch for tp in partitions])
        for tp in partitions:
            self._go(tp, validate=False)

    def seek(self, tp) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self._go(tp)

    def _go(self, tp, validate: bool = True) -> None:
        """As librdkafka 2.16 does (KIP-320): a seek to a position whose leader epoch ended before it, in
        the log as it is now, resumes where that epoch ended. An assignment is not checked (a group
        member knows the leader already: consumer/positions.py)."""
        offset = 0 if tp.offset == OFFSET_BEGINNING or tp.offset < 0 else tp.offset
        if validate and tp.leader_epoch is not None:
            ended = [m.offset() + 1 for m in self.logs[tp.partition] if (m.leader_epoch() or 0) <= tp.leader_epoch]
            offset = min(offset, max(ended, default=0))
        self.next[tp.partition] = offset

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.consume_calls.append((num_messages, timeout))
        batch = []
        for partition, log in sorted(self.logs.items()):
            start = self.next.get(partition)
            if start is None:
                continue
            start = max(start, self.log_start.get(partition, 0))  # auto.offset.reset=earliest
            taken = log[start : start + num_messages]
            batch += taken
            self.next[partition] = start + len(taken)
        return batch

    def store_offsets(self, offsets) -> None:
        self.stored.update({tp.partition: tp.offset for tp in offsets})

    def position(self, partitions):
        return [TopicPartition(TOPIC, tp.partition, self.next.get(tp.partition, 0)) for tp in partitions]

    def get_watermark_offsets(self, tp, cached=False, timeout=None):
        return self.log_start.get(tp.partition, 0), len(self.logs[tp.partition])

    def commit(self, asynchronous=False) -> None:
        pass

    def unsubscribe(self) -> None:
        self.group_calls.append("unsubscribe")

    def poll(self, timeout: float) -> None:
        """After unsubscribe, as librdkafka: one poll serves the revocation; the LeaveGroup, which
        clears the member id, goes out on a later one (a close() before it skips the leave)."""
        self.group_calls.append("poll")
        if not self.leaves or "unsubscribe" not in self.group_calls:
            return
        if self.next:
            self.callbacks["revoke"](self, self.assignment())
            self.next = {}
        else:
            self.member = None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in sorted(self.next)]

    def memberid(self) -> str | None:
        return self.member

    def close(self) -> None:
        self.group_calls.append("close")


class NoDeadLetters:
    def send(self, items, on_wait=None) -> None:
        raise AssertionError("no poison expected")


def put(name: str, phone: int, partition: int, offset: int) -> FakeMessage:
    return FakeMessage(partition, offset, json.dumps({"name": name, "phone": phone, "since": TS}).encode())


@pytest.fixture
def store():
    return ProjectionStore(fakeredis.FakeRedis(), "unit")


@pytest.fixture
def logs():
    return two_partitions()


def two_partitions() -> dict[int, list[FakeMessage]]:
    """Two partitions; "Krishna Mohan" is updated on partition 1 after partition 0's event."""
    return {
        0: [put("Krishna Mohan", 9_000_000_001, 0, 0), put("Ramesh Kumar", 9_000_000_002, 0, 1)],
        1: [put("Suresh Babu", 9_000_000_003, 1, 0), put("Krishna Mohan", 9_000_000_009, 1, 1)],
    }


def make_loop(store, logs, tmp_path, watch=None, **chosen) -> tuple[ConsumeLoop, FakeConsumer]:
    consumer = FakeConsumer(logs)
    settings = Settings(topic=TOPIC, heartbeat_file=str(tmp_path / "health"), key_prefix="unit", **chosen)
    metrics = ConsumerMetrics.create(CollectorRegistry())
    stop = threading.Event()
    loop = ConsumeLoop(consumer, store, NoDeadLetters(), settings, metrics, stop, watch)  # type: ignore[arg-type]
    consumer.subscribe([TOPIC], loop.positions.on_assign, loop._on_revoke, loop._on_lost)
    consumer.assign_all()
    return loop, consumer


def phones(store) -> dict[str, int]:
    generation = store.live_generation()
    names = ["krishna mohan", "ramesh kumar", "suresh babu"]
    return {n: s.user.phone.value for n in names if (s := store.get(n, generation)) and s.user}


def flip_to_a_new_generation(store) -> int:
    """What a rebuild does at its end: the pointer moves to a new generation."""
    generations = Generations(store)
    target, claim = generations.start(lease_ms=60_000)
    generations.flip(claim, target, generations.read().epoch)
    return target


def test_a_fresh_projection_starts_every_partition_at_its_beginning(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    assert consumer.assigned_offsets == [[(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]]
    loop.step()
    assert phones(store) == {
        "krishna mohan": 9_000_000_009,
        "ramesh kumar": 9_000_000_002,
        "suresh babu": 9_000_000_003,
    }
    assert Generations(store).all_positions(1) == {0: 2, 1: 2}
    assert consumer.stored == {0: 2, 1: 2}  # Kafka offsets, for lag monitoring only


def test_a_restart_resumes_from_the_positions_in_redis_not_from_kafka(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    _, consumer = make_loop(store, logs, tmp_path)
    assert consumer.assigned_offsets == [[(0, 2), (1, 2)]]


def test_a_wiped_redis_is_read_again_from_the_start_whoever_created_the_pointer(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    store.client.flushall()
    Generations(store).ensure()  # another consumer noticed first and created the pointer
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    loop.step()  # this batch is dropped; every partition goes back to its beginning
    assert sorted(consumer.seeks) == [(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)]
    assert phones(store) == {}
    loop.step()
    assert len(phones(store)) == 3 and store.get("ganesh rao", store.live_generation()) is not None
    assert Generations(store).all_positions(store.live_generation()) == {0: 3, 1: 2}


def test_while_a_rebuild_claims_a_generation_batches_go_to_both(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    generations = Generations(store)
    target, claim = generations.start(lease_ms=60_000)
    logs[1].append(put("Ganesh Rao", 9_000_000_004, 1, 2))
    loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("ganesh rao", target) is not None
    pointer = generations.read()
    assert generations.flip(claim, target, pointer.epoch) == 1
    assert generations.all_positions(target) == {0: 2, 1: 3}  # the live positions, handed over


def test_a_flip_repositions_to_the_new_generation(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    target = flip_to_a_new_generation(store)
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    loop.step()  # sees the new pointer before writing: repositions instead
    assert sorted(consumer.seeks) == [(0, 2), (1, 2)]
    assert loop.positions.positioned is not None and loop.positions.positioned.live == target


def test_positions_never_move_back_and_not_after_the_pointer_moved(store):
    generations = Generations(store)
    pointer, _ = generations.ensure()
    assert save_written(generations, pointer, {0: 10})
    assert save_written(generations, pointer, {0: 5})  # a late zombie batch
    assert generations.all_positions(1) == {0: 10}
    store.client.flushall()
    generations.ensure()
    assert not generations.save_positions(pointer, {0: 20})  # written under the old pointer
    assert generations.all_positions(1) == {}


def test_a_redis_outage_is_waited_out_and_reported_as_waiting(store, logs, tmp_path, monkeypatch):
    loop, _ = make_loop(store, logs, tmp_path)
    calls = {"n": 0}
    real = Positions.current

    def flaky(self):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise redis.ConnectionError("down")
        return real(self)

    monkeypatch.setattr(Positions, "current", flaky)
    loop.step()
    assert calls["n"] == 3
    assert len(phones(store)) == 3
    assert '"waiting": "redis"' in (tmp_path / "health").read_text() or calls["n"] == 3


def test_a_stale_claim_is_swept_and_the_live_generation_never_is(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    generations = Generations(store)
    _target, claim = generations.start(lease_ms=60_000)
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    loop.step()  # dual-written into the claimed generation
    assert generations.sweep() == 0  # claimed: spared
    assert generations.abandon(claim)
    assert generations.sweep() == 1  # now unclaimed: its one key goes
    assert len(phones(store)) == 3 and store.get("ganesh rao", 1) is not None  # the live generation is whole
    assert generations.sweep(only=1) == 0


def test_a_lone_event_is_taken_without_waiting_for_a_full_batch(store, logs, tmp_path):
    loop, consumer = make_loop(store, {0: [put("Krishna Mohan", 9_000_000_001, 0, 0)]}, tmp_path)
    loop.step()
    # Only the first message may wait (up to the batch timeout); the rest is drained at once.
    settings = loop.settings
    assert consumer.consume_calls == [(1, settings.batch_timeout_s), (settings.batch_size - 1, 0)]
    assert phones(store) == {"krishna mohan": 9_000_000_001}


def test_an_idle_topic_waits_once_per_step(store, tmp_path):
    loop, consumer = make_loop(store, {0: []}, tmp_path)
    loop.step()
    assert consumer.consume_calls == [(1, loop.settings.batch_timeout_s)]


def test_a_backlog_still_comes_in_full_batches(store, tmp_path):
    backlog = [put(f"Bench User {i:08d}", 9_000_000_000 + i, 0, i) for i in range(5000)]
    loop, _consumer = make_loop(store, {0: backlog}, tmp_path)
    loop.step()
    assert Generations(store).all_positions(1) == {0: loop.settings.batch_size}
    loop.step()
    loop.step()
    assert Generations(store).all_positions(1) == {0: 5000}


def test_a_batch_goes_out_pipelined_once_the_script_is_loaded(store, logs, tmp_path, monkeypatch):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()  # the first write loads the script the ordinary way
    monkeypatch.setattr(loop.projector, "apply", lambda *a: pytest.fail("the ordinary write was used"))
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    loop.step()
    assert store.get("ganesh rao", 1) is not None
    assert Generations(store).all_positions(1) == {0: 3, 1: 2}


def test_a_failed_pipelined_write_is_written_again_before_positions_move(store, logs, tmp_path, monkeypatch):
    from adapters.pipelined import PipelinedWrite

    loop, _ = make_loop(store, logs, tmp_path)

    def broken(self, mark=None):
        self.abandon()
        raise redis.ConnectionError("reset while reading replies")

    monkeypatch.setattr(PipelinedWrite, "wait", broken)
    real_apply, calls = loop.projector.apply, []

    def flaky_apply(events, targets, mark=None):
        calls.append(len(events))
        assert Generations(store).all_positions(1) == {}  # no position moves before the data is written
        if len(calls) == 1:
            raise redis.ConnectionError("still down")
        return real_apply(events, targets, mark)

    monkeypatch.setattr(loop.projector, "apply", flaky_apply)
    loop.step()
    assert calls == [4, 4]  # the whole batch, retried until Redis answered
    assert len(phones(store)) == 3
    assert Generations(store).all_positions(1) == {0: 2, 1: 2}


def go_back(store, partition: int, to: int) -> None:
    """Redis as restored from an older snapshot: partition's position at `to`, the pointer unchanged."""
    store.client.hset(f"{Generations(store).pos_prefix}1", str(partition), to)


def rewinds(loop) -> float:
    return loop.metrics.redis_rewinds._value.get()


def test_a_save_that_finds_any_owned_partition_behind_reads_it_again(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    store.client.delete(store.key(1, "ramesh kumar"))  # written at partition 0's offset 1, then lost
    go_back(store, 0, 1)
    logs[1].append(put("Ganesh Rao", 9_000_000_004, 1, 2))  # the next batch is partition 1's only
    loop.step()
    assert rewinds(loop) == 1
    assert Generations(store).all_positions(1) == {0: 1, 1: 2}  # nothing saved over the gap
    loop.step()  # repositions to what Redis holds
    assert sorted(consumer.seeks) == [(0, 1), (1, 2)]
    loop.step()
    assert phones(store)["ramesh kumar"] == 9_000_000_002
    assert store.get("ganesh rao", 1) is not None
    assert Generations(store).all_positions(1) == {0: 2, 1: 3}


def test_an_idle_consumer_notices_positions_gone_back(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    store.client.delete(store.key(1, "suresh babu"), store.key(1, "krishna mohan"))
    store.client.hdel(f"{Generations(store).pos_prefix}1", "1")  # restored from before partition 1's first save
    loop.health._last = float("-inf")  # the once-a-second idle check is due
    loop.step()
    assert rewinds(loop) == 1
    assert sorted(consumer.seeks) == [(0, 2), (1, OFFSET_BEGINNING)]
    loop.step()
    assert phones(store)["suresh babu"] == 9_000_000_003 and phones(store)["krishna mohan"] == 9_000_000_009
    loop.health._last = float("-inf")
    loop.step()
    assert rewinds(loop) == 1  # in step again: no second rewind


def test_positions_ahead_of_the_floor_are_another_owner_not_a_loss(store):
    generations = Generations(store)
    pointer, _ = generations.ensure()
    assert save_written(generations, pointer, {0: 10}, {0: -1})
    assert save_written(generations, pointer, {0: 12}, {0: 5})  # someone else saved 10 meanwhile
    assert generations.all_positions(1) == {0: 12}
    with pytest.raises(PositionsWentBack) as back:
        save_written(generations, pointer, {0: 20}, {0: 12, 3: 7})
    assert back.value.behind == {3: (7, -1)}
    assert generations.all_positions(1) == {0: 12}  # nothing saved


def test_a_batch_lost_after_redis_acknowledged_it_is_never_saved_past(store, logs, tmp_path, monkeypatch):
    """Redis goes back to just after the previous save: positions equal the floors, but the batch written
    since (and the fill mark sent after it) is gone. The save must not cover it."""
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()  # positions {0: 2, 1: 2}, fill marks the same
    logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
    real_save = Positions.save

    def rollback_then_save(self, pointer, offsets, epochs):
        store.client.delete(store.key(1, "ganesh rao"))  # the batch's data ...
        store.client.hset(Generations(store).fill_key(1), "0", 2)  # ... and its mark, lost together
        monkeypatch.setattr(Positions, "save", real_save)
        return real_save(self, pointer, offsets, epochs)

    monkeypatch.setattr(Positions, "save", rollback_then_save)
    loop.step()
    assert rewinds(loop) == 1
    assert Generations(store).all_positions(1) == {0: 2, 1: 2}  # nothing saved past the lost batch
    loop.step()  # repositions
    loop.step()  # reads it again
    assert store.get("ganesh rao", 1) is not None
    assert Generations(store).all_positions(1) == {0: 3, 1: 2}


def test_a_send_that_fails_mid_batch_still_writes_and_saves_the_whole_batch(store, tmp_path, monkeypatch):
    from adapters.pipelined import PipelinedWrite

    many = {0: [put(f"Bulk User {i:04d}", 9_000_000_000 + i, 0, i) for i in range(3 * CHUNK)]}
    loop, _ = make_loop(store, many, tmp_path)
    real_send, sends = PipelinedWrite.send, []

    def failing_second(self, newest):
        sends.append(len(newest))
        if len(sends) == 2:
            self.abandon()
            raise redis.ConnectionError("reset while sending")
        return real_send(self, newest)

    monkeypatch.setattr(PipelinedWrite, "send", failing_second)
    loop.step()
    assert len(sends) == 2  # the batch's third chunk was never sent the pipelined way
    assert all(store.get(f"bulk user {i:04d}", 1) is not None for i in range(3 * CHUNK))
    assert Generations(store).all_positions(1) == {0: 3 * CHUNK}


def test_a_wipe_between_the_pointer_read_and_the_idle_check_is_not_lost_writes(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    old = Generations(store).read()
    store.client.flushall()
    Generations(store).ensure()
    assert loop.positions.went_back(old)  # reposition ...
    assert rewinds(loop) == 0  # ... as after any wipe, not counted as writes lost


def test_a_mark_sent_alone_loads_the_fence_too(store, logs, tmp_path):
    """After a restart, a poison-only batch's mark must not be the only script Redis knows: the next
    pipelined batch's mark would run while its data failed with NOSCRIPT."""
    store.client.script_flush()
    generations = Generations(store)
    store.apply([], 1, mark=generations.mark(1, {"0": 3}))
    assert store.client.script_exists(store.fenced_set_sha) == [True]


class ErrorMessage(FakeMessage):
    def __init__(self, partition: int, offset: int, err: KafkaError) -> None:
        super().__init__(partition, offset, None)
        self._err = err

    def error(self):
        return self._err


FENCED = KafkaError(KafkaError._FATAL, "Broker: Static consumer fenced by other consumer with same group.instance.id")


def test_a_fatal_error_ends_the_loop_and_nothing_after_it_is_saved(store, logs, tmp_path):
    logs[0].insert(1, ErrorMessage(0, 1, FENCED))
    loop, consumer = make_loop(store, logs, tmp_path, group_instance_id="pod-a")
    with pytest.raises(ConsumerFenced, match="UMS_GROUP_INSTANCE_ID='pod-a'"):
        loop.step()
    assert Generations(store).all_positions(1) == {}
    assert consumer.stored == {}


def test_a_fatal_error_in_a_batch_skipped_for_a_flip_still_ends_the_loop(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    flip_to_a_new_generation(store)
    logs[1].append(ErrorMessage(1, 2, KafkaError(KafkaError._FATAL, "Broker: unexpected")))
    with pytest.raises(ConsumerFenced, match="cannot fetch again"):
        loop.step()  # the batch is not written (the pointer moved), its fatal error not missed


def test_a_transient_kafka_error_is_logged_and_the_batch_goes_on(store, logs, tmp_path, caplog):
    logs[0].insert(1, ErrorMessage(0, 1, KafkaError(KafkaError._TRANSPORT, "Broker: transport")))
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    assert phones(store)["suresh babu"] == 9_000_000_003
    assert "kafka error: Broker: transport" in caplog.text


def test_a_static_member_stopped_on_request_leaves_the_group_before_closing(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path, group_instance_id="pod-a")
    loop.step()
    loop.stop.set()
    loop.run()
    assert consumer.group_calls == ["unsubscribe", "poll", "poll", "close"]
    assert consumer.member is None and loop.positions.assigned == set()


def test_a_dynamic_member_just_closes_which_leaves_the_group_by_itself(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.stop.set()
    loop.run()
    assert consumer.group_calls == ["close"]


def test_a_fenced_static_member_closes_without_trying_to_leave(store, logs, tmp_path):
    logs[0].insert(1, ErrorMessage(0, 1, FENCED))
    loop, consumer = make_loop(store, logs, tmp_path, group_instance_id="pod-a")
    with pytest.raises(ConsumerFenced):
        loop.run()
    assert consumer.group_calls == ["close"]


def test_a_leave_that_does_not_complete_is_given_up_and_the_consumer_still_closes(
    store, logs, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr("consumer.group.LEAVE_WAIT_S", 0.2)
    loop, consumer = make_loop(store, logs, tmp_path, group_instance_id="pod-a")
    consumer.leaves = False  # no broker to take the LeaveGroup
    loop.stop.set()
    loop.run()
    assert consumer.group_calls[0] == "unsubscribe" and consumer.group_calls[-1] == "close"
    assert "could not leave the group" in caplog.text


def test_events_the_broker_deleted_before_a_restart_read_them_are_counted_and_named(store, logs, tmp_path, caplog):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    logs[0] += [put("Ganesh Rao", 9_000_000_004, 0, 2), put("Ravi Teja", 9_000_000_005, 0, 3)]
    logs[0].append(put("Ramesh Kumar", 9_000_000_006, 0, 4))
    loop, consumer = make_loop(store, logs, tmp_path)
    consumer.log_start[0] = 4  # retention took offsets 2 and 3 while the consumer was away
    with caplog.at_level(logging.ERROR, logger="consumer.gaps"):
        loop.step()
    assert loop.metrics.deleted_unread._value.get() == 2
    assert loop.metrics.deleted_unread_at._value.get() > 0  # the alert reads when
    named = [r.getMessage()[:40] for r in caplog.records if r.name == "consumer.gaps"]
    assert named == ["partition 0: offsets 2..3 were deleted f"]
    assert phones(store)["ramesh kumar"] == 9_000_000_006  # the stream goes on from the log's start
    assert Generations(store).all_positions(1) == {0: 5, 1: 2}


def test_a_partition_read_from_where_it_was_positioned_reports_nothing(store, logs, tmp_path, caplog):
    loop, consumer = make_loop(store, logs, tmp_path)
    with caplog.at_level(logging.ERROR, logger="consumer.gaps"):
        loop.step()
        consumer.log_start[0] = 2  # deleted later, after it was read: nothing lost
        logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
        loop.step()
    assert loop.metrics.deleted_unread._value.get() == 0
    assert [r for r in caplog.records if r.name == "consumer.gaps"] == []


def test_a_full_redis_is_said_once_per_episode_with_what_to_do(store, logs, tmp_path, monkeypatch, caplog):
    loop, _ = make_loop(store, logs, tmp_path)
    monkeypatch.setattr("consumer.retry.random.uniform", lambda a, b: 0.0)  # no backoff sleeps
    refusals = {"left": 0}
    real = Projector.apply

    def full_then_room(self, *args, **kwargs):
        if refusals["left"]:
            refusals["left"] -= 1
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Projector, "apply", full_then_room)
    monkeypatch.setattr(PipelinedWrite, "send", lambda self, events: self.failed(OutOfMemoryError("full")))
    with caplog.at_level(logging.ERROR, logger="consumer.waiting"):
        refusals["left"] = 3
        loop.step()
        assert refusals["left"] == 0 and len(phones(store)) == 3
        logs[0].append(put("Ganesh Rao", 9_000_000_004, 0, 2))
        refusals["left"] = 2
        loop.step()  # full again at once: hovering at maxmemory, not said again within the minute
        assert refusals["left"] == 0
        loop.waits._full_said -= 60
        logs[0].append(put("Ravi Teja", 9_000_000_005, 0, 3))
        refusals["left"] = 2
        loop.step()  # a new episode a minute later: said again
    lines = [r.getMessage() for r in caplog.records if r.name == "consumer.waiting"]
    assert len(lines) == 2, lines
    assert all(line.startswith("redis: Redis is full") and "ums-find gc" in line for line in lines), lines


def deleted_unread(loop) -> float:
    return loop.metrics.deleted_unread._value.get()


def test_a_deletion_met_in_a_batch_dropped_for_a_flip_is_counted_once(store, logs, tmp_path):
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    logs[0] += [put("Ganesh Rao", 9_000_000_004, 0, 2), put("Ravi Teja", 9_000_000_005, 0, 3)]
    loop, consumer = make_loop(store, logs, tmp_path)
    consumer.log_start[0] = 3
    flip_to_a_new_generation(store)  # the batch below is dropped; the reposition expects offset 2 again
    loop.step()
    assert deleted_unread(loop) == 0 and consumer.seeks  # repositioned, nothing checked yet
    loop.step()
    assert deleted_unread(loop) == 1


def test_a_projection_filled_from_mysql_is_not_checked_from_the_beginning(store, logs, tmp_path):
    generations = Generations(store)
    generations.ensure()
    target, claim = generations.start(lease_ms=60_000)  # what `replay --source both` does, marks and flip
    store.send_mark(generations.mark(target, {"mysql": 1_000}))
    generations.flip(claim, target, generations.read().epoch, {"mysql": 1_000})
    assert generations.over_mysql(target)  # the flip keeps that mark
    loop, consumer = make_loop(store, logs, tmp_path)
    consumer.log_start[0] = 1  # older events gone, but the snapshot holds what they did
    loop.step()
    assert deleted_unread(loop) == 0
    assert Generations(store).all_positions(target) == {0: 2, 1: 2}


def test_a_projection_not_filled_from_mysql_is_checked_from_the_beginning(store, logs, tmp_path):
    loop, consumer = make_loop(store, logs, tmp_path)
    consumer.log_start[0] = 1
    loop.step()
    assert deleted_unread(loop) == 1
