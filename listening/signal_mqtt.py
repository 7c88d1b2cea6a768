"""Signals from devices over MQTT (paho-mqtt, against Mosquitto): the subscriber behind
`manage.py mqtt_signals`.

- Resumable: MQTT 5 with a fixed client id, clean_start off and a session that never expires,
  and QoS 1 acknowledged by hand only after the batch holding the message has committed: the
  broker keeps what arrives while the subscriber is down, and whatever was received but not yet
  stored when it stopped (killed mid-batch, database down) is delivered again on reconnect and
  stored once ((source, id) is unique).
- Bounded: paho's network thread puts each message on a queue of `queue_size` and waits when it
  is full, so the broker holds the backlog, not our memory; the CONNECT's Receive Maximum asks
  the broker for no more unacknowledged messages than that (Mosquitto 2.0 was seen sending more
  when a session resumed: the queue's bound holds regardless).
- Batched: the main thread takes up to `batch_size` messages (or what came within
  `batch_seconds`) and stores them, with their rejections, in one transaction
  (listening.signal_actions.ingest_signals), then acknowledges them in the order they came.
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
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from django.db import transaction
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from listening.exceptions import PayloadInvalid
from listening.signal_actions import InboundSignal, ingest_signals, parse_signal, record_rejections

log = logging.getLogger(__name__)

SOURCE = "mqtt"
NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 session expiry: the broker keeps the session until it is removed
RECEIVE_MAXIMUM_CAP = 65535


@dataclass(frozen=True)
class Arrival:
    topic: str
    payload: bytes
    at: float  # time.monotonic() when paho handed it over
    mid: int
    qos: int
    generation: int  # the connection it came on: a mid means nothing on another connection


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
        self.queue: queue.Queue[Arrival] = queue.Queue(maxsize=queue_size)
        self.receive_maximum = max(1, min(queue_size, RECEIVE_MAXIMUM_CAP))
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.stats = MqttStats()
        self.keep_latencies = keep_latencies
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.manual_ack_set(True)  # acknowledged after commit (_ack), not when paho hands it over
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.generation = 0
        self.subscribed = False
        self.ready = threading.Event()  # set once the broker confirmed the subscription

    # paho's network thread ------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connect refused: %s", reason_code)
            return
        self.generation += 1
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if reason_codes and not any(code.is_failure for code in reason_codes):
            self.subscribed = True
            self.ready.set()
        else:
            log.warning("MQTT subscription to %s refused: %s", self.topic, reason_codes)

    def _on_message(self, client, userdata, message) -> None:
        # Blocks while the queue is full; the broker keeps the rest.
        self.queue.put(Arrival(message.topic, bytes(message.payload), time.monotonic(), message.mid, message.qos,
                               self.generation))

    # the main thread ------------------------------------------------------------------------------
    def run(self, *, seconds: float | None = None, max_messages: int | None = None) -> MqttStats:
        """Consume until `seconds` pass or `max_messages` arrived (forever if neither). A batch
        that fails to store raises, unacknowledged: the broker delivers it again next time."""
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = NEVER_EXPIRES
        connect.ReceiveMaximum = self.receive_maximum
        self.client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=connect)
        self.client.loop_start()
        deadline = time.monotonic() + seconds if seconds is not None else None
        try:
            while deadline is None or time.monotonic() < deadline:
                batch = self._take(deadline)
                if batch:
                    self._store(batch)
                    self._ack(batch)
                if max_messages is not None and self.stats.received >= max_messages:
                    break
        finally:
            self.client.loop_stop()
            self.client.disconnect()
        return self.stats

    def _ack(self, batch: list[Arrival]) -> None:
        """PUBACK in the order the messages came (as MQTT asks), only for this connection's: one
        from before a reconnect is delivered again by the broker (and stored once)."""
        for arrival in batch:
            if arrival.qos and arrival.generation == self.generation:
                self.client.ack(arrival.mid, arrival.qos)

    def _take(self, deadline: float | None) -> list[Arrival]:
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

    def _store(self, batch: list[Arrival]) -> None:
        parsed: list[InboundSignal] = []
        raws: dict[str, Any] = {}
        rejected: list[tuple[str, str, Any]] = []
        received = not_json = 0
        for arrival in batch:
            topic, payload = arrival.topic, arrival.payload
            received += 1
            try:
                body = json.loads(payload)
            except (UnicodeDecodeError, ValueError, RecursionError):
                not_json += 1
                continue
            levels = topic.split("/")
            device = levels[self.level] if len(levels) > self.level else ""
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
        # One transaction: the batch's signals and its rejections are stored together or not at all.
        with transaction.atomic():
            result = ingest_signals(SOURCE, parsed, strict=False) if parsed else None
            if result is not None:
                rejected += [(i, reason, raws.get(i)) for i, reason in result.rejected]
            if rejected:
                record_rejections(SOURCE, rejected)
        self.stats.received += received
        self.stats.not_json += not_json
        if result is not None:
            self.stats.stored += result.created
            self.stats.duplicates += result.duplicates
        self.stats.rejected += len(rejected)
        self.stats.batches += 1
        if self.keep_latencies:
            now = time.monotonic()
            self.stats.latencies.extend(now - arrival.at for arrival in batch)
