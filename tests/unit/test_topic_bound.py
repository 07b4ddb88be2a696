"""When the broker's timestamp bound guards the event topic (adapters/topic_bound.py)."""

from adapters.topic_bound import AFTER_MAX, TimestampBound, topic_config

SKEW = 300_000


def test_a_bound_at_or_under_the_skew_guards():
    assert TimestampBound(False, SKEW).problem(SKEW) is None
    assert TimestampBound(False, 60_000).problem(SKEW) is None


def test_a_looser_or_missing_bound_is_a_problem():
    assert "looser" in (TimestampBound(False, 3_600_000).problem(SKEW) or "")
    assert "Kafka < 3.6" in (TimestampBound(False, None).problem(SKEW) or "")


def test_log_append_time_needs_no_bound():
    # The broker stamps each message with its own clock: nothing can be ahead of it.
    assert TimestampBound(True, None).problem(SKEW) is None
    assert TimestampBound(True, 9_223_372_036_854_775_807).problem(SKEW) is None


def test_the_topic_is_created_with_the_skew_as_its_bound():
    assert topic_config({"retention.ms": "-1"}, SKEW) == {"retention.ms": "-1", AFTER_MAX: "300000"}
