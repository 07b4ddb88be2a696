"""The one log line per kind of Kafka client error, and the cause it names."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from adapters.kafka import kafka_error_logger

BROKER = "sasl_ssl://127.0.0.1:24092/bootstrap"


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "adapters.kafka"]


def test_a_tls_failure_reported_as_a_transport_error_is_named_tls_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    on_error = kafka_error_logger()
    # The order librdkafka used in a wrong-CA run of the suite: transport, all down, then SSL.
    on_error(KafkaError(KafkaError._TRANSPORT, f"{BROKER}: error:0A000086:SSL routines::certificate verify failed"))
    on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    on_error(KafkaError(KafkaError._SSL, f"{BROKER}: SSL handshake failed: certificate verify failed (after 5ms)"))
    said = lines(caplog)
    assert len(said) == 1, said
    assert said[0].startswith("kafka: TLS failed: check UMS_KAFKA_SSL_CA_FILE")


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (f"{BROKER}: Connect to ipv4#127.0.0.1:24092 failed: Connection refused", "broker unreachable"),
        (f"{BROKER}: Disconnected while requesting ApiVersion", "the broker closed the connection"),
    ],
)
def test_other_transport_errors_keep_their_causes(caplog: pytest.LogCaptureFixture, text: str, cause: str) -> None:
    caplog.set_level(logging.ERROR)
    kafka_error_logger()(KafkaError(KafkaError._TRANSPORT, text))
    assert [line.split(": ", 1)[1].startswith(cause) for line in lines(caplog)] == [True]
