"""The full deployment as two hosts that lose nothing when one of them dies.

Two network namespaces joined by a bridge stand for two machines on a LAN. Each runs what
docs/scaling.md calls a host: the ASGI server (Daphne, as the README deploys it), a default-queue
worker (threads) and a learning worker, all against ONE PostgreSQL and ONE Redis that stay where
the suite has them (127.0.0.1 in the root namespace, reached through the bridge's address by
socat relays; see tests/reliability/netns.py). The test sends signed single-message webhook
deliveries to both hosts in turn, keeps an agent's console websocket open on each host, sends
replies through both hosts' console, and SIGKILLs every process of host A mid-stream; a
supervisor's restart brings them back a few seconds later. Then:

- every message is stored once, classified once and counted once in the rollups;
- every conversation's case is opened once (one case.created event each);
- every reply reaches the provider once (by idempotency key) and is stored delivered;
- each console received every event it may see exactly once, by event id (host A's console
  reconnects from its last id and catches up).

It prints the recovery time: SIGKILL -> host A answers a webhook again, -> host A's console
serves an event again, -> the backlog is drained (`TWO-HOSTS {json}`; pytest -s shows it).
Skipped without root, `ip netns` or socat, or on SQLite; with CI set it fails instead."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum

from learning.models import Classification, Rollup
from listening.connectors.webhook import sign
from listening.models import Conversation, Direction, Message
from responses.models import Case, ConsoleEvent, Reply, Role, Team
from responses.teams import ensure_default_queues
from tests.fakes.http import Reply as FakeReply
from tests.reliability.conftest import ROOT, _test_database_url, wait_for
from tests.reliability.netns import Host, Network, unavailable_reason
from tests.responses.conftest import make_user

MESSAGES, CUSTOMERS, RATE = 120, 30, 4.0  # 30 s of traffic, one message per delivery
# The first WARMUP messages are classified before the stream goes on (the learning workers load
# the model at their first task); host A dies KILL_AFTER deliveries in, restarted DOWN_SECONDS later.
WARMUP, KILL_AFTER, DOWN_SECONDS = 12, 40, 3.0
REPLIES = 8
PORT = 8000
VISIBILITY_SECONDS = 10  # a dead worker's tasks come back to the queue this soon (production: 600)
SECRET = "two-hosts-s3cret"
COMPLAINTS = [
    "My order never arrived and support ignores me. Refund now!",
    "The app crashes every time I open my cart, fix it",
    "I was charged twice this month and nobody answers",
    "Still waiting for the replacement you promised, this is unacceptable",
]


def _needs(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the two-host test must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def network(transactional_db, tmp_path):
    """Two hosts on a bridge, with PostgreSQL and Redis relayed to the bridge's address; torn
    down (processes, relays, namespaces, bridge) whatever happens in the test."""
    if connection.vendor != "postgresql":
        pytest.skip("several hosts writing at once need PostgreSQL; CI runs on it")
    reason = unavailable_reason()
    if reason:
        _needs(reason)
    with Network("two-hosts") as net:
        net.forward(int(connection.settings_dict.get("PORT") or 5432))
        net.forward(6379)
        yield net


@pytest.fixture(autouse=True)
def default_intents(transactional_db):
    """Transactional tests flush the tables, data-migration rows included: put the intents back."""
    from learning.default_intents import install
    from learning.models import Intent, IntentExample, PriorityWeights

    install(Intent, IntentExample, PriorityWeights)


# --- The deployment ----------------------------------------------------------------------------
@dataclass
class Deployment:
    net: Network
    queue: str
    redis_db: str
    log_dir: Path
    hosts: list[Host] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        db = _test_database_url().replace("127.0.0.1", self.net.service_ip).replace("localhost", self.net.service_ip)
        return {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "DJANGO_SETTINGS_MODULE": "cxm.settings_test",
            "DATABASE_URL": db, "TEST_DATABASE_NAME": "unused",
            "REDIS_URL": f"redis://{self.net.service_ip}:6379/{self.redis_db}",
            "CELERY_TASK_ALWAYS_EAGER": "0", "CXM_CLASSIFY_ON_INGEST": "1",
            "CXM_DEFAULT_QUEUE": self.queue, "CXM_LEARNING_QUEUE": f"{self.queue}-learning",
            "CXM_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_SECONDS), "CXM_CLASSIFY_BATCH": "16",
            "CXM_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            "ALLOWED_HOSTS": ",".join(h.ip for h in self.hosts),
        }

    def start(self, host: Host) -> None:
        """The three processes of one host, as the README's Full deployment runs them."""
        env, label = self.env(), host.name.split("-")[1]
        celery = [sys.executable, "-m", "celery", "-A", "cxm", "worker", "-l", "warning", "--without-heartbeat",
                  "--without-mingle", "--without-gossip"]
        self.net.spawn(host, [sys.executable, "-m", "daphne", "-b", "0.0.0.0", "-p", str(PORT),
                              "cxm.asgi:application"], env, self.log_dir / f"{label}-daphne.log", ROOT)
        self.net.spawn(host, [*celery, "-n", f"default@{label}", "-Q", self.queue, "-P", "threads", "-c", "2"],
                       env, self.log_dir / f"{label}-default.log", ROOT)
        self.net.spawn(host, [*celery, "-n", f"learning@{label}", "-Q", f"{self.queue}-learning", "-P", "solo"],
                       env, self.log_dir / f"{label}-learning.log", ROOT)

    def wait_ready(self, hosts: list[Host], timeout: float = 240) -> None:
        import httpx

        from cxm.celery import app

        names = {f"{role}@{h.name.split('-')[1]}" for h in hosts for role in ("default", "learning")}
        healthy: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for host in hosts:
                dead = [p.args for p in host.procs if p.poll() is not None]
                assert not dead, f"{dead} exited at start:\n{self.logs()}"
                try:
                    if httpx.get(f"http://{host.ip}:{PORT}/healthz", timeout=2).status_code == 200:
                        healthy.add(host.ip)
                except httpx.HTTPError:
                    pass
            answered = {name for reply in (app.control.ping(timeout=1.0) or []) for name in reply}
            if names <= answered and len(healthy) == len(hosts):
                return
            time.sleep(0.5)
        raise AssertionError(f"hosts not ready in {timeout:.0f}s:\n{self.logs()}")

    def logs(self, lines: int = 15) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in sorted(self.log_dir.glob("*.log")))


# --- Traffic -----------------------------------------------------------------------------------
class ConsoleClient:
    """An agent's console on one host: hello from the last event id it has, every event id it is
    sent (duplicates kept, to be counted), reconnecting while its host is down."""

    def __init__(self, host: Host, cookie: str):
        self.host, self.cookie = host, cookie
        self.ids: list[int] = []
        self.last_id = 0
        self.frames: list[tuple[float, int]] = []  # (arrival, connection number)
        self.connects = 0
        self.connected_at: list[float] = []
        self.failure = ""

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        origin = f"http://{self.host.ip}:{PORT}"
        while True:
            try:
                async with connect(f"ws://{self.host.ip}:{PORT}/ws/console/", origin=origin,
                                   additional_headers={"Cookie": self.cookie}, open_timeout=10) as ws:
                    self.connects += 1
                    self.connected_at.append(time.time())
                    await ws.send(json.dumps({"type": "hello", "last_event_id": self.last_id}))
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "events":
                            self.frames.append((time.time(), self.connects))
                            for event in message["events"]:
                                self.ids.append(event["id"])
                                self.last_id = max(self.last_id, event["id"])
                        elif message.get("type") in ("bye", "reset", "error"):
                            self.failure = f"console on {self.host.name}: {message}"
                            return
            except InvalidStatus as exc:
                self.failure = f"console on {self.host.name} refused: {exc}"
                return
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)


@dataclass
class Delivery:
    host: Host
    status: int = 0
    attempts: int = 0
    answered: float = 0.0


async def post_until_accepted(client, host: Host, path: str, body: bytes, headers: dict[str, str],
                              delivery: Delivery, deadline: float) -> None:
    """POST until a 2xx or a 4xx: a refused connection or a 5xx is retried, against the same host,
    as a provider retries a webhook (and an agent's browser a reply, with the same key)."""
    import httpx

    delay = 0.2
    while time.time() < deadline:
        delivery.attempts += 1
        try:
            response = await client.post(f"http://{host.ip}:{PORT}{path}", content=body,
                                         headers={**headers, **(sign(SECRET, int(time.time()), body)
                                                                if path.startswith("/hooks/") else {})})
            if response.status_code < 500:
                delivery.status, delivery.answered = response.status_code, time.time()
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def _classified(count: int) -> bool:
    try:
        return Classification.objects.filter(is_current=True).count() >= count
    finally:
        connection.close()


def _open_cases(team_id: int, limit: int, skip: set[int]) -> list[int]:
    try:
        return list(Case.objects.filter(team_id=team_id).exclude(pk__in=skip).order_by("pk")
                    .values_list("pk", flat=True)[:limit])
    finally:
        connection.close()  # this runs in a thread of its own: its connection must not outlive it


@dataclass
class Run:
    deliveries: list[Delivery] = field(default_factory=list)
    replies: list[Delivery] = field(default_factory=list)
    reply_keys: list[str] = field(default_factory=list)
    killed_at: float = 0.0
    restarted_at: float = 0.0


async def drive(deployment: Deployment, consoles: list[ConsoleClient], slug: str, team_id: int,
                cookie: str) -> Run:
    import httpx

    a, b = deployment.hosts
    run = Run()
    csrf = secrets.token_hex(16)  # 32 characters: Django compares the cookie with the header
    tasks: list[asyncio.Task] = []
    replied: set[int] = set()
    choosing = asyncio.Lock()
    async with httpx.AsyncClient(timeout=20) as client:

        async def reply(n: int, host: Host) -> None:
            # A case exists once a message is classified and routed: the first ones wait for the
            # learning workers to load the model. One reply per case, chosen under a lock.
            async with choosing:
                cases: list[int] = []
                for _ in range(240):
                    cases = await asyncio.to_thread(_open_cases, team_id, 1, replied)
                    if cases:
                        break
                    await asyncio.sleep(0.5)
                if not cases:
                    return
                replied.add(cases[0])
            key = f"two-hosts-{n}"
            run.reply_keys.append(key)
            delivery = Delivery(host)
            run.replies.append(delivery)
            body = json.dumps({"text": f"We are on it (reply {n})", "idempotency_key": key}).encode()
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       "Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf,
                       "Origin": f"http://{host.ip}:{PORT}"}
            await post_until_accepted(client, host, f"/console/cases/{cases[0]}/reply/", body, headers, delivery,
                                      time.time() + 180)

        t0 = time.time()
        for i in range(MESSAGES):
            if i == WARMUP:
                warm = await asyncio.to_thread(wait_for, lambda: _classified(WARMUP), 300, 0.5)
                assert warm, f"the warm-up messages were not classified in 300 s:\n{deployment.logs()}"
                t0 = time.time() - i / RATE
            await asyncio.sleep(max(0.0, t0 + i / RATE - time.time()))
            if i == KILL_AFTER:
                deployment.net.kill(a)  # SIGKILL: daphne and both workers, tasks in hand
                run.killed_at = time.time()
            if run.killed_at and not run.restarted_at and time.time() - run.killed_at >= DOWN_SECONDS:
                deployment.start(a)  # what a supervisor (systemd, Kubernetes) does
                run.restarted_at = time.time()
            if i % (MESSAGES // REPLIES) == MESSAGES // REPLIES // 2:
                tasks.append(asyncio.ensure_future(reply(i, (a, b)[(i // (MESSAGES // REPLIES)) % 2])))
            host = (a, b)[i % 2]
            delivery = Delivery(host)
            run.deliveries.append(delivery)
            payload = {"id": f"th-{i}", "text": f"{COMPLAINTS[i % len(COMPLAINTS)]} (#{i})",
                       "thread_id": f"t{i % CUSTOMERS}",
                       "author": {"id": f"cust{i % CUSTOMERS}", "name": f"Customer {i % CUSTOMERS}"}}
            tasks.append(asyncio.ensure_future(post_until_accepted(
                client, host, f"/hooks/{slug}/", json.dumps(payload).encode(),
                {"Content-Type": "application/json"}, delivery, time.time() + 240)))
            if any(c.failure for c in consoles):
                break
        await asyncio.gather(*tasks)
    return run


def _drained(queue: str, broker, team_id: int, agent_id: int, consoles: list[ConsoleClient]) -> bool:
    current = Classification.objects.filter(is_current=True, status="ok").count()
    replies_done = not Reply.objects.exclude(status=Reply.Status.DELIVERED).exists()
    if not (current == MESSAGES and Case.objects.count() == CUSTOMERS and replies_done
            and broker.hlen("unacked") == 0 and broker.llen(queue) == 0 and broker.llen(f"{queue}-learning") == 0):
        return False
    expected = set(ConsoleEvent.objects.filter(Q(team_id=team_id) | Q(user_id=agent_id)).values_list("id", flat=True))
    return all(expected <= set(c.ids) for c in consoles)


def _id_gaps() -> int:
    ids = ConsoleEvent.objects.aggregate(low=Min("id"), high=Max("id"), n=Count("id"))
    return (ids["high"] - ids["low"] + 1 - ids["n"]) if ids["n"] else 0


# --- The test ----------------------------------------------------------------------------------
def test_two_hosts_lose_and_double_nothing_when_one_is_killed(network, celery_queue, fake_provider, make_connector,
                                                              django_user_model, tmp_path):
    import redis

    queue, redis_url = celery_queue
    broker = redis.Redis.from_url(redis_url)
    broker.delete("unacked", "unacked_index")
    redis_db = redis_url.rsplit("/", 1)[1] if redis_url.rsplit("/", 1)[1].isdigit() else "0"
    network.forward(fake_provider._server.server_address[1])

    @fake_provider.route("POST", "/replies")
    def receive(request):
        return FakeReply(200, {"id": f"out-{request.json()['id']}"})

    team = Team.objects.create(name="Care A", slug="care-a")
    ensure_default_queues(team)
    port = fake_provider._server.server_address[1]
    connector = make_connector("webhook", slug="two-hosts", credentials={"signing_secret": SECRET},
                               config={"callback_url": f"http://{network.service_ip}:{port}/replies"})
    team.connectors.add(connector)
    agent = make_user(django_user_model, "maria_santos", Role.AGENT, [team], capacity=1000)
    from tests.responses.ws import session_cookie

    cookie = session_cookie(agent)
    connection.close()  # the hosts and the test's threads open their own

    deployment = Deployment(network, queue, redis_db, tmp_path)
    deployment.hosts = [network.add_host("a"), network.add_host("b")]
    for host in deployment.hosts:
        deployment.start(host)
    deployment.wait_ready(deployment.hosts)
    a = deployment.hosts[0]

    consoles = [ConsoleClient(host, cookie) for host in deployment.hosts]

    def drain_check() -> bool:
        try:
            return _drained(queue, broker, team.pk, agent.pk, consoles)
        finally:
            connection.close()  # a thread of asyncio's: its connection must not outlive it

    async def scenario() -> tuple[Run, float]:
        watchers = [asyncio.ensure_future(c.run()) for c in consoles]
        try:
            await asyncio.sleep(1.0)
            run = await drive(deployment, consoles, connector.slug, team.pk, cookie)
            drained = await asyncio.to_thread(wait_for, drain_check, 240, 0.5)
            drained_at = time.time() if drained else 0.0
            await asyncio.sleep(2.0)  # anything sent twice would arrive by now
        finally:
            for watcher in watchers:
                watcher.cancel()
        return run, drained_at

    run, drained_at = asyncio.run(scenario())
    assert all(not c.failure for c in consoles), [c.failure for c in consoles]
    assert drained_at, f"not drained in 240 s:\n{deployment.logs()}"

    # Recovery, from the SIGKILL.
    back = [d.answered for d in run.deliveries if d.host is a and d.answered > run.restarted_at]
    console_a = consoles[0]
    first_event = [t for t, n in console_a.frames if t > run.restarted_at]
    figures = {
        "messages": MESSAGES, "rate": RATE, "down_s": DOWN_SECONDS,
        "web_back_s": round(min(back) - run.killed_at, 1) if back else None,
        "console_back_s": round(min(first_event) - run.killed_at, 1) if first_event else None,
        "drained_s": round(drained_at - run.killed_at, 1),
        "retried_deliveries": sum(1 for d in run.deliveries if d.attempts > 1),
        "console_reconnects": [c.connects - 1 for c in consoles],
        "console_reconnected_s": [round(t - run.killed_at, 1) for t in console_a.connected_at[1:]],
        # Ids taken by transactions that never committed (the killed host's, rolled-back ones): a
        # console catching up waits GAP_WAIT_SECONDS at each before it moves past it.
        "event_id_gaps": _id_gaps(),
    }
    print(f"\nTWO-HOSTS {json.dumps(figures)}")

    # Every delivery accepted; every message stored once, classified once, counted once.
    assert [d.status for d in run.deliveries] == [200] * MESSAGES
    inbound = Message.objects.filter(direction=Direction.INBOUND)
    assert inbound.count() == MESSAGES and inbound.values("external_id").distinct().count() == MESSAGES
    assert Classification.objects.filter(is_current=True).count() == MESSAGES
    assert Classification.objects.values("message").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    hourly = Rollup.objects.filter(grain="h", dim="sentiment", term_id=0).aggregate(n=Sum("count"))["n"]
    assert hourly == MESSAGES

    # Every case opened once.
    assert Conversation.objects.count() == CUSTOMERS and Case.objects.count() == CUSTOMERS
    assert ConsoleEvent.objects.filter(type="case.created").count() == CUSTOMERS
    # ...and each message shown once: one message.created event per inbound message.
    shown = Counter(p["message"]["id"] for p in ConsoleEvent.objects.filter(type="message.created")
                    .values_list("payload", flat=True) if p["message"]["direction"] == Direction.INBOUND)
    assert sorted(shown) == sorted(inbound.values_list("pk", flat=True)) and set(shown.values()) == {1}, shown

    # Every reply sent once: one provider call per idempotency key, stored delivered.
    assert len(run.reply_keys) >= REPLIES - 1 and all(r.status == 200 for r in run.replies)
    sent = Counter(call.headers.get("idempotency-key") for call in fake_provider.calls("/replies"))
    assert sent == Counter({key: 1 for key in run.reply_keys}), sent
    assert Reply.objects.filter(status=Reply.Status.DELIVERED).count() == len(run.reply_keys)

    # Each console received every event it may see, once.
    expected = sorted(ConsoleEvent.objects.filter(Q(team_id=team.pk) | Q(user_id=agent.pk))
                      .values_list("id", flat=True))
    for console in consoles:
        twice = [i for i, n in Counter(console.ids).items() if n > 1]
        assert not twice, f"{console.host.name} received events {twice[:10]} more than once"
        assert sorted(console.ids) == expected, (console.host.name, set(expected) - set(console.ids))
    assert console_a.connects >= 2, "host A's console never reconnected: the kill proved nothing"
    assert run.killed_at and figures["web_back_s"] is not None and figures["console_back_s"] is not None
