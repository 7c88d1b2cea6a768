"""Signals from devices over MQTT (paho-mqtt, against Mosquitto): the subscriber behind
`manage.py mqtt_signals`.

- Resumable: a fixed client id with a persistent session (clean_session False) and QoS 1, so
  the broker keeps what arrives while the subscriber is down and hands it over on reconnect.
- Bounded: paho's network thread puts each message on a queue of `queue_size`; when the queue
  is full it waits, the broker's acknowledgement waits with it (QoS 1 is acknowledged after the
  callback), and the broker holds the rest. Memory never grows with a backlog.
- Batched: the main thread takes up to `batch_size` messages (or what came within
  `batch_seconds`) and stores them in one listening.signal_actions.ingest_signals call.
- Tolerant: a payload that is not JSON is skipped and counted; a signal that breaks the schema
  or matches no customer is recorded as a SignalRejection. Neither stops the subscriber.

The topic names the device: with the filter `devices/+/events`, a message on
`devices/dev-42/events` is about device dev-42 (the `+` level), which a Device row (bound when a
signal named both the device and its customer) maps to a customer. A payload is one signal
object of the documented schema or `{"signals": [...]}`; without an "id", the digest of topic
and payload stands in, so a redelivered message is stored once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from listening.exceptions import PayloadInvalid
from listening.signal_actions import InboundSignal, ingest_signals, parse_signal, record_rejections

log = logging.getLogger(__name__)

SOURCE = "mqtt"


@dataclass
class MqttStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    not_json: int = 0
    batches: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from arrival to commit, if kept

    def line(self) -> str:
        return (f"{self.received} received: {self.stored} stored, {self.duplicates} duplicates, "
                f"{self.rejected} rejected, {self.not_json} not JSON, in {self.batches} batches")


def device_level(topic_filter: str) -> int:
    """The index of the `+` level that names the device in the filter."""
    levels = topic_filter.split("/")
    if "+" not in levels:
        raise ValueError("the topic filter needs a + level for the device id, like devices/+/events")
    return levels.index("+")


class MqttSignalSubscriber:
    def __init__(self, url: str, topic: str, client_id: str, *, queue_size: int = 2000, batch_size: int = 500,
                 batch_seconds: float = 0.2, keep_latencies: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError("the broker URL is mqtt://host:port")
        self.host, self.port = parts.hostname, parts.port or 1883
        self.topic, self.level = topic, device_level(topic)
        self.queue: queue.Queue[tuple[str, bytes, float]] = queue.Queue(maxsize=queue_size)
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.stats = MqttStats()
        self.keep_latencies = keep_latencies
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(100)
        self.subscribed = False

    # paho's network thread ------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connect refused: %s", reason_code)
            return
        client.subscribe(self.topic, qos=1)
        self.subscribed = True

    def _on_message(self, client, userdata, message) -> None:
        self.queue.put((message.topic, bytes(message.payload), time.monotonic()))  # blocks when full

    # the main thread ------------------------------------------------------------------------------
    def run(self, *, seconds: float | None = None, max_messages: int | None = None) -> MqttStats:
        """Consume until `seconds` pass or `max_messages` arrived (forever if neither)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + seconds if seconds is not None else None
        try:
            while deadline is None or time.monotonic() < deadline:
                batch = self._take(deadline)
                if batch:
                    self._store(batch)
                if max_messages is not None and self.stats.received >= max_messages:
                    break
        finally:
            self.client.loop_stop()
            self.client.disconnect()
        return self.stats

    def _take(self, deadline: float | None) -> list[tuple[str, bytes, float]]:
        left = self.batch_seconds if deadline is None else deadline - time.monotonic()
        wait = max(0.0, min(self.batch_seconds, left))
        try:
            batch = [self.queue.get(timeout=wait)]
        except queue.Empty:
            return []
        until = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get(timeout=max(0.0, until - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[tuple[str, bytes, float]]) -> None:
        parsed: list[InboundSignal] = []
        raws: dict[str, Any] = {}
        rejected: list[tuple[str, str, Any]] = []
        for topic, payload, _ in batch:
            self.stats.received += 1
            try:
                body = json.loads(payload)
            except (UnicodeDecodeError, ValueError, RecursionError):
                self.stats.not_json += 1
                continue
            device = topic.split("/")[self.level] if len(topic.split("/")) > self.level else ""
            items = body["signals"] if isinstance(body, dict) and isinstance(body.get("signals"), list) else [body]
            for n, item in enumerate(items):
                if isinstance(item, dict) and "id" not in item:
                    digest = hashlib.sha256(topic.encode() + b"\0" + payload + str(n).encode()).hexdigest()[:32]
                    item = {**item, "id": f"{device}:{digest}"}
                try:
                    signal = parse_signal(item, f"message on {topic[:80]}", device_id=device[:120])
                except PayloadInvalid as exc:
                    rejected.append((item.get("id", "") if isinstance(item, dict) else "", str(exc), item))
                    continue
                parsed.append(signal)
                raws[signal.external_id] = item
        result = ingest_signals(SOURCE, parsed, strict=False) if parsed else None
        if result is not None:
            self.stats.stored += result.created
            self.stats.duplicates += result.duplicates
            rejected += [(i, reason, raws.get(i)) for i, reason in result.rejected]
        if rejected:
            self.stats.rejected += len(rejected)
            record_rejections(SOURCE, rejected)
        self.stats.batches += 1
        if self.keep_latencies:
            now = time.monotonic()
            self.stats.latencies.extend(now - arrived for _, _, arrived in batch)
