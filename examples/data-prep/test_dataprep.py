"""The data-prep consumer against an in-memory fake of the Kafka consumer: no broker, no network beyond loopback."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataprep import Loop, Metrics, Settings, Sink, partition_lags, prepare, serve


@dataclass
class TP:
    topic: str
    partition: int
    offset: int = -1001


@dataclass
class Msg:
    t: str
    p: int
    o: int
    v: bytes

    def topic(self): return self.t
    def partition(self): return self.p
    def offset(self): return self.o
    def value(self): return self.v
    def error(self): return None


class FakeConsumer:
    """Two partitions of one topic, all assigned to this consumer; poll returns their records in offset order."""

    def __init__(self, records: dict[int, list[bytes]], topic: str = "nlp.raw-text"):
        self.topic, self.records = topic, records
        self.next = {p: 0 for p in records}
        self.committed: dict[int, int] = {}
        self.queue = [Msg(topic, p, o, v) for p, values in records.items() for o, v in enumerate(values)]

    def poll(self, timeout):
        if not self.queue:
            return None
        m = self.queue.pop(0)
        self.next[m.p] = m.o + 1
        return m

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        for tp in offsets:
            self.committed[tp.partition] = tp.offset

    def assignment(self):
        return [TP(self.topic, p) for p in self.records]

    def position(self, partitions):
        return [TP(tp.topic, tp.partition, self.next[tp.partition] if self.next[tp.partition] else -1001) for tp in partitions]

    def get_watermark_offsets(self, tp, timeout, cached):
        return 0, len(self.records[tp.partition])

    def close(self):
        pass


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings("b-1:9098", "nlp.raw-text", "nlp.data-prep", "us-west-2", tmp_path / "out", **kw)


class Clock:
    def __init__(self): self.now = 0.0
    def __call__(self): return self.now


def record(text, label=None) -> bytes:
    return json.dumps({"text": text, **({"label": label} if label is not None else {})}).encode()


def test_prepare_normalises_text_and_drops_what_cannot_be_used():
    assert prepare(record("  great\n\tfilm  ", 1)) == {"text": "great film", "label": 1}
    assert prepare(record("ok")) == {"text": "ok"}
    assert [prepare(v) for v in (b"not json", b"[1]", record("   "), json.dumps({"label": 1}).encode(), None, b"\xff")] == [None] * 6


def test_a_full_batch_is_written_then_committed_and_lag_follows_the_position(tmp_path):
    consumer = FakeConsumer({0: [record("a", 1), b"junk", record("b", 0)], 1: [record("c")]})
    loop = Loop(consumer, Sink(tmp_path / "out"), Metrics("nlp.data-prep"), settings(tmp_path, batch_size=2), TP, Clock())
    for _ in range(3):
        loop.step()
    # Partition 0 reached two prepared records at offset 2: one file named by its offsets, committed at 3.
    [written] = (tmp_path / "out" / "nlp.raw-text" / "partition=0").iterdir()
    assert written.name == f"{0:020d}-{2:020d}.jsonl"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert [(r["text"], r["source"]["offset"]) for r in lines] == [("a", 0), ("b", 2)]
    assert consumer.committed == {0: 3}
    lag = loop.metrics.lag
    assert lag.labels("nlp.raw-text", "0", "nlp.data-prep")._value.get() == 0
    # Partition 1: nothing fetched yet, so its whole retained record is behind.
    assert lag.labels("nlp.raw-text", "1", "nlp.data-prep")._value.get() == 1
    dropped = loop.metrics.records.labels("dropped")._value.get()
    assert dropped == 1


def test_an_old_batch_is_flushed_and_a_redelivered_batch_rewrites_the_same_file(tmp_path):
    clock = Clock()
    consumer = FakeConsumer({0: [record("a")]})
    loop = Loop(consumer, Sink(tmp_path / "out"), Metrics("g"), settings(tmp_path, batch_size=100, batch_seconds=30), TP, clock)
    loop.step()
    assert consumer.committed == {}
    clock.now = 31
    loop.step()
    assert consumer.committed == {0: 1}
    # A crash before the commit re-delivers: the same offsets land in the same file, not a second copy.
    again = FakeConsumer({0: [record("a")]})
    Loop(again, Sink(tmp_path / "out"), Metrics("g"), settings(tmp_path, batch_size=1), TP, clock).step()
    assert len(list((tmp_path / "out" / "nlp.raw-text" / "partition=0").glob("*.jsonl"))) == 1


def test_a_revoked_partition_drops_its_lag_series(tmp_path):
    metrics = Metrics("g")
    metrics.set_lag({("t", 0): 5, ("t", 1): 7})
    metrics.set_lag({("t", 1): 6})
    text = metrics.registry.get_sample_value
    assert text("kafka_consumer_lag", {"topic": "t", "partition": "0", "consumer_group": "g"}) is None
    assert text("kafka_consumer_lag", {"topic": "t", "partition": "1", "consumer_group": "g"}) == 6


def test_a_missing_setting_is_named():
    with pytest.raises(SystemExit, match="TOPIC, GROUP_ID"):
        Settings.from_env({"BOOTSTRAP_SERVERS": "b", "AWS_REGION": "r", "OUTPUT_DIR": "/o"})


def test_metrics_and_health_over_loopback(tmp_path):
    clock = Clock()
    consumer = FakeConsumer({0: [record("a")]})
    loop = Loop(consumer, Sink(tmp_path / "out"), Metrics("g"), settings(tmp_path), TP, clock)
    loop.step()
    server = serve(loop, loop.metrics, 0, host="127.0.0.1")
    port = server.server_address[1]
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'kafka_consumer_lag{consumer_group="g",partition="0",topic="nlp.raw-text"} 0.0' in body
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        clock.now = 120  # no poll for two minutes: the liveness probe restarts the pod
        with pytest.raises(urllib.error.HTTPError) as stalled:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert stalled.value.code == 503
    finally:
        server.shutdown()


def test_lag_counts_only_what_is_behind_the_position():
    consumer = FakeConsumer({0: [b"x"] * 10})
    consumer.next[0] = 4
    assert partition_lags(consumer) == {("nlp.raw-text", 0): 6}
