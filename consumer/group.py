"""The consumer's membership of its group: errors it cannot survive, and leaving on a requested stop."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError

from adapters.settings import Settings

log = logging.getLogger(__name__)
# For the revocation and the LeaveGroup at shutdown. Without a broker, the revocation's commit may
# block up to a session timeout (10 s) on its own: still inside Kubernetes' 30 s grace period.
LEAVE_WAIT_S = 5.0


class ConsumerFenced(RuntimeError):
    """librdkafka reported a fatal error: this consumer can never fetch again, so the process must end."""


def is_fatal(err: KafkaError) -> bool:
    # The consumer's queue carries a fatal error as code _FATAL, whose own fatal() flag is false.
    return err.fatal() or err.code() == KafkaError._FATAL


def fatal_hint(text: str, settings: Settings) -> str:
    """What to do about a fatal consumer error: the duplicate static member, or a restart."""
    if "group.instance.id" in text and settings.group_instance_id:
        return (
            f"another consumer of group {settings.group_id} runs with UMS_GROUP_INSTANCE_ID="
            f"{settings.group_instance_id!r}; each needs its own (Kubernetes: the pod's name); stopping"
        )
    return "this consumer cannot fetch again; stopping so that it is restarted"


def leave(consumer: Consumer) -> None:
    """Hand the partitions over now: a static member does not leave the group on close (KIP-345).

    Its partitions would wait a whole session timeout for a member that, in a Deployment, never
    comes back under its pod's name (11.0 s against ~1 s measured, docs/deploy.md).
    """
    consumer.unsubscribe()
    deadline = time.monotonic() + LEAVE_WAIT_S
    # The member id is cleared when the LeaveGroup request goes out, after the revocation: a
    # close() before that would skip the leave, as KIP-345 asks of a closing static member.
    while (consumer.assignment() or consumer.memberid()) and time.monotonic() < deadline:
        consumer.poll(0.05)
    if consumer.memberid():
        log.warning(
            "could not leave the group within %.0f s: its partitions move after the session timeout", LEAVE_WAIT_S
        )
