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
  3. sends it at --rate, from payloads and signed bodies built before the clock starts: devices
     with an even number publish to Mosquitto (QoS 1) from a publisher process, and a subscriber
     process (what `manage.py mqtt_signals` runs) stores them; odd devices go through the signed
     webhook (Django's full request stack, in this process, in deliveries of what a gateway
     collected in 100 ms, at most 50 signals). Rules are evaluated on commit (eager Celery, in
     the ingesting processes). Three processes, as in production, so no GIL is shared;
  4. measures ingest throughput, the p95 from a signal's send to its proactive case's
     `case.created` console event, the firings against the plan, and the CPU each part spent
     (webhook process, MQTT subscriber, their PostgreSQL backends, Mosquitto, the publisher) per
     signal, with the load average: on a shared machine the CPU per signal is the steady figure;
  5. replays every stored signal, in time order, through the incremental evaluator and through a
     naive evaluator that recounts the signal table on each event (same semantics), timing both.
The last line is `BENCH signals {json}`. The bench database is dropped on exit. BENCH_ROOT=<a
checkout> runs that checkout's product code under this bench (side-by-side comparisons).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parent.parent).resolve()
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_signals_bench"
THRESHOLD, WINDOW_MINUTES = 5, 10
SECRET = "bench-signals-" + uuid.uuid4().hex[:8]
GATEWAY_SECONDS, GATEWAY_MAX = 0.1, 50  # a webhook delivery: what a gateway collected in 100 ms, at most 50


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


def setup_django(url: str, migrate: bool = True) -> None:
    os.chdir(REPO)  # Celery puts the working directory on sys.path: it must be the checkout under test
    os.environ.update({"DATABASE_URL": url, "DEBUG": "1", "CELERY_TASK_ALWAYS_EAGER": "1",
                       "DJANGO_SETTINGS_MODULE": "cxm.settings", "SECRET_KEY": "bench-" + "x" * 40})
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    if migrate:
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


def process_cpu(pid: int | str = "self") -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu() -> float:
    """CPU seconds of this thread's PostgreSQL backend (same machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return process_cpu(cursor.fetchone()[0])


def mosquitto_cpu() -> float:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "mosquitto":
                    return process_cpu(entry.name)
            except OSError:
                continue
    return 0.0


def signal_item(ident: str, at: float, device: int, base: datetime) -> dict:
    return {"id": ident, "type": "device_error", "occurred_at": (base + timedelta(seconds=at)).isoformat(),
            "device_id": f"dev-{device}", "payload": {"code": "E42"}}


def _subscriber_main(url: str, topic: str, client_id: str, expected: int, seconds: float, ready, results) -> None:
    """Process: the MQTT subscriber, as `manage.py mqtt_signals` runs it."""
    setup_django(url, migrate=False)
    from listening.signal_mqtt import MqttSignalSubscriber

    subscriber = MqttSignalSubscriber("mqtt://127.0.0.1:1883", topic, client_id, batch_size=250, batch_seconds=0.1)

    def tell_ready() -> None:
        event = getattr(subscriber, "ready", None)  # older checkouts (BENCH_ROOT) have only .subscribed
        while not (event.is_set() if event is not None else subscriber.subscribed):
            time.sleep(0.01)
        time.sleep(0.0 if event is not None else 0.5)
        ready.set()

    threading.Thread(target=tell_ready, daemon=True).start()
    cpu, pg = process_cpu(), backend_cpu()
    error = ""
    try:
        subscriber.run(seconds=seconds, max_messages=expected)
    except Exception as exc:  # reported, not hidden
        error = repr(exc)
    stats = subscriber.stats
    results.put(("mqtt", {"received": stats.received, "stored": stats.stored, "not_json": stats.not_json,
                          "batches": stats.batches, "error": error, "cpu_s": process_cpu() - cpu,
                          "pg_cpu_s": backend_cpu() - pg}))


def _publisher_main(messages: list[tuple[float, str, bytes, str]], start: float, results) -> None:
    """Process: the devices, publishing pre-built payloads at their planned times (QoS 1)."""
    import paho.mqtt.client as mqtt

    cpu = process_cpu()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    sent: dict[str, float] = {}
    infos = []
    for at, topic, payload, ident in messages:
        delay = start + at - time.time()
        if delay > 0:
            time.sleep(delay)
        sent[ident] = time.time()
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()
    results.put(("publisher", {"sent": sent, "cpu_s": process_cpu() - cpu}))


def deliveries(hook_events: list[tuple[float, int]], base: datetime, timestamp: int):
    """(send at, ids, body, headers): each delivery holds what came within GATEWAY_SECONDS (at most
    GATEWAY_MAX), sent when that window closes; signed before the clock starts."""
    from listening.connectors.webhook import sign

    out, pending, closes = [], [], None
    for n, (at, device) in enumerate(hook_events):
        if pending and (at > closes or len(pending) >= GATEWAY_MAX):
            out.append((closes if at > closes else pending[-1][0], pending))
            pending = []
        if not pending:
            closes = at + GATEWAY_SECONDS
        pending.append((at, signal_item(f"w{n}", at, device, base)))
    if pending:
        out.append((closes, pending))
    built = []
    for send_at, items in out:
        body = json.dumps({"signals": [item for _, item in items]}).encode()
        built.append((send_at, [item["id"] for _, item in items], body, sign(SECRET, timestamp, body)))
    return built


def run_traffic(events, connector, rate: int, base: datetime, database_url: str):
    """Returns (errors, mqtt figures, sent times by signal id, CPU seconds by part, traffic start)."""
    from django.db import connection
    from django.test import Client

    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    topic_filter = f"{prefix}/devices/+/events"
    mqtt_events = [e for e in events if e[1] % 2 == 0]
    hook_events = [e for e in events if e[1] % 2 == 1]
    messages = [(at, f"{prefix}/devices/dev-{device}/events",
                 json.dumps(signal_item(f"m{n}", at, device, base)).encode(), f"m{n}")
                for n, (at, device) in enumerate(mqtt_events)]
    bodies = deliveries(hook_events, base, int(time.time()))
    errors: list[str] = []
    sent: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    results, ready = ctx.Queue(), ctx.Event()
    seconds = 5 * len(events) / rate + 120  # room for a lagging subscriber on a loaded machine
    subscriber = ctx.Process(target=_subscriber_main, args=(database_url, topic_filter,
                                                            f"bench-sub-{uuid.uuid4().hex[:6]}", len(mqtt_events),
                                                            seconds, ready, results))
    subscriber.start()
    if not ready.wait(60):
        errors.append("mqtt: the subscriber did not subscribe within 60 s")
    start = time.time() + 1.0  # the publisher process starts meanwhile
    publisher = ctx.Process(target=_publisher_main, args=(messages, start, results))
    publisher.start()
    mosquitto = mosquitto_cpu()

    def webhook() -> None:
        client = Client(SERVER_NAME="localhost")
        # One connection for the run, as a server with persistent connections keeps (the product's
        # conn_max_age=0 opens one per request), so its backend's CPU can be read.
        connection.settings_dict["CONN_MAX_AGE"] = None
        own, pg = process_cpu(), backend_cpu()
        try:
            for send_at, ids, body, headers in bodies:
                delay = start + send_at - time.time()
                if delay > 0:
                    time.sleep(delay)
                now = time.time()
                sent.update((ident, now) for ident in ids)
                response = client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json",
                                       headers=headers)
                if response.status_code != 200:
                    errors.append(f"webhook {response.status_code}: {response.content[:200]!r}")
        except Exception as exc:
            errors.append(f"webhook: {exc!r}")
        finally:
            cpu["webhook_pg"] = backend_cpu() - pg
            cpu["webhook_process"] = process_cpu() - own  # the whole process: this thread is all it does
            connection.close()

    thread = threading.Thread(target=webhook)
    thread.start()
    thread.join()
    mqtt_figures: dict = {}
    for _ in range(2):
        try:
            kind, figures = results.get(timeout=seconds + 60)
        except Exception:  # noqa: BLE001 - a process that died says nothing; reported below
            errors.append("a bench process gave no result")
            break
        if kind == "publisher":
            sent.update(figures["sent"])
            cpu["publisher"] = figures["cpu_s"]
        else:
            mqtt_figures = figures
            cpu["mqtt_subscriber"], cpu["mqtt_pg"] = figures["cpu_s"], figures["pg_cpu_s"]
            if figures["error"]:
                errors.append(f"mqtt: {figures['error']}")
    cpu["mosquitto"] = mosquitto_cpu() - mosquitto
    publisher.join(30)
    subscriber.join(30)
    return errors, mqtt_figures, sent, cpu, start


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
        base = datetime.now(tz=UTC) - timedelta(seconds=args.seconds + 5)  # occurred_at in the recent past
        load_before = os.getloadavg()
        errors, mqtt_stats, sent, cpu, wall_started = run_traffic(events, connector, args.rate, base,
                                                                    args.database_url)
        load_after = os.getloadavg()
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
            # Kept up with the offered rate: the last signal stored this long after the last was sent.
            "stored_after_last_send_ms": round(1000 * (last_stored.timestamp() - max(sent.values())), 1)
            if last_stored and sent else None,
            "fired_exact_ratio": round(fired / expected, 3) if expected else None,
            "mqtt_not_json": mqtt_stats.get("not_json"), "mqtt_received": mqtt_stats.get("received"),
            "mqtt_batches": mqtt_stats.get("batches"), "errors": len(errors),
            "incremental_eval_per_s": round(figures_replay["events"] / figures_replay["incremental_s"], 1),
            "naive_eval_per_s": round(figures_replay["events"] / figures_replay["naive_s"], 1),
            "incremental_vs_naive_ratio": round(figures_replay["naive_s"] / figures_replay["incremental_s"], 2),
            "replay_incremental_fired": figures_replay["incremental_fired"],
            "replay_naive_fired": figures_replay["naive_fired"],
        }
        server_cpu = cpu.get("webhook_process", 0) + cpu.get("webhook_pg", 0) + cpu.get("mqtt_subscriber", 0) \
            + cpu.get("mqtt_pg", 0) + cpu.get("mosquitto", 0)
        per_signal = server_cpu / stored if stored else float("nan")
        figures.update({f"cpu_{part}_ms_per_signal": round(1000 * seconds / max(1, stored), 3)
                        for part, seconds in sorted(cpu.items())})
        figures.update({
            "cpu_server_ms_per_signal": round(1000 * per_signal, 3),
            # What two idle cores could carry at this CPU cost (webhook, subscriber, their database
            # backends, the broker; not the publisher, which stands for the devices).
            "two_core_capacity_per_s": round(2 / per_signal, 1) if per_signal else None,
            "load_1min_before": round(load_before[0], 2), "load_1min_after": round(load_after[0], 2),
        })
        for error in errors[:5]:
            print("error:", error)
        print(f"{stored}/{len(events)} signals stored in {ingest_seconds:.1f} s; {fired} firings "
              f"(expected {expected}); p95 signal -> case {p95 * 1000:.0f} ms; server CPU "
              f"{1000 * per_signal:.2f} ms/signal ({', '.join(f'{k} {v:.1f} s' for k, v in sorted(cpu.items()))}); "
              f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
        print("BENCH signals " + json.dumps(figures, sort_keys=True))
        return 0 if not errors and stored == len(events) and fired == expected else 1
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(args.database_url, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
