"""Data-prep consumer: reads a team's Kafka topic, writes prepared records to the team's storage, exports its lag.

Each input record is a JSON object with `text` (and optionally `label`); the consumer normalises the text, drops
what cannot be used, and appends the rest as JSON lines to `<OUTPUT_DIR>/<topic>/partition=<p>/<first>-<last>.jsonl`.
A batch file is written under a temporary name and renamed, and the batch's offsets are committed only after the
rename: a crash re-delivers the batch, which is rewritten to the same file name (at-least-once, no duplicates on
disk). Lag per assigned partition (high watermark minus the consumer's position) is the gauge `kafka_consumer_lag`,
which the platform's metrics adapter serves to the HorizontalPodAutoscaler.

    python dataprep.py   # configured by the environment, see Settings.from_env
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_TEXT = 10_000


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    topic: str
    group_id: str
    region: str
    output_dir: Path
    metrics_port: int = 9102
    batch_size: int = 500
    batch_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "Settings":
        e = dict(os.environ if env is None else env)
        missing = [k for k in ("BOOTSTRAP_SERVERS", "TOPIC", "GROUP_ID", "AWS_REGION", "OUTPUT_DIR") if not e.get(k)]
        if missing:
            raise SystemExit(f"data-prep: missing environment variables: {', '.join(missing)}")
        return cls(e["BOOTSTRAP_SERVERS"], e["TOPIC"], e["GROUP_ID"], e["AWS_REGION"], Path(e["OUTPUT_DIR"]),
                   int(e.get("METRICS_PORT", 9102)), int(e.get("BATCH_SIZE", 500)), float(e.get("BATCH_SECONDS", 30)))


class Message(Protocol):
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def value(self) -> Optional[bytes]: ...
    def error(self) -> Any: ...


class Consumer(Protocol):
    """The part of confluent_kafka.Consumer the loop uses (a fake in the tests)."""

    def poll(self, timeout: float) -> Optional[Message]: ...
    def commit(self, offsets: list[Any], asynchronous: bool) -> Any: ...
    def assignment(self) -> list[Any]: ...
    def position(self, partitions: list[Any]) -> list[Any]: ...
    def get_watermark_offsets(self, partition: Any, timeout: float, cached: bool) -> tuple[int, int]: ...
    def close(self) -> None: ...


def prepare(raw: Optional[bytes]) -> Optional[dict[str, Any]]:
    """The training record for one input record, or None when it cannot be used (not JSON, no text)."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    text = " ".join(record["text"].split())[:MAX_TEXT]
    if not text:
        return None
    prepared: dict[str, Any] = {"text": text}
    if isinstance(record.get("label"), (str, int)):
        prepared["label"] = record["label"]
    return prepared


class Metrics:
    def __init__(self, group_id: str) -> None:
        self.registry = CollectorRegistry()
        self.group_id = group_id
        self.lag = Gauge("kafka_consumer_lag", "Records in the partition not yet consumed by this pod's consumer",
                         ["topic", "partition", "consumer_group"], registry=self.registry)
        self.records = Counter("data_prep_records", "Input records by outcome", ["outcome"], registry=self.registry)
        self._series: set[tuple[str, str]] = set()

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Exactly the assigned partitions' series: a revoked partition's lag belongs to another pod now."""
        current = {(t, str(p)) for t, p in lags}
        for topic, partition in self._series - current:
            self.lag.remove(topic, partition, self.group_id)
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition), self.group_id).set(lag)
        self._series = current


class Sink:
    """Batches of prepared records per partition, each written as one file named by its offsets."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, topic: str, partition: int, first: int, last: int, records: list[dict[str, Any]]) -> Path:
        folder = self.root / topic / f"partition={partition}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{first:020d}-{last:020d}.jsonl"
        tmp = folder / f".{target.name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return target


def partition_lags(consumer: Consumer) -> dict[tuple[str, int], int]:
    lags = {}
    for tp in consumer.position(consumer.assignment()):
        low, high = consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
        # A negative position (no fetch yet in this session) counts the whole retained partition as behind.
        lags[(tp.topic, tp.partition)] = max(0, high - (tp.offset if tp.offset >= 0 else low))
    return lags


class Loop:
    """Poll, prepare, write a partition's batch when full or old, then commit its next offset."""

    def __init__(self, consumer: Consumer, sink: Sink, metrics: Metrics, settings: Settings,
                 offset_type: Callable[[str, int, int], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer, self.sink, self.metrics, self.settings = consumer, sink, metrics, settings
        self.offset_type, self.clock = offset_type, clock
        self.pending: dict[tuple[str, int], dict[str, Any]] = {}
        self.last_poll = clock()

    def step(self) -> None:
        message = self.consumer.poll(1.0)
        self.last_poll = self.clock()
        if message is not None and message.error() is None:
            key = (message.topic(), message.partition())
            batch = self.pending.setdefault(key, {"first": message.offset(), "records": [], "started": self.clock()})
            batch["last"] = message.offset()
            prepared = prepare(message.value())
            self.metrics.records.labels("prepared" if prepared else "dropped").inc()
            if prepared:
                batch["records"].append({**prepared, "source": {"topic": key[0], "partition": key[1], "offset": message.offset()}})
        for key in [k for k, b in self.pending.items()
                    if len(b["records"]) >= self.settings.batch_size or self.clock() - b["started"] >= self.settings.batch_seconds]:
            self.flush(key)
        self.metrics.set_lag(partition_lags(self.consumer))

    def flush(self, key: tuple[str, int]) -> None:
        batch = self.pending.pop(key)
        if batch["records"]:
            self.sink.write(key[0], key[1], batch["first"], batch["last"], batch["records"])
        # Kafka's committed offset is the next one to read.
        self.consumer.commit(offsets=[self.offset_type(key[0], key[1], batch["last"] + 1)], asynchronous=False)

    def flush_all(self) -> None:
        for key in list(self.pending):
            self.flush(key)

    def healthy(self, within: float = 60.0) -> bool:
        return self.clock() - self.last_poll < within


def serve(loop: Loop, metrics: Metrics, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - the pod's port
    """/metrics for Prometheus (through the sidecar's merged endpoint), /healthz for the probes."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok = loop.healthy()
                body, status, kind = (b"ok" if ok else b"consumer loop stalled"), (200 if ok else 503), "text/plain"
            else:
                body, status, kind = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def msk_consumer(settings: Settings) -> tuple[Consumer, Callable[[str, int, int], Any]]:
    """A confluent-kafka consumer authenticated to MSK with IAM (SASL/OAUTHBEARER, the Pod Identity credentials)."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from confluent_kafka import Consumer as KafkaConsumer, TopicPartition

    def token(_config: Any) -> tuple[str, float]:
        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(settings.region)
        return value, expiry_ms / 1000

    consumer = KafkaConsumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": token,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([settings.topic])
    return consumer, TopicPartition


def main(argv: Optional[Iterable[str]] = None) -> int:
    settings = Settings.from_env()
    consumer, offset_type = msk_consumer(settings)
    metrics = Metrics(settings.group_id)
    loop = Loop(consumer, Sink(settings.output_dir), metrics, settings, offset_type)
    server = serve(loop, metrics, settings.metrics_port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set():
            loop.step()
        # Written and committed before the pod goes: the next owner of the partitions starts after them.
        loop.flush_all()
    finally:
        consumer.close()
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
