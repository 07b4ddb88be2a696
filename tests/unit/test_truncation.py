"""A partition's log that went back under saved positions (an unclean leader election): positions carry
the leader epoch before them, the consumer seeks with it, and the jump back is said; the consume loop
on fakeredis, over a fake consumer that checks epochs on a seek as librdkafka 2.16 does."""

from __future__ import annotations

import logging

import fakeredis
from confluent_kafka import KafkaError, KafkaException

from adapters.generations import EPOCH_MAX, Generations, epoch_of, epoch_value
from adapters.store import ProjectionStore
from consumer.truncation import Continuity, span
from tests.helpers import save_written
from tests.unit.test_lineage import FakeAdmin, new_topic_logs, watch_of
from tests.unit.test_loop import FakeConsumer, FakeMessage, make_loop, put, two_partitions


def at(epoch: int, msg: FakeMessage) -> FakeMessage:
    msg._e = epoch
    return msg


def truncated(caplog) -> list[str]:
    return [r.getMessage()[:52] for r in caplog.records if r.name == "consumer.truncation"]


def elected_without_offset_2() -> dict[int, list[FakeMessage]]:
    """Partition 0 after an unclean election: epoch 0 ended at offset 2 on the new leader (the old one
    had also written "Lost Only" at offset 2, which is gone); epoch 1 wrote offsets 2 and 3 anew."""
    return {
        0: [
            at(0, put("Krishna Mohan", 9_000_000_001, 0, 0)),
            at(0, put("Ramesh Kumar", 9_000_000_002, 0, 1)),
            at(1, put("Ganesh Rao", 9_000_000_004, 0, 2)),
            at(1, put("Ravi Teja", 9_000_000_005, 0, 3)),
        ]
    }


def save_with_epochs(generations: Generations, offsets: dict[int, int], epochs: dict[int, int]) -> None:
    """As the consumer saves: the batch's fill mark, then the positions with their leader epochs."""
    pointer, _ = generations.ensure()
    generations.store.send_mark(generations.mark(pointer.live, {str(p): o for p, o in offsets.items()}))
    assert generations.save_positions(pointer, offsets, epochs=epochs)


def saved_before_the_election(store) -> None:
    """What the consumer saved on the old leader: offsets 0..2 read, offset 2 under epoch 0."""
    save_with_epochs(Generations(store), {0: 3}, {0: 0})


def test_span_names_each_partitions_first_offset_next_offset_and_last_epoch():
    batch = [at(4, put("A Person", 1, 1, 7)), at(3, put("B Person", 1, 0, 5)), at(5, put("C Person", 1, 1, 8))]
    covered = span(batch)
    assert covered.first == {1: 7, 0: 5}
    assert covered.next == {1: 9, 0: 6}
    assert covered.epochs == {1: 5, 0: 3}
    assert span([at(None, put("A Person", 1, 0, 0))]).epochs == {0: -1}  # type: ignore[arg-type]


def test_positions_are_saved_with_the_leader_epoch_of_the_message_before_them(store, tmp_path):
    logs = {0: [at(2, put("Krishna Mohan", 9_000_000_001, 0, 0)), at(3, put("Ramesh Kumar", 9_000_000_002, 0, 1))]}
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    assert Generations(store).resume_points(1, [0, 1]) == {0: (2, 3)}
    assert Generations(store).all_positions(1) == {0: 2}  # the epochs are not positions


def test_a_restart_on_a_log_that_lost_saved_offsets_reads_the_new_events_there(store, tmp_path, caplog):
    saved_before_the_election(store)
    with caplog.at_level(logging.ERROR, logger="consumer.truncation"):
        loop, consumer = make_loop(store, elected_without_offset_2(), tmp_path)
        loop.step()
    assert consumer.assigned_offsets == [[(0, 3)]]
    assert consumer.seeks == [(0, 3)]  # sought again at once, and librdkafka moved it to where epoch 0 ended
    assert store.get("ganesh rao", 1) is not None  # at the lost offset 2: skipped before
    assert store.get("ravi teja", 1) is not None
    assert truncated(caplog) == ["partition 0 of t.users went back from offset 3 to 2:"]
    assert loop.metrics.truncated._value.get() == 1
    assert loop.metrics.truncated_at._value.get() > 0  # the alert reads when
    assert Generations(store).resume_points(1, [0]) == {0: (4, 1)}


def test_a_log_that_goes_back_under_a_running_consumer_is_read_again_and_said(store, tmp_path, caplog):
    logs = elected_without_offset_2()
    logs[0][2:] = [at(0, put("Lost Only", 9_000_000_003, 0, 2)), at(0, put("Lost Too", 9_000_000_007, 0, 3))]
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    assert Generations(store).resume_points(1, [0]) == {0: (4, 0)}
    # The old leader dies, an out-of-sync replica is elected: offsets 2 and 3 are written anew, and
    # librdkafka's own check (on the leader change) moves the fetch back to where epoch 0 ended.
    logs[0][2:] = [at(1, put("Ganesh Rao", 9_000_000_004, 0, 2)), at(1, put("Ravi Teja", 9_000_000_005, 0, 3))]
    consumer.next[0] = 2
    with caplog.at_level(logging.ERROR, logger="consumer.truncation"):
        loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("ravi teja", 1) is not None
    assert truncated(caplog) == ["partition 0 of t.users went back from offset 4 to 2:"]
    assert loop.metrics.truncated._value.get() == 2
    # Saved positions never go back. Read up to offset 4 again, the message before it is now epoch
    # 1's: saved so, a restart no longer asks about epoch 0 (and finds the same cut again).
    assert Generations(store).resume_points(1, [0]) == {0: (4, 1)}
    assert store.get("lost only", 1) is not None  # what only the lost offsets held stays (MySQL has it)


def test_the_batch_that_crosses_the_old_end_saves_the_new_epoch(store, tmp_path):
    logs = elected_without_offset_2()
    logs[0].append(at(1, put("Anil Kapoor", 9_000_000_008, 0, 4)))
    saved_before_the_election(store)
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    loop.step()
    assert Generations(store).resume_points(1, [0]) == {0: (5, 1)}


def test_a_partition_read_on_from_where_it_was_reports_nothing(store, tmp_path, caplog):
    logs = elected_without_offset_2()
    loop, _ = make_loop(store, logs, tmp_path)
    with caplog.at_level(logging.ERROR, logger="consumer.truncation"):
        loop.step()
        logs[0].append(at(1, put("Anil Kapoor", 9_000_000_008, 0, 4)))
        loop.step()
    assert truncated(caplog) == []
    assert loop.metrics.truncated._value.get() == 0


def test_continuity_expects_nothing_of_a_partition_read_from_its_beginning():
    said: list[int] = []
    continuity = Continuity("t", said.append)
    continuity.expect(0, -2)  # OFFSET_BEGINNING: the log's start is not known
    continuity.expect(1, 5)
    continuity.check(span([put("A Person", 1, 0, 3), put("B Person", 1, 1, 5)]))
    continuity.forget([1])
    continuity.check(span([put("B Person", 1, 1, 0)]))
    assert said == []
    continuity.check(span([put("A Person", 1, 0, 1)]))  # partition 0 was expected at 4 after offset 3
    assert said == [3]


def test_the_flip_hands_each_position_over_with_its_epoch(store):
    generations = Generations(store)
    pointer, _ = generations.ensure()
    target, claim = generations.start(lease_ms=60_000)
    save_with_epochs(generations, {0: 7, 1: 9}, {0: 4, 1: 6})
    save_written(generations, pointer, {0: 8})  # an older consumer's save: no epoch
    generations.flip(claim, target, pointer.epoch)
    assert generations.resume_points(target, [0, 1]) == {0: (8, -1), 1: (9, 6)}
    assert generations.all_positions(target) == {0: 8, 1: 9}


def test_a_fetch_dropped_past_a_cut_log_is_read_again_from_the_saved_positions(store, tmp_path, caplog):
    """librdkafka checks its fetch position, which runs ahead of the batches read: finding the new
    leader's log cut at offset 4, it seeks there and drops what it had fetched, offsets 2 and 3 too."""
    logs = {0: [at(0, put(name, 9_000_000_001 + i, 0, i)) for i, name in enumerate(["Krishna Mohan", "Ramesh Kumar"])]}
    loop, consumer = make_loop(store, logs, tmp_path)
    loop.step()
    assert Generations(store).resume_points(1, [0]) == {0: (2, 0)}
    logs[0] += [at(0, put("Ganesh Rao", 9_000_000_004, 0, 2)), at(0, put("Ravi Teja", 9_000_000_005, 0, 3))]
    logs[0] += [at(1, put("Anil Kapoor", 9_000_000_008, 0, 4))]  # the new leader's first event
    consumer.next[0] = 4
    with caplog.at_level(logging.WARNING, logger="consumer.truncation"):
        loop.step()  # dropped: a newer epoch begins past where partition 0 was to go on
        assert (0, 2) in consumer.seeks
        loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("ravi teja", 1) is not None
    said = [r.getMessage()[:48] for r in caplog.records if r.name == "consumer.truncation"]
    assert said == ["partition 0 of t.users jumped from offset 2 to 4"]
    assert loop.metrics.truncated._value.get() == 0  # nothing read was lost
    assert Generations(store).resume_points(1, [0]) == {0: (5, 1)}


def test_a_jump_back_inside_one_batch_is_said_and_left_off_where_the_batch_ends():
    said: list[int] = []
    continuity = Continuity("t", said.append)
    continuity.expect(0, 5)
    covered = span([at(0, put("A Person", 1, 0, 5)), at(1, put("B Person", 1, 0, 3)), at(1, put("C Person", 1, 0, 4))])
    assert covered.back == [(0, 6, 3)]
    assert covered.next == {0: 5} and covered.epochs == {0: 1}
    assert continuity.check(covered) and said == [3]


def test_one_truncation_found_again_is_counted_once(store, tmp_path, caplog):
    """Until as many new events came as were lost, the saved position lies past the new log's end,
    and every positioning finds the cut again: said again, counted once."""
    save_with_epochs(Generations(store), {0: 4}, {0: 0})
    logs = elected_without_offset_2()
    del logs[0][3:]  # the new leader has one new event so far, at offset 2
    with caplog.at_level(logging.WARNING, logger="consumer.truncation"):
        loop, _ = make_loop(store, logs, tmp_path)
        loop.step()
        loop.step()
        loop.positions.positioned = None  # a rebalance: every partition goes back to the saved positions
        loop.step()
        loop.step()
    assert [r.levelname for r in caplog.records if r.name == "consumer.truncation"] == ["ERROR", "WARNING"]
    assert loop.metrics.truncated._value.get() == 2
    assert Generations(store).resume_points(1, [0]) == {0: (4, 0)}


def test_the_epoch_goes_only_with_the_offset_it_came_with(store):
    generations = Generations(store)
    save_with_epochs(generations, {0: 4}, {0: 0})
    store.client.hset(generations.pos_key(1), "0", 9)  # moved by a consumer from before epochs
    assert generations.resume_points(1, [0]) == {0: (9, -1)}
    save_with_epochs(generations, {0: 9}, {0: 2})  # read up to 9 again, in a newer epoch
    assert generations.resume_points(1, [0]) == {0: (9, 2)}
    pointer, _ = generations.ensure()
    assert generations.save_positions(pointer, {0: 9}, epochs={0: 1})  # an older epoch: kept as it is
    assert generations.resume_points(1, [0]) == {0: (9, 2)}


def test_a_topic_replaced_before_the_watch_heard_is_not_taken_for_a_cut_log(store, tmp_path, caplog):
    admin = FakeAdmin("id-A")
    loop, consumer = make_loop(store, two_partitions(), tmp_path, watch_of(admin))
    loop.step()
    consumer.logs.clear()
    consumer.logs.update(new_topic_logs())
    admin.topic_id = "id-B"  # replaced; the watch has not asked since
    consumer.next.update({0: 0, 1: 0})  # librdkafka reset both to the new log's start
    with caplog.at_level(logging.ERROR):
        loop.step()
        loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("mahesh babu", 1) is not None
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["consumer.lineage"]
    assert loop.metrics.truncated._value.get() == 0


def test_a_fetch_dropped_before_the_first_batch_after_a_positioning_is_read_again(store, tmp_path):
    """The epoch saved with the position is the one the first batch is judged against."""
    save_with_epochs(Generations(store), {0: 2}, {0: 0})
    logs = {0: [at(0, put(name, 9_000_000_001 + i, 0, i)) for i, name in enumerate(["Krishna Mohan", "Ramesh Kumar"])]}
    logs[0] += [at(0, put("Ganesh Rao", 9_000_000_004, 0, 2)), at(0, put("Ravi Teja", 9_000_000_005, 0, 3))]
    logs[0] += [at(1, put("Anil Kapoor", 9_000_000_008, 0, 4))]
    loop, consumer = make_loop(store, logs, tmp_path)
    consumer.next[0] = 4  # the election lands before the first batch is read
    loop.step()
    loop.step()
    assert store.get("ganesh rao", 1) is not None and store.get("ravi teja", 1) is not None
    assert store.get("anil kapoor", 1) is not None


def test_a_gap_where_a_newer_epoch_begins_is_read_again_once_then_taken_as_it_is(store, tmp_path, caplog):
    """A transaction's commit marker (or compaction) leaves offset 2 without a message; the leader
    changed there. Read again once from the saved positions, the same gap is the log as it is."""
    logs = {0: [at(0, put(name, 9_000_000_001 + i, 0, i)) for i, name in enumerate(["Krishna Mohan", "Ramesh Kumar"])]}
    loop, _ = make_loop(store, logs, tmp_path)
    loop.step()
    logs[0].append(at(1, put("Ganesh Rao", 9_000_000_004, 0, 3)))  # at list index 2: offset 3
    with caplog.at_level(logging.WARNING, logger="consumer.truncation"):
        loop.step()  # dropped, every partition repositioned
        loop.step()  # the same gap: read
        loop.step()
    assert store.get("ganesh rao", 1) is not None
    assert len([r for r in caplog.records if r.name == "consumer.truncation"]) == 1
    assert Generations(store).resume_points(1, [0]) == {0: (4, 1)}


def test_a_jump_into_a_newer_epoch_inside_one_batch_is_found():
    continuity = Continuity("t")
    continuity.expect(0, 5, 0)
    covered = span([at(0, put("A Person", 1, 0, 5)), at(1, put("B Person", 1, 0, 9))])
    assert covered.skips == [(0, 6, 9)]
    assert not continuity.check(covered)
    assert continuity.check(span([at(0, put("A Person", 1, 0, 5)), at(0, put("B Person", 1, 0, 7))]))  # a gap


def test_a_seek_refused_at_the_assignment_is_made_at_the_next_step(store, tmp_path, monkeypatch):
    saved_before_the_election(store)
    real_seek, refused = FakeConsumer.seek, []

    def refuse_once(self, tp):  # librdkafka: the partition's fetch not started yet
        if not refused:
            refused.append(tp.partition)
            raise KafkaException(KafkaError(KafkaError._STATE))
        real_seek(self, tp)

    monkeypatch.setattr(FakeConsumer, "seek", refuse_once)
    loop, _ = make_loop(store, elected_without_offset_2(), tmp_path)
    assert refused == [0] and loop.positions.positioned is None
    loop.step()  # the batch read from the unchecked offset 3 is dropped; sought with the epoch
    loop.step()
    assert store.get("ganesh rao", 1) is not None


def test_every_field_of_the_positions_hash_is_a_number_for_a_previous_release_s_flip():
    """The previous release's FLIP compares every field's value as a number: a rebuild it runs during
    a rolling upgrade (or after a rollback) must still flip."""
    store = ProjectionStore(fakeredis.FakeRedis(), "unit")
    generations = Generations(store)
    save_with_epochs(generations, {0: 7, 1: 2**33 + 9}, {0: 4, 1: 6})
    values = store.client.hvals(generations.pos_key(1))
    assert len(values) == 4 and all(str(int(v)).encode() == v for v in values)
    assert generations.resume_points(1, [0, 1]) == {0: (7, 4), 1: (2**33 + 9, 6)}
    assert epoch_of(str(epoch_value(6, 2**33 + 9)).encode(), 9) == 6  # the low 32 bits name the offset
    assert epoch_value(EPOCH_MAX, 7) == -1 and epoch_of(b"5:7", 7) == -1  # too big; not a number: unknown
