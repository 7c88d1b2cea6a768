"""Signals over MQTT against the real Mosquitto on 127.0.0.1:1883 (skipped when it is not
running, failed under CI=1): the topic names the device, a persistent QoS 1 session resumes what
was published while the subscriber was away, non-JSON is skipped and counted."""

from __future__ import annotations

import json
import os
import socket
import uuid

import paho.mqtt.client as mqtt
import pytest

from listening.models import Contact, Customer, Device, Signal, SignalRejection
from listening.signal_mqtt import MqttSignalSubscriber

BROKER = "127.0.0.1"


def require_mosquitto() -> None:
    try:
        socket.create_connection((BROKER, 1883), timeout=1).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail("Mosquitto is not running on 127.0.0.1:1883 (CI must start it)")
        pytest.skip("Mosquitto is not running on 127.0.0.1:1883")


def publish(topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(BROKER, 1883)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(timeout=10)
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def bound_device(db):
    customer = Customer.objects.create(display_name="Ana", email="ana@example.com")
    Contact.objects.create(channel="web", external_id="ana", customer=customer)
    Device.objects.create(device_id="dev-7", customer=customer)
    return customer


def test_signals_mqtt_resumes_session_and_skips_non_json(bound_device):
    require_mosquitto()
    prefix = f"cxm-test-{uuid.uuid4().hex[:8]}"
    client_id = f"cxm-test-{uuid.uuid4().hex[:8]}"
    url = f"mqtt://{BROKER}:1883"
    first = MqttSignalSubscriber(url, f"{prefix}/devices/+/events", client_id)
    first.run(seconds=1.0)  # subscribes; the broker now keeps this session while it is away
    assert first.subscribed
    topic = f"{prefix}/devices/dev-7/events"
    good = [json.dumps({"type": "device_error", "payload": {"code": f"E{i}"}}).encode() for i in range(5)]
    publish(topic, [*good, b"\xff not json", json.dumps({"type": "telepathy"}).encode(), good[0]])
    second = MqttSignalSubscriber(url, f"{prefix}/devices/+/events", client_id)
    stats = second.run(seconds=15, max_messages=8)
    assert stats.received == 8
    assert (stats.stored, stats.not_json, stats.rejected, stats.duplicates) == (5, 1, 1, 1)
    assert set(Signal.objects.values_list("device_id", "customer_id")) == {("dev-7", bound_device.pk)}
    assert SignalRejection.objects.filter(source="mqtt", reason__contains="unknown signal type").exists()
    # Consumed and acknowledged: a third run gets nothing again.
    assert MqttSignalSubscriber(url, f"{prefix}/devices/+/events", client_id).run(seconds=1.5).received == 0


def test_signals_mqtt_topic_needs_a_device_level():
    with pytest.raises(ValueError, match=r"\+ level"):
        MqttSignalSubscriber(f"mqtt://{BROKER}:1883", "devices/events", "x")


class CrashingSubscriber(MqttSignalSubscriber):
    """Stores the batch, then dies before its transaction commits (a killed worker): nothing of it
    may be acknowledged to the broker."""

    def _store(self, batch):
        from django.db import transaction

        with transaction.atomic():
            super()._store(batch)
            raise RuntimeError("killed mid-batch")


def test_signals_mqtt_acknowledges_only_after_commit(bound_device):
    """A batch that never committed is delivered again by the broker and stored once."""
    require_mosquitto()
    prefix = f"cxm-test-{uuid.uuid4().hex[:8]}"
    client_id = f"cxm-test-{uuid.uuid4().hex[:8]}"
    url, topic_filter = f"mqtt://{BROKER}:1883", f"{prefix}/devices/+/events"
    assert MqttSignalSubscriber(url, topic_filter, client_id).run(seconds=1.0).received == 0  # session made
    publish(f"{prefix}/devices/dev-7/events",
            [json.dumps({"id": f"e{i}", "type": "device_error", "payload": {"code": "E1"}}).encode() for i in range(3)])
    with pytest.raises(RuntimeError, match="killed mid-batch"):
        CrashingSubscriber(url, topic_filter, client_id).run(seconds=15, max_messages=3)
    assert not Signal.objects.exists()
    stats = MqttSignalSubscriber(url, topic_filter, client_id).run(seconds=15, max_messages=3)
    assert (stats.received, stats.stored) == (3, 3)
    assert sorted(Signal.objects.values_list("external_id", flat=True)) == ["e0", "e1", "e2"]
    # Committed, then acknowledged: nothing comes back.
    assert MqttSignalSubscriber(url, topic_filter, client_id).run(seconds=1.5).received == 0

