#!/usr/bin/env python
"""Signals benchmark: 10,000 devices sending signals at 500/s through MQTT and the signed webhook,
with an "N device errors within a window" rule active, against the deployment's own processes.

    python bench/signals.py [--devices 10000] [--rate 500] [--seconds 20] [--database-url URL]

What it does, in one run:
  1. creates a PostgreSQL database (default cxm_signals_bench), migrates it, and makes 10,000
     customers, each with a contact, a conversation on the webhook connector, and a device, plus
     an agent of the team whose console the bench watches;
  2. plans the traffic: every device sends at least one signal; 200 devices send a burst of 6
     errors (the rule's threshold is 5 within 10 minutes: they must fire), 100 send 4 (they must
     not); the expected firings are computed from the plan;
  3. starts the full deployment's processes for signals (README, "Full deployment"): Daphne
     (cxm.asgi, DEBUG=0), a default-queue Celery worker (`-P threads -c 4`, which evaluates the
     rules: `responses.evaluate_signals` after each commit), and `manage.py mqtt_signals`; Redis
     is the broker and the channel layer. No learning worker: signals are not classified;
  4. sends at --rate, from payloads and signed requests built before the clock starts: devices
     with an even number publish to Mosquitto (QoS 1) from a publisher process; odd devices go
     through the signed webhook from a sender process of their own over real HTTP (bench.ingest's
     LeanHTTP; deliveries of what a gateway collected in 100 ms, at most 50 signals);
  5. measures, from the database, the signals stored per second in the steady window against
     the rate offered in it; from an agent's console websocket, p50/p95 from a signal's send to
     its proactive case's `case.created`; the firings against the plan; the CPU every process
     spent (Daphne, the worker, the subscriber, PostgreSQL, Redis, Mosquitto; the devices'
     publisher and the webhook sender apart) per signal, with the load average;
  6. replays every stored signal, in time order, through the incremental evaluator and through a
     naive evaluator that recounts the signal table on each event (same semantics), timing both.
The last line is `BENCH signals {json}`. The bench database is dropped and the bench's Redis
database flushed on exit. BENCH_ROOT=<a checkout> runs that checkout's product code (every
process of the deployment, and the replay) under this bench: side-by-side comparisons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# The bench's helpers come from this checkout, the product from BENCH_ROOT's (inserted after).
from bench.e2e_client import Console  # noqa: E402
from bench.e2e_deploy import (  # noqa: E402
    CpuSnapshot,
    Deployment,
    Worker,
    _cpu_shares,
    _pids_named,
    _postgres_pids,
    flush_redis,
    setup_fixture,
)
from bench.ingest import (  # noqa: E402
    RETRIES,
    BenchFailure,
    BenchTimeout,
    LeanHTTP,
    LeanHTTPError,
    Profiler,
    Servers,
    bench_env,
    create_database,
    drop_bench_database,
    install_time_limit,
    signed_request,
)

ROOT = Path(os.environ.get("BENCH_ROOT") or HERE).resolve()
if str(ROOT) != sys.path[0]:
    sys.path.insert(0, str(ROOT))

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_signals_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
MQTT_URL = "mqtt://127.0.0.1:1883"
THRESHOLD, WINDOW_MINUTES = 5, 10
GATEWAY_SECONDS, GATEWAY_MAX = 0.1, 50  # a webhook delivery: what a gateway collected in 100 ms, at most 50
STEADY_SKIP_S, STEADY_TAIL_S = 2.0, 1.0  # the steady window leaves out the first 2 s and the last 1 s


def deploy_env(database_url: str, redis_url: str) -> dict[str, str]:
    """bench.ingest's deployment environment (DEBUG=0, generated keys) with Redis, real workers,
    and BENCH_ROOT's code on the path."""
    env = bench_env(database_url, "shipped")
    env.pop("BENCH_DB_CONN", None)
    env.update({"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "0", "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DJANGO_SETTINGS_MODULE": "cxm.settings"})
    if ROOT != HERE:
        env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(HERE), str(ROOT), 1)
    return env


def make_world(devices: int, fixture):
    """Customers, contacts, conversations and devices on the fixture's connector; the rule."""
    from listening.models import Contact, Conversation, Customer, Device
    from responses.models import Queue, SignalRule

    # As before this bench ran the deployment: cases wait in the queue (no auto-assignment).
    Queue.objects.filter(team_id=fixture.team_id).update(auto_assign=False)
    now = datetime.now(tz=UTC)
    customers = Customer.objects.bulk_create([Customer(display_name=f"Customer {i}") for i in range(devices)])
    contacts = Contact.objects.bulk_create([Contact(channel="web", external_id=f"c{i}", customer=c)
                                            for i, c in enumerate(customers)])
    Conversation.objects.bulk_create([Conversation(connector_id=fixture.connector_id, channel="web",
                                                   external_id=f"t{i}", contact=c, started_at=now,
                                                   last_message_at=now) for i, c in enumerate(contacts)])
    Device.objects.bulk_create([Device(device_id=f"dev-{i}", customer=c) for i, c in enumerate(customers)])
    return SignalRule.objects.create(name="Device in trouble", signal_type="device_error", per="device",
                                     threshold=THRESHOLD, window_minutes=WINDOW_MINUTES,
                                     actions={"open_case": True, "priority": 0.9, "alert": True})


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
    chosen = set(bursty)
    others = [d for d in range(devices) if d not in chosen]
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


def signal_item(ident: str, at: float, device: int, base: datetime) -> dict:
    return {"id": ident, "type": "device_error", "occurred_at": (base + timedelta(seconds=at)).isoformat(),
            "device_id": f"dev-{device}", "payload": {"code": "E42"}}


def deliveries(hook_events: list[tuple[float, int]], base: datetime, host: str, path: str):
    """(send at, ids, request bytes): each delivery holds what came within GATEWAY_SECONDS (at
    most GATEWAY_MAX), sent when that window closes; signed before the clock starts."""
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
        built.append((send_at, [item["id"] for _, item in items], signed_request(host, path, body)))
    return built


def _rusage_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- The devices' processes (spawned: nothing of Django in them) --------------------------------
def _publisher_main(messages: list[tuple[float, str, bytes, str]], ready, go, start, results) -> None:
    """The MQTT devices: pre-built payloads published at their planned times (QoS 1)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    ready.set()
    go.wait()
    cpu = _rusage_s()
    sent: dict[str, float] = {}
    infos = []
    for at, topic, payload, ident in messages:
        delay = start.value + at - time.time()
        if delay > 0:
            time.sleep(delay)
        sent[ident] = time.time()
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()
    results.put(("publisher", {"sent": sent, "cpu_s": _rusage_s() - cpu}))


def _webhook_main(port: int, schedule: list[tuple[float, list[str], bytes]], ready, go, start, results) -> None:
    """The webhook's gateway: prepared, signed requests sent on schedule over kept-alive
    connections (bench.ingest.LeanHTTP), open loop: a slow answer does not hold the next send.
    A 5xx or a broken connection is retried with a short backoff, as providers do."""
    sent: dict[str, float] = {}
    errors: list[str] = []
    answers: list[float] = []

    async def post(lean: LeanHTTP, ids: list[str], raw: bytes) -> None:
        last = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(0.05 * 2**attempt)
            t0 = time.time()
            try:
                status, body = await asyncio.wait_for(lean.request(raw), 30.0)
            except (LeanHTTPError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            answers.append(time.time() - t0)
            if status >= 500:
                last = f"HTTP {status}"
                continue
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
            elif json.loads(body).get("stored") != len(ids):
                errors.append(f"stored {json.loads(body).get('stored')} of {len(ids)}")
            return
        errors.append(f"gave up after {RETRIES} retries, last: {last}")

    async def send_all() -> None:
        lean = LeanHTTP("127.0.0.1", port, 64)
        tasks = []
        for at, ids, raw in schedule:
            delay = start.value + at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            sent.update((ident, now) for ident in ids)
            tasks.append(asyncio.ensure_future(post(lean, ids, raw)))
        await asyncio.gather(*tasks)
        await lean.close()

    ready.set()
    go.wait()
    cpu = _rusage_s()
    try:
        asyncio.run(send_all())
    except Exception as exc:  # noqa: BLE001 -- reported, not hidden
        errors.append(f"webhook sender: {exc!r}")
    answers.sort()
    results.put(("webhook", {"sent": sent, "errors": errors, "cpu_s": _rusage_s() - cpu,
                             "answer_p95_ms": 1000 * answers[int(0.95 * (len(answers) - 1))] if answers else None}))


# --- The console --------------------------------------------------------------------------------
class CaseConsole(Console):
    """An agent's console on the websocket (bench.e2e_client's, which reconnects from its last
    event id, the product's catch-up): when each case.created event arrives, by case id."""

    def __init__(self, url: str, origin: str, cookie: str):
        super().__init__(url, origin, cookie)
        self.arrivals: dict[int, float] = {}

    def on_event(self, event: dict, now: float) -> None:
        case_id = (event.get("case") or {}).get("id")
        if event["type"] == "case.created" and case_id:
            self.arrivals.setdefault(case_id, now)


# --- The deployment -----------------------------------------------------------------------------
def start_deployment(env: dict[str, str], tmp: Path, db_name: str, concurrency: int, topic_filter: str):
    """Daphne, the default worker and the MQTT subscriber, each in its own process group."""
    deployment = Deployment(env, tmp, concurrency, None, db_name, "threads")
    deployment.workers = [Worker("default", ["-Q", "default", "-c", str(concurrency), "-P", "threads"], env,
                                 tmp / "default.log", root=ROOT)]
    deployment.workers[0].start()
    deployment.daphne = Servers("cxm.settings", 1, env, tmp, root=ROOT)
    deployment.daphne.start()
    deployment._wait_workers(90)
    with open(tmp / "mqtt.log", "wb") as log:
        subscriber = subprocess.Popen([sys.executable, "manage.py", "mqtt_signals", "--url", MQTT_URL, "--topic",
                                       topic_filter, "--client-id", f"bench-sub-{uuid.uuid4().hex[:6]}"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return deployment, subscriber


def wait_subscribed(prefix: str, subscriber: subprocess.Popen, deadline_s: float = 90) -> int:
    """Publish probes for an unknown device until the subscriber records one as rejected: it is
    subscribed and storing (no probe becomes a signal, so none counts in the figures)."""
    import paho.mqtt.client as mqtt

    from listening.models import SignalRejection

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        deadline, n = time.monotonic() + deadline_s, 0
        while time.monotonic() < deadline:
            if subscriber.poll() is not None:
                raise BenchFailure(f"mqtt_signals exited with {subscriber.returncode}")
            client.publish(f"{prefix}/devices/probe/events", json.dumps({"id": f"probe-{n}", "type": "device_error"}),
                           qos=1).wait_for_publish(5)
            n += 1
            time.sleep(0.5)
            if SignalRejection.objects.filter(external_id__startswith="probe-").exists():
                return n
        raise BenchFailure(f"the MQTT subscriber stored nothing within {deadline_s:.0f} s")
    finally:
        client.loop_stop()
        client.disconnect()


def stop_subscriber(subscriber: subprocess.Popen, log: Path) -> dict:
    """SIGINT: the command prints its counts and exits."""
    if subscriber.poll() is None:
        subscriber.send_signal(signal.SIGINT)
        try:
            subscriber.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(subscriber.pid, signal.SIGKILL)
            subscriber.wait(5)
    text = log.read_text(errors="replace") if log.exists() else ""
    match = re.search(r"(\d+) received: (\d+) stored, (\d+) duplicates, (\d+) rejected, (\d+) not JSON, "
                      r"in (\d+) batches", text)
    if not match:
        return {"log_tail": text[-800:]}
    keys = ("received", "stored", "duplicates", "rejected", "not_json", "batches")
    return dict(zip(keys, map(int, match.groups()), strict=True))


async def run_traffic(args, events, base: datetime, port: int, fixture, deployment, subscriber, expected: int):
    """Returns (errors, sent times by signal id, CPU seconds by part, traffic start, drain seconds,
    console)."""
    from django.db import connections

    from listening.models import Signal

    console = CaseConsole(f"ws://127.0.0.1:{port}/ws/console/", f"http://127.0.0.1:{port}", fixture.cookie)
    listener = asyncio.ensure_future(console.run())
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(console.welcomed.wait(), 30)
    except TimeoutError:
        raise BenchFailure(f"the console websocket did not welcome us: {console.failure or 'no answer'}") from None
    topic_prefix = args.topic_prefix
    mqtt_events = [e for e in events if e[1] % 2 == 0]
    hook_events = [e for e in events if e[1] % 2 == 1]
    messages = [(at, f"{topic_prefix}/devices/dev-{device}/events",
                 json.dumps(signal_item(f"m{n}", at, device, base)).encode(), f"m{n}")
                for n, (at, device) in enumerate(mqtt_events)]
    schedule = deliveries(hook_events, base, f"127.0.0.1:{port}", f"/hooks/{fixture.slug}/")
    ctx = multiprocessing.get_context("spawn")
    results, go, start = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    ready = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_publisher_main, args=(messages, ready[0], go, start, results)),
             ctx.Process(target=_webhook_main, args=(port, schedule, ready[1], go, start, results))]
    for proc in procs:
        proc.start()
    for event in ready:
        if not await loop.run_in_executor(None, event.wait, 60):
            raise BenchFailure("a device process did not start within 60 s")
    roles_before = CpuSnapshot.take()
    start.value = time.time() + 0.5
    go.set()
    spy = None
    if args.profile:
        pid = {"worker": deployment.workers[0].proc.pid, "daphne": deployment.daphne.pids[0],
               "subscriber": subscriber.pid}[args.profile]
        spy = Profiler.start(pid, deployment.log_dir, seconds=max(1, int(args.seconds)))
    errors: list[str] = []
    sent: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in procs:
        try:
            kind, figures = await loop.run_in_executor(None, results.get, True, 5 * args.seconds + 180)
        except Exception:  # noqa: BLE001 -- a process that died says nothing; reported
            errors.append("a device process gave no result")
            break
        sent.update(figures["sent"])
        cpu[kind] = figures["cpu_s"]
        errors += [f"{kind}: {e}" for e in figures.get("errors", [])][:20]
        if kind == "webhook":
            cpu["webhook_answer_p95_ms"] = figures["answer_p95_ms"]
    for proc in procs:
        proc.join(30)

    def stored() -> int:
        try:
            return Signal.objects.count()
        finally:
            connections.close_all()

    # The drain: every signal stored and every expected case on the console (or a minute of nothing new).
    last_change, last_state = time.time(), None
    while time.time() - last_change < 60:
        deployment.check()
        if subscriber.poll() is not None:
            errors.append(f"mqtt_signals exited with {subscriber.returncode}")
            break
        state = (await loop.run_in_executor(None, stored), len(console.arrivals))
        if state[0] >= len(events) and state[1] >= expected:
            break
        if state != last_state:
            last_change, last_state = time.time(), state
        await asyncio.sleep(0.2)
    drained = time.time() - start.value
    if spy:
        # The worker's own plumbing (celery, kombu, click) wraps every sample: leave it out.
        args.profile_lines = [line for line in spy.finish(top=300) if not any(
            f"({lib}/" in line for lib in ("celery", "kombu", "click", "billiard", "vine"))][:45]
    roles_after = CpuSnapshot.take()
    roles = {"daphne": deployment.daphne.pids, "default_worker": deployment.workers[0].pids(),
             "mqtt_subscriber": [subscriber.pid], "postgres": _postgres_pids(args.db_name),
             "redis": _pids_named("redis-server"), "mosquitto": _pids_named("mosquitto"),
             "bench_console": [os.getpid()]}
    shares = _cpu_shares(roles_before, roles_after, drained, roles)
    cpu.update({role: share * drained for role, share in shares.items()})
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    if console.failure:
        errors.append(console.failure)
    return errors, sent, cpu, start.value, drained, console


def replay(rule_id: int) -> dict:
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


def pct(values: list[float], q: float) -> float:
    return values[int(q * (len(values) - 1))] if values else float("nan")


def measure(args, events, rule, sent: dict[str, float], start: float, console: CaseConsole) -> dict:
    """What the database says: stored per second in the steady window, firings, cases; the
    console's arrival times against the send times."""
    from listening.models import Signal
    from responses.models import ConsoleEvent, SignalRuleFiring

    received = [(at.timestamp() - start) for at in Signal.objects.values_list("received_at", flat=True)]
    window_from, window_to = STEADY_SKIP_S, args.seconds - STEADY_TAIL_S
    if window_to - window_from < 1:  # a very short run: its whole length
        window_from, window_to = 0.0, args.seconds
    span = window_to - window_from
    stored_in_window = sum(1 for t in received if window_from <= t < window_to)
    offered_in_window = sum(1 for at, _ in events if window_from <= at < window_to)
    per_second: dict[int, int] = {}
    for t in received:
        if window_from <= t < window_to:
            per_second[int(t)] = per_second.get(int(t), 0) + 1
    seconds_sorted = sorted(per_second.get(s, 0) for s in range(int(window_from), int(window_to)))
    rows = {pk: (ext, at, got) for pk, ext, at, got in Signal.objects.values_list("id", "external_id", "occurred_at",
                                                                                   "received_at")}
    emitted = dict(ConsoleEvent.objects.filter(type="case.created").values_list("case_id", "created_at"))
    latencies, unseen = [], 0
    # Where the time goes, per firing: send -> stored (ingest), stored -> case.created written (the
    # task's queue and the rule's work), written -> on the console (the doorbell and the websocket).
    stages: dict[str, list[float]] = {"ingest": [], "rules": [], "console": []}
    firings = list(SignalRuleFiring.objects.filter(rule=rule).values_list("signal_ids", "case_id"))
    for signal_ids, case_id in firings:
        trigger = max((i for i in signal_ids if i in rows), key=lambda i: (rows[i][1], i), default=None)
        seen = console.arrivals.get(case_id)
        if trigger is None or seen is None or rows[trigger][0] not in sent:
            unseen += 1
            continue
        sent_at, stored_at = sent[rows[trigger][0]], rows[trigger][2].timestamp()
        latencies.append(seen - sent_at)
        if case_id in emitted:
            stages["ingest"].append(stored_at - sent_at)
            stages["rules"].append(emitted[case_id].timestamp() - stored_at)
            stages["console"].append(seen - emitted[case_id].timestamp())
    latencies.sort()
    for values in stages.values():
        values.sort()
    last = max(received) if received else float("nan")
    return {
        "signals_stored": len(received),
        "steady_window_s": round(span, 1),
        "steady_offered_per_s": round(offered_in_window / span, 1),
        "steady_stored_per_s": round(stored_in_window / span, 1),
        "steady_stored_ratio": round(stored_in_window / offered_in_window, 3) if offered_in_window else None,
        "steady_min_second_per_s": seconds_sorted[0] if seconds_sorted else None,
        "steady_median_second_per_s": seconds_sorted[len(seconds_sorted) // 2] if seconds_sorted else None,
        "ingest_per_s": round(len(received) / last, 1) if received and last > 0 else None,
        "last_stored_s": round(last, 2),
        "stored_after_last_send_ms": round(1000 * (last + start - max(sent.values())), 1) if sent else None,
        "rules_fired": len(firings),
        "cases_opened": len({case for _, case in firings if case}),
        "cases_seen_on_console": len(firings) - unseen,
        "case_p50_ms": round(1000 * pct(latencies, 0.5), 1),
        "case_p95_ms": round(1000 * pct(latencies, 0.95), 1),
        "case_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        **{f"stage_{name}_p{q}_ms": round(1000 * pct(values, q / 100), 1) for name, values in stages.items()
           for q in (50, 95)},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4, help="threads of the default worker (README: 4)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="flushed before and after: not one anything else uses")
    parser.add_argument("--timeout", type=int, default=900, help="the whole run, seconds")
    parser.add_argument("--profile", choices=("worker", "daphne", "subscriber"),
                        help="py-spy that process during the traffic (py-spy on PATH)")
    args = parser.parse_args(argv)
    if urlsplit(args.redis_url).path.strip("/") in ("", "0"):
        parser.error("--redis-url must name a database other than 0 (it is flushed)")
    args.db_name = urlsplit(args.database_url).path.lstrip("/")
    args.topic_prefix = f"bench-{uuid.uuid4().hex[:6]}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = deploy_env(args.database_url, args.redis_url)
    os.environ.update(env)
    os.chdir(ROOT)
    install_time_limit(args.timeout)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="cxm-bench-signals-")
    tmp = Path(tmp_ctx.name)
    deployment = subscriber = None
    created = False
    try:
        create_database(args.database_url)
        created = True
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)
        fixture = setup_fixture()
        rule = make_world(args.devices, fixture)
        events = plan(args.devices, args.rate, args.seconds)
        expected = expected_firings(events)
        base = datetime.now(tz=UTC) - timedelta(seconds=args.seconds + 5)  # occurred_at in the recent past
        connections.close_all()
        flush_redis(args.redis_url)
        print(f"product code: {ROOT}; starting daphne, a default worker (-P threads -c {args.concurrency}) and "
              f"mqtt_signals", flush=True)
        deployment, subscriber = start_deployment(env, tmp, args.db_name, args.concurrency,
                                                  f"{args.topic_prefix}/devices/+/events")
        probes = wait_subscribed(args.topic_prefix, subscriber)
        connections.close_all()
        print(f"  daphne on 127.0.0.1:{deployment.daphne.port}; the subscriber stored a probe after {probes}; "
              f"sending {len(events)} signals at {args.rate}/s for {args.seconds:g} s", flush=True)
        load_before = os.getloadavg()
        errors, sent, cpu, start, drained, console = asyncio.run(
            run_traffic(args, events, base, deployment.daphne.port, fixture, deployment, subscriber, expected))
        load_after = os.getloadavg()
        # Tracebacks in the deployment's logs (a task retried after a deadlock, a 500): counted.
        log_errors = sum(path.read_text(errors="replace").count("Traceback") for path in tmp.glob("*.log"))
        if errors or log_errors:
            print(deployment.log_tails(), file=sys.stderr)
        mqtt_stats = stop_subscriber(subscriber, tmp / "mqtt.log")
        deployment.stop()
        figures = measure(args, events, rule, sent, start, console)
        figures_replay = replay(rule.pk)
        stored = figures["signals_stored"]
        figures.update({
            "signals_sent": len(events), "offered_per_s": round(len(events) / args.seconds, 1),
            "rules_expected": expected, "fired_exact_ratio": round(figures["rules_fired"] / expected, 3),
            "drained_s": round(drained, 1), "errors": len(errors), "log_tracebacks": log_errors,
            "mqtt_received": mqtt_stats.get("received"), "mqtt_not_json": mqtt_stats.get("not_json"),
            "mqtt_batches": mqtt_stats.get("batches"),
            "webhook_answer_p95_ms": round(cpu.pop("webhook_answer_p95_ms") or 0, 1),
            "incremental_eval_per_s": round(figures_replay["events"] / figures_replay["incremental_s"], 1),
            "naive_eval_per_s": round(figures_replay["events"] / figures_replay["naive_s"], 1),
            "incremental_vs_naive_ratio": round(figures_replay["naive_s"] / figures_replay["incremental_s"], 2),
            "replay_incremental_fired": figures_replay["incremental_fired"],
            "replay_naive_fired": figures_replay["naive_fired"],
        })
        server_parts = ("daphne", "default_worker", "mqtt_subscriber", "postgres", "redis", "mosquitto")
        server_cpu = sum(cpu.get(part, 0.0) for part in server_parts)
        per_signal = server_cpu / stored if stored else float("nan")
        figures.update({f"cpu_{part}_ms_per_signal": round(1000 * cpu[part] / max(1, stored), 3)
                        for part in (*server_parts, "publisher", "webhook", "bench_console") if part in cpu})
        figures.update({
            "cpu_server_ms_per_signal": round(1000 * per_signal, 3),
            # What two idle cores could carry at this CPU cost (the deployment's processes, the
            # database, Redis and the broker; not the devices' publisher and webhook sender).
            "two_core_capacity_per_s": round(2 / per_signal, 1) if per_signal else None,
            "machine_busy_ratio": round(cpu.get("machine", 0.0) / drained / (os.cpu_count() or 1), 3),
            "other_processes_cores": round(cpu.get("other", 0.0) / drained, 2),
            "load_1min_before": round(load_before[0], 2), "load_1min_after": round(load_after[0], 2),
            "concurrency": args.concurrency, "product": str(ROOT),
        })
        for error in errors[:5]:
            print("error:", error)
        print(f"{stored}/{len(events)} signals stored; steady window {figures['steady_stored_per_s']}/s stored of "
              f"{figures['steady_offered_per_s']}/s offered; last stored {figures['last_stored_s']} s after the start; "
              f"{figures['rules_fired']} firings (expected {expected}); {figures['cases_seen_on_console']} cases "
              f"on the console, p50/p95 {figures['case_p50_ms']:.0f}/{figures['case_p95_ms']:.0f} ms; server CPU "
              f"{1000 * per_signal:.2f} ms/signal ("
              + ", ".join(f"{k} {1000 * cpu[k] / max(1, stored):.2f}" for k in server_parts if k in cpu)
              + f"); load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
        for line in getattr(args, "profile_lines", []):
            print(f"  {line}")
        print("BENCH signals " + json.dumps(figures, sort_keys=True))
        ok = not errors and stored == len(events) and figures["rules_fired"] == expected \
            and figures["cases_seen_on_console"] == expected
        return 0 if ok else 1
    except (BenchFailure, BenchTimeout, KeyboardInterrupt, SystemExit) as exc:
        if deployment is not None:
            print(deployment.log_tails(), file=sys.stderr)
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        if subscriber is not None and subscriber.poll() is None:
            stop_subscriber(subscriber, tmp / "mqtt.log")
        if deployment is not None:
            deployment.stop()
        if created:
            drop_bench_database(args.database_url)
            flush_redis(args.redis_url)
        tmp_ctx.cleanup()


if __name__ == "__main__":
    sys.exit(main())
