"""Events deleted before they were read (consumer/gaps.py), against a stub of the two librdkafka calls it makes."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException

from consumer.gaps import DeletedUnread


class Msg:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._p, self._o, self._e = partition, offset, error

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def error(self) -> KafkaError | None:
        return self._e


class Watermarks:
    """get_watermark_offsets: the cached log start the last fetch reported, or a broker query."""

    def __init__(self, cached: dict[int, int], queried: dict[int, int] | None = None) -> None:
        self.cached, self.queried, self.queries = cached, queried or {}, 0

    def get_watermark_offsets(self, tp, cached=False, timeout=None):
        if cached:
            return self.cached.get(tp.partition, -1001), -1001
        self.queries += 1
        if tp.partition not in self.queried:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return self.queried[tp.partition], 1_000


def checker(consumer: Watermarks) -> tuple[DeletedUnread, list[int]]:
    counted: list[int] = []
    return DeletedUnread(consumer, "t", counted.append), counted  # type: ignore[arg-type]


def test_a_saved_position_below_the_log_start_is_counted_and_named(caplog):
    gaps, counted = checker(Watermarks({0: 150}))
    gaps.expect(0, 100)
    with caplog.at_level(logging.ERROR, logger="consumer.gaps"):
        gaps.check([Msg(0, 150), Msg(0, 151)])
    assert counted == [50]
    (record,) = caplog.records
    assert "partition 0: offsets 100..149 were deleted" in record.getMessage()
    assert "its saved position" in record.getMessage()
    assert "run `ums-find reconcile`, and `--repair` on drift" in record.getMessage()


def test_a_partition_positioned_at_its_beginning_counts_what_retention_took(caplog):
    gaps, counted = checker(Watermarks({3: 40}))
    gaps.expect(3, OFFSET_BEGINNING)
    with caplog.at_level(logging.ERROR, logger="consumer.gaps"):
        gaps.check([Msg(3, 40)])
    assert counted == [40]
    assert "no saved position" in caplog.records[0].getMessage()


@pytest.mark.parametrize("log_start", [0, 100])
def test_a_gap_the_log_still_starts_before_is_compaction_or_a_marker_not_a_deletion(log_start):
    gaps, counted = checker(Watermarks({0: log_start}))
    gaps.expect(0, 100)
    gaps.check([Msg(0, 107)])  # offsets 100..106 compacted away, or transaction markers
    assert counted == []


def test_only_the_first_message_after_positioning_is_checked():
    consumer = Watermarks({0: 500})
    gaps, counted = checker(consumer)
    gaps.expect(0, 100)
    gaps.check([Msg(0, 100)])
    gaps.check([Msg(0, 900)])  # a later jump is not a positioning: compaction, markers
    assert counted == [] and gaps.expected == {}


def test_errors_and_other_partitions_do_not_count_as_the_first_message():
    gaps, counted = checker(Watermarks({0: 150, 1: 0}))
    gaps.expect(0, 100)
    gaps.check([Msg(1, 7), Msg(0, 0, KafkaError(KafkaError._TRANSPORT))])
    assert gaps.expected == {0: 100} and counted == []
    gaps.check([Msg(0, 150)])
    assert counted == [50]


def test_a_revoked_partition_is_not_checked():
    gaps, counted = checker(Watermarks({0: 150}))
    gaps.expect(0, 100)
    gaps.forget([0])
    gaps.check([Msg(0, 150)])
    assert counted == [] and gaps.saved == {}


def test_an_unreported_log_start_is_asked_for_and_an_unanswered_query_reports_nothing(caplog):
    consumer = Watermarks({}, {0: 150})
    gaps, counted = checker(consumer)
    gaps.expect(0, 100)
    gaps.expect(1, 100)
    with caplog.at_level(logging.WARNING, logger="consumer.gaps"):
        gaps.check([Msg(0, 150), Msg(1, 150)])
    assert consumer.queries == 2 and counted == [50]
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
    assert "partition 1: log start unknown" in caplog.records[1].getMessage()


def test_the_line_names_where_reading_resumed_even_if_the_log_start_moved_on_since(caplog):
    gaps, counted = checker(Watermarks({0: 160}))  # the latest fetch: retention took more since
    gaps.expect(0, 100)
    with caplog.at_level(logging.ERROR, logger="consumer.gaps"):
        gaps.check([Msg(0, 150)])
    assert counted == [50]
    assert "offsets 100..149 were deleted" in caplog.records[0].getMessage()
    assert "it resumed at 150 instead of" in caplog.records[0].getMessage()
