"""Subscribe to device signals over MQTT: `manage.py mqtt_signals [--topic devices/+/events]`.
See listening.signal_mqtt for the topic mapping, batching and resumption."""

from __future__ import annotations

import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from listening.signal_mqtt import MqttSignalSubscriber


class Command(BaseCommand):
    help = "Store device signals published over MQTT (QoS 1, persistent session) until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=settings.CXM_MQTT_URL, help="mqtt://host:port (CXM_MQTT_URL)")
        parser.add_argument("--topic", default=settings.CXM_MQTT_TOPIC,
                            help="Topic filter whose + level names the device (CXM_MQTT_TOPIC).")
        parser.add_argument("--client-id", default=f"cxm-signals-{socket.gethostname()}"[:60],
                            help="Keep it stable: the broker keeps this id's session while it is away.")
        parser.add_argument("--queue-size", type=int, default=2000)
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--seconds", type=float, default=None, help="Stop after this long (default: never).")

    def handle(self, *args, url, topic, client_id, queue_size, batch_size, seconds, **options) -> None:
        try:
            subscriber = MqttSignalSubscriber(url, topic, client_id, queue_size=max(1, queue_size),
                                              batch_size=max(1, batch_size))
            stats = subscriber.run(seconds=seconds)
        except (ValueError, OSError) as exc:
            raise CommandError(f"MQTT: {exc}") from None
        except KeyboardInterrupt:
            stats = subscriber.stats
        self.stdout.write(stats.line())
