"""A partition's log that went back under saved positions (an unclean leader election): positions carry
the leader epoch before them, the consumer seeks with it, and the jump back is said; the consume loop
on fakeredis, over a fake consumer that checks epochs on a seek as librdkafka 2.16 does."""

from __future__ import annotations

import logging

from adapters.generations import Generations
from consumer.truncation import Continuity, span
from tests.helpers import save_written
from tests.unit.test_loop import FakeMessage, make_loop, put


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
        loop.step()  # the assignment took the saved offset: seek with its epoch
        loop.step()
    assert consumer.assigned_offsets == [[(0, 3)]]
    assert (0, 3) in consumer.seeks  # and librdkafka moved it to where epoch 0 ended: offset 2
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
    # Saved positions never go back; nor does an epoch move past the offset it came with, so a
    # restart before the new events pass offset 4 asks the leader about epoch 0 again.
    assert Generations(store).resume_points(1, [0]) == {0: (4, 0)}
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
