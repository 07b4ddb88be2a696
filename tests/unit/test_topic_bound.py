"""When the broker's timestamp bound guards the event topic (adapters/topic_bound.py)."""

import logging
import threading

from confluent_kafka import KafkaError, KafkaException

from adapters.topic_bound import AFTER_MAX, GUARDED, UNKNOWN, TimestampBound, topic_config, watch_bound
from tests.helpers import wait_until

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


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class _Answers:
    """describe_configs of a topic the broker does not know for `unknown` calls, then bounded by `after_max`."""

    def __init__(self, unknown: int, after_max: str) -> None:
        self.unknown, self.after_max, self.calls = unknown, after_max, 0

    def describe_configs(self, resources, request_timeout):
        self.calls += 1
        return _Futures(self)

    def result(self, timeout):
        if self.calls <= self.unknown:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        return {AFTER_MAX: _Entry(self.after_max), "message.timestamp.type": _Entry("CreateTime")}


class _Futures:
    def __init__(self, answers: _Answers) -> None:
        self.answers = answers

    def __getitem__(self, resource):
        return self.answers


def test_a_topic_unknown_for_a_moment_is_asked_again_without_a_warning(caplog):
    # A topic created a moment ago (make run) is briefly unknown to describe_configs.
    admin, reports, stop = _Answers(unknown=2, after_max=str(SKEW)), [], threading.Event()
    with caplog.at_level(logging.DEBUG, logger="adapters.topic_bound"):
        watch_bound(admin, "t", SKEW, reports.append, stop, retry_s=0.01).join(10)  # type: ignore[arg-type]
    assert reports == [UNKNOWN, UNKNOWN, UNKNOWN, GUARDED]
    assert [r.levelname for r in caplog.records] == ["DEBUG", "DEBUG"]


def test_a_bound_that_stays_unreadable_is_warned_about_once(caplog):
    admin, reports, stop = _Answers(unknown=10**6, after_max=str(SKEW)), [], threading.Event()
    with caplog.at_level(logging.DEBUG, logger="adapters.topic_bound"):
        thread = watch_bound(admin, "t", SKEW, reports.append, stop, retry_s=0.01, patience=3)  # type: ignore[arg-type]
        wait_until(lambda: admin.calls >= 3, 10, "three tries")
        stop.set()
        thread.join(10)
    assert set(reports) == {UNKNOWN}
    assert [r.levelname for r in caplog.records].count("WARNING") == 1
