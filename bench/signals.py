#!/usr/bin/env python
"""Signals benchmark: 10,000 devices sending signals at 500/s through MQTT and the signed webhook,
with an "N device errors within a window" rule active.

    python bench/signals.py [--devices 10000] [--rate 500] [--seconds 20] [--database-url URL]

What it does, in one run:
  1. creates a PostgreSQL database (default cxm_signals_bench), migrates it, and makes 10,000
     customers, each with a contact, a conversation on a webhook connector, and a device;
  2. plans the traffic: every device sends at least one signal; 200 devices send a burst of 6
     errors (the rule's threshold is 5 within 10 minutes: they must fire), 100 send 4 (they must
     not); the expected firings are computed from the plan;
  3. sends it at --rate: devices with an even number publish to Mosquitto (QoS 1) and an in-process
     `mqtt_signals` subscriber stores them; odd devices go through the signed webhook (Django's
     full request stack, in deliveries of up to 50 signals as a gateway batches them). Rules are
     evaluated on commit (eager Celery, in the ingesting threads);
  4. measures ingest throughput, the p95 from a signal's send to its proactive case's
     `case.created` console event, and the firings against the plan;
  5. replays every stored signal, in time order, through the incremental evaluator and through a
     naive evaluator that recounts the signal table on each event (same semantics), timing both.
The last line is `BENCH signals {json}`. The bench database is dropped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_signals_bench"
THRESHOLD, WINDOW_MINUTES = 5, 10
SECRET = "bench-signals-" + uuid.uuid4().hex[:8]


def admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


def recreate_database(url: str, drop_only: bool = False) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ.update({"DATABASE_URL": url, "DEBUG": "1", "CELERY_TASK_ALWAYS_EAGER": "1",
                       "DJANGO_SETTINGS_MODULE": "cxm.settings", "SECRET_KEY": "bench-" + "x" * 40})
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_world(devices: int):
    from listening.models import Connector, Contact, Conversation, Customer, Device
    from responses.models import SignalRule, Team
    from responses.teams import ensure_default_queues

    team = Team.objects.create(name="Care team", slug="care-team")
    ensure_default_queues(team)
    team.queues.update(auto_assign=False)
    connector = Connector(kind="webhook", name="Device cloud", slug="device-cloud")
    connector.credentials = {"signing_secret": SECRET}
    connector.save()
    team.connectors.add(connector)
    now = datetime.now(tz=UTC)
    customers = Customer.objects.bulk_create([Customer(display_name=f"Customer {i}") for i in range(devices)])
    contacts = Contact.objects.bulk_create([Contact(channel="web", external_id=f"c{i}", customer=c)
                                            for i, c in enumerate(customers)])
    Conversation.objects.bulk_create([Conversation(connector=connector, channel="web", external_id=f"t{i}",
                                                   contact=c, started_at=now, last_message_at=now)
                                      for i, c in enumerate(contacts)])
    Device.objects.bulk_create([Device(device_id=f"dev-{i}", customer=c) for i, c in enumerate(customers)])
    rule = SignalRule.objects.create(name="Device in trouble", signal_type="device_error", per="device",
                                     threshold=THRESHOLD, window_minutes=WINDOW_MINUTES,
                                     actions={"open_case": True, "priority": 0.9, "alert": True})
    return connector, rule


def plan(devices: int, rate: int, seconds: float, seed: int = 7) -> list[tuple[float, int]]:
    """(offset seconds, device) for every signal, sorted by offset."""
    rng = random.Random(seed)
    total = int(rate * seconds)
    events: list[tuple[float, int]] = []
    bursty = rng.sample(range(devices), 300)
    for n, device in enumerate(bursty):
        count = 6 if n < 200 else 4
        start = rng.uniform(0, seconds * 0.7)
        events += [(start + k * rng.uniform(0.2, 1.0), device) for k in range(count)]
    others = [d for d in range(devices) if d not in set(bursty)]
    while len(events) < total:
        events.append((rng.uniform(0, seconds), others[len(events) % len(others)]))
    return sorted(events)


def expected_firings(events: list[tuple[float, int]]) -> int:
    """The rule's semantics on the plan: count in (max(t - W, silenced_until), t]; fire at N."""
    by_device: dict[int, list[float]] = {}
    for at, device in events:
        by_device.setdefault(device, []).append(at)
    fired, window = 0, WINDOW_MINUTES * 60
    for times in by_device.values():
        silenced = None
        for i, t in enumerate(times):
            if silenced is not None and t <= silenced:
                continue
            floor = t - window if silenced is None else max(t - window, silenced)
            if sum(1 for u in times[: i + 1] if floor < u <= t) >= THRESHOLD:
                fired, silenced = fired + 1, t + window
    return fired


def run_traffic(events, connector, rate: int, started_at: float, base: datetime, sent: dict):
    import paho.mqtt.client as mqtt
    from django.db import connection
    from django.test import Client

    from listening.connectors.webhook import sign
    from listening.signal_mqtt import MqttSignalSubscriber

    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    subscriber = MqttSignalSubscriber("mqtt://127.0.0.1:1883", f"{prefix}/devices/+/events",
                                      f"bench-sub-{uuid.uuid4().hex[:6]}", batch_size=250, batch_seconds=0.1)
    mqtt_events = [e for e in events if e[1] % 2 == 0]
    hook_events = [e for e in events if e[1] % 2 == 1]
    errors: list[str] = []

    def consume():
        try:
            subscriber.run(seconds=len(events) / rate + 60, max_messages=len(mqtt_events))
        except Exception as exc:  # reported, not hidden
            errors.append(f"mqtt: {exc!r}")
        finally:
            connection.close()

    def item(n: int, at: float, device: int) -> dict:
        return {"id": f"s{n}", "type": "device_error", "occurred_at": (base + timedelta(seconds=at)).isoformat(),
                "device_id": f"dev-{device}", "payload": {"code": "E42"}}

    def publish():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        infos = []
        for n, (at, device) in enumerate(mqtt_events):
            delay = started_at + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = item(n, at, device)
            body["id"] = f"m{n}"
            sent[body["id"]] = time.time()
            infos.append(client.publish(f"{prefix}/devices/dev-{device}/events", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=60)
        client.loop_stop()
        client.disconnect()

    def webhook():
        client = Client(SERVER_NAME="localhost")
        try:
            pending: list[dict] = []
            for n, (at, device) in enumerate(hook_events):
                delay = started_at + at - time.monotonic()
                if delay > 0 and pending:
                    post(client, pending)
                    pending = []
                    delay = started_at + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                body = item(n, at, device)
                body["id"] = f"w{n}"
                sent[body["id"]] = time.time()
                pending.append(body)
                if len(pending) >= 50:
                    post(client, pending)
                    pending = []
            if pending:
                post(client, pending)
        except Exception as exc:
            errors.append(f"webhook: {exc!r}")
        finally:
            connection.close()

    def post(client, items):
        body = json.dumps({"signals": items}).encode()
        response = client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json",
                               headers=sign(SECRET, int(time.time()), body))
        if response.status_code != 200:
            errors.append(f"webhook {response.status_code}: {response.content[:200]!r}")

    threads = [threading.Thread(target=f) for f in (consume, publish, webhook)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors, subscriber.stats


def replay(rule_model, rule_id: int) -> dict:
    """Both evaluators over every stored signal in time order, with fresh state."""
    from django.db import transaction

    from listening.models import Signal
    from responses.models import SignalRule, SignalRuleFiring
    from responses.signal_rules import evaluate_signals, naive_should_fire

    SignalRule.objects.filter(pk=rule_id).update(enabled=False)
    copy = SignalRule.objects.create(name="Replay", signal_type="device_error", per="device", threshold=THRESHOLD,
                                     window_minutes=WINDOW_MINUTES, actions={"tag": "replayed"})
    rows = list(Signal.objects.order_by("occurred_at", "id").values_list("id", "device_id", "occurred_at"))
    started = time.perf_counter()
    for start in range(0, len(rows), 250):
        evaluate_signals([r[0] for r in rows[start:start + 250]])
    incremental_s = time.perf_counter() - started
    incremental_fired = SignalRuleFiring.objects.filter(rule=copy).count()
    silenced: dict[str, datetime] = {}
    naive_fired = 0
    started = time.perf_counter()
    with transaction.atomic():
        for _, device, at in rows:
            until = silenced.get(device)
            if until is not None and at <= until:
                continue
            if naive_should_fire(copy, {"device_id": device}, at, until):
                naive_fired += 1
                silenced[device] = at + timedelta(minutes=WINDOW_MINUTES)
    naive_s = time.perf_counter() - started
    return {"events": len(rows), "incremental_s": incremental_s, "naive_s": naive_s,
            "incremental_fired": incremental_fired, "naive_fired": naive_fired}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB_URL))
    args = parser.parse_args(argv)
    recreate_database(args.database_url)
    try:
        setup_django(args.database_url)
        from listening.models import Signal
        from responses.models import ConsoleEvent, SignalRuleFiring

        connector, rule = make_world(args.devices)
        events = plan(args.devices, args.rate, args.seconds)
        expected = expected_firings(events)
        sent: dict[str, float] = {}
        base = datetime.now(tz=UTC) - timedelta(seconds=args.seconds + 5)  # occurred_at in the recent past
        started = time.monotonic()
        wall_started = time.time()
        errors, mqtt_stats = run_traffic(events, connector, args.rate, started, base, sent)
        stored = Signal.objects.count()
        last_stored = Signal.objects.order_by("-received_at").values_list("received_at", flat=True).first()
        ingest_seconds = (last_stored.timestamp() - wall_started) if last_stored else float("nan")
        latencies = []
        for firing in SignalRuleFiring.objects.filter(rule=rule).select_related("case"):
            trigger = Signal.objects.filter(pk__in=firing.signal_ids).order_by("-occurred_at", "-id").first()
            event = ConsoleEvent.objects.filter(type="case.created", case_id=firing.case_id).first()
            if trigger and event and trigger.external_id in sent:
                latencies.append(event.created_at.timestamp() - sent[trigger.external_id])
        fired = SignalRuleFiring.objects.filter(rule=rule).count()
        cases = SignalRuleFiring.objects.filter(rule=rule, case__isnull=False).values("case").distinct().count()
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
        figures_replay = replay(SignalRuleFiring, rule.pk)
        figures = {
            "signals_sent": len(events), "signals_stored": stored,
            "offered_per_s": round(len(events) / args.seconds, 1),
            "ingest_per_s": round(stored / ingest_seconds, 1) if ingest_seconds else 0.0,
            "case_p95_ms": round(p95 * 1000, 1), "case_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1)
            if latencies else None,
            "rules_fired": fired, "rules_expected": expected, "cases_opened": cases,
            "fired_exact_ratio": round(fired / expected, 3) if expected else None,
            "mqtt_not_json": mqtt_stats.not_json, "mqtt_received": mqtt_stats.received, "errors": len(errors),
            "incremental_eval_per_s": round(figures_replay["events"] / figures_replay["incremental_s"], 1),
            "naive_eval_per_s": round(figures_replay["events"] / figures_replay["naive_s"], 1),
            "incremental_vs_naive_ratio": round(figures_replay["naive_s"] / figures_replay["incremental_s"], 2),
            "replay_incremental_fired": figures_replay["incremental_fired"],
            "replay_naive_fired": figures_replay["naive_fired"],
        }
        for error in errors[:5]:
            print("error:", error)
        print(f"{stored}/{len(events)} signals stored in {ingest_seconds:.1f} s; {fired} firings "
              f"(expected {expected}); p95 signal -> case {p95 * 1000:.0f} ms")
        print("BENCH signals " + json.dumps(figures, sort_keys=True))
        return 0 if not errors and stored == len(events) and fired == expected else 1
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(args.database_url, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
