"""Static membership (UMS_GROUP_INSTANCE_ID, the pod's name in k8s/) against the real broker.

Two consumers given the same id (a copied environment, a compose service scaled with a fixed
id): the broker fences the older one, and librdkafka reports that as fatal: that consumer can
never fetch again. It used to log one warning and idle with its health file fresh, a pod that
looks ready and projects nothing. It must end, non-zero and saying which setting to fix.

A static member does not leave the group when it closes (KIP-345): stopped by a rollout, whose
new pod has another name, its partitions waited a whole session timeout. It leaves on a
graceful stop now.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import replace

from tests.helpers import heartbeat, start_consumer, unique, wait_until


def produce(producer, topic, names, phone, partitions=None):
    """One event per name; with `partitions`, spread over them in turn."""
    for i, name in enumerate(names):
        value = json.dumps({"name": name, "phone": phone, "since": 1_000}).encode()
        if partitions:
            producer.produce(topic, value=value, partition=i % partitions)
        else:
            producer.produce(topic, value=value)
    assert producer.flush(10) == 0


def assigned(path) -> int:
    beat = heartbeat(path)
    return beat.assigned if beat else 0


def projected(store, names):
    generation = store.live_generation()
    return generation is not None and all(store.get(n.lower(), generation) for n in names)


def stop_all(procs):
    """SIGTERM each process still running, and kill it if it has not exited 30 s later."""
    for proc in procs:
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_consumer_fenced_by_a_duplicate_instance_id_exits_and_says_why(settings, producer, store, name_tag, tmp_path):
    pod = replace(settings, group_instance_id=unique("pod"))
    logs = [tmp_path / "first.log", tmp_path / "second.log", tmp_path / "third.log"]
    first = start_consumer(replace(pod, heartbeat_file=str(tmp_path / "first.hb")), logs[0])
    second = third = None
    try:
        before = [f"{name_tag} before {i}" for i in range(20)]
        produce(producer, settings.topic, before, 9_000_000_001)
        wait_until(lambda: projected(store, before), 60, "the first consumer to project")

        second = start_consumer(replace(pod, heartbeat_file=str(tmp_path / "second.hb")), logs[1])
        code = wait_until(lambda: first.poll() is not None and [first.returncode], 60, "the fenced consumer to exit")
        text = logs[0].read_text(errors="replace")
        assert code == [1], text[-3000:]
        assert f"UMS_GROUP_INSTANCE_ID='{pod.group_instance_id}'" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]

        # The one left owns every partition: nothing produced from now on is lost.
        after = [f"{name_tag} after {i}" for i in range(60)]
        produce(producer, settings.topic, after, 9_000_000_002)
        wait_until(lambda: projected(store, after), 60, "the second consumer to project")
        assert second.poll() is None, logs[1].read_text(errors="replace")[-3000:]

        # The first restarted (as an orchestrator would) takes the id back and fences the second:
        # the pair shows as alternating restarts.
        third = start_consumer(replace(pod, heartbeat_file=str(tmp_path / "third.hb")), logs[2])
        wait_until(lambda: second.poll() is not None, 60, "the second consumer to be fenced and exit")
        assert second.returncode == 1, logs[1].read_text(errors="replace")[-3000:]
        assert third.poll() is None, logs[2].read_text(errors="replace")[-3000:]
    finally:
        stop_all([first, second, third])
    assert third.returncode == 0, logs[2].read_text(errors="replace")[-3000:]


def test_a_static_member_stopped_gracefully_hands_its_partitions_over(settings, producer, store, name_tag, tmp_path):
    # A 60 s session timeout (10 s by default) for both: partitions that move well before it
    # were handed over by a leave, not taken from a member the broker stopped waiting for.
    slow = replace(settings, session_timeout_ms=60_000)
    beats = [tmp_path / "a.hb", tmp_path / "b.hb"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [
        start_consumer(replace(slow, group_instance_id=unique("pod"), heartbeat_file=str(beat)), log)
        for beat, log in zip(beats, logs, strict=True)
    ]
    try:
        wait_until(lambda: all(assigned(b) for b in beats), 60, "both consumers to hold partitions")
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(30) == 0, logs[0].read_text(errors="replace")[-3000:]

        names = [f"{name_tag} handed {i}" for i in range(60)]
        produce(producer, settings.topic, names, 9_000_000_003, partitions=6)
        wait_until(lambda: projected(store, names), 30, "the other consumer to project every partition's events")
        wait_until(lambda: assigned(beats[1]) == 6, 10, "the other consumer's heartbeat to count 6 partitions")
    finally:
        stop_all(procs)
    assert procs[1].returncode == 0, logs[1].read_text(errors="replace")[-3000:]
