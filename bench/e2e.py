#!/usr/bin/env python
"""End-to-end latency benchmark: webhook POST -> classification -> routing -> console websocket.

    python bench/e2e.py [--rate 50] [--seconds 30] [--baseline-rate 5] [--drain 30]
    python bench/e2e.py --torch-threads 1 --default-pool threads   # deployment variants, same bench
    python bench/e2e.py --batch 10                                  # a source that batches deliveries
    python bench/e2e.py --profile learning                          # py-spy on one process

What it does, in one run (see README.md, "End to end (Love)"):
  1. creates a dedicated PostgreSQL database (default cxm_bench_e2e, dropped and created), migrates
     it, creates a team with its default queues, an available agent with a large capacity in that
     team, and a generic webhook connector owned by the team; logs the agent in (a Django session,
     its `sessionid` cookie); flushes a Redis database of its own (default redis://127.0.0.1:6379/12);
  2. starts the full deployment as subprocesses, with DEBUG=0, generated secrets and
     CELERY_TASK_ALWAYS_EAGER=0: Daphne (cxm.asgi:application, bench.ingest.Servers), a Celery
     worker for classification (`-Q learning -c 1 -P solo`) and one for routing and replies
     (`-Q default -c 2`, prefork); waits for /healthz and for both workers to answer a ping;
  3. connects one console websocket (the `websockets` client, Origin and session cookie like a
     browser), says hello, and records the arrival time of every `message.created` event; each
     message carries a unique marker at the end of its text (`[e2e:<external id>]`), which the
     event's text is matched on;
  4. warms the pipeline (the first message loads the model in the learning worker), then runs
     three measured phases, one after the other, against the same deployment:
       - floor: events written straight into the ConsoleEvent table from this process with
         `responses.events.emit` (insert, commit, doorbell on the Redis channel layer, the consumer's
         query, the push): the least any message can take from "routed" to "on screen";
       - baseline: the whole pipeline at a low rate (--baseline-rate, default 5 msgs/s), where no
         stage has a queue: what one message costs end to end when the machine is idle;
       - target: the whole pipeline at --rate (default 50 msgs/s) for --seconds (default 30).
     Deliveries are open-loop: message i is sent at t0 + i/rate whatever the server is doing
     (one signed single-message webhook each, as a chat widget or a CRM would send them; a 5xx or
     broken connection is retried like providers do, counted). Latency = arrival at the websocket
     client - scheduled send time (the POST starts at its scheduled time unless this client falls
     behind, and the send lag is reported, so a lagging client cannot hide a slow server). The
     load generator is lean so that it takes little of the cores it measures: each phase's
     requests are built and signed before the phase, then written as bytes on kept-alive
     connections (asyncio streams, bench.ingest.LeanHTTP) from a thread with its own event loop;
     its CPU per message (getrusage of that thread) is printed, so runs compare (--client httpx:
     the earlier generator, httpx.AsyncClient, the same way);
  5. after each phase waits up to --drain seconds (default 30) for the stragglers, then counts:
     lost (answered 2xx "stored", never arrived), duplicates (arrived twice), and noise (the
     lane rules put it in the noise lane, spam or "neutral, nothing asked": routing opens no case
     for it by design, so no event; checked in the database, not counted as lost). For each
     message that did not arrive the database says where it stopped (not classified: still
     queued / classified, no event / event written, not pushed / event skipped by the console),
     and whether that stage was less than 10 s before the drain ended (in flight);
  6. reads the stage timestamps from the database (Message.received_at, Classification.created_at,
     ConsoleEvent.created_at) and splits each message's latency into: POST -> stored, learning
     queue wait, classification, routing, push. The learning worker is solo and takes tasks in
     order, so its queue is split the way a FIFO queue is: a message's classification starts when
     it was stored or when the previous one finished, whichever is later (estimated, see
     `stage_breakdown`); also the CPU each process used (from /proc: share of a core during the
     target phase's POSTs, and CPU ms per processed message over each phase less the idle rate
     measured just before the baseline), and the PostgreSQL connections opened per phase
     (pg_stat_database.sessions);
  7. prints a table and, as the very last line, `BENCH e2e {json}` with every figure and
     `goal_met`: p95 <= 1000 ms at >= 50 msgs/s sustained (achieved rate within 1% of the
     schedule) with no message lost and no delivery failed.

The baseline is the same pipeline, same processes, same run, at a rate where nothing queues; the
ratio target p95 / baseline p95 says what load adds, and baseline p50 / floor p50 what
classification and routing add to the push. Absolute times on a shared 2-core machine are noisy:
compare the ratios and medians of one run (load averages are printed).

Knobs that change the deployment, not the product: --torch-threads (OMP_NUM_THREADS of the
learning worker), --default-pool (Celery pool of the default worker), --default-concurrency,
--classify-batch; --batch sends the target phase in deliveries of N messages (not the goal's
workload, which is one message per delivery: goal_met is false with it).

Subprocesses are killed (their process groups) and the database dropped and the Redis database
flushed on every exit, Ctrl-C included; if one dies, the tail of its output is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import SAMPLE, load_texts, pct, print_table  # noqa: E402
from bench.ingest import (  # noqa: E402
    RETRIES,
    SECRET,
    BenchFailure,
    BenchTimeout,
    LeanHTTP,
    Profiler,
    Servers,
    _machine_busy,
    _proc_cpu,
    bench_env,
    create_database,
    drop_bench_database,
    install_time_limit,
    make_messages,
    make_webhook_connector,
    signed_request,
)

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_bench_e2e"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
GOAL_P95_MS = 1000.0
GOAL_RATE = 50.0
IDLE_SECONDS = 4.0
# Poll interval (3 s) + the consumer's wait for an id not yet visible (5 s) + slack: a stage done
# more recently than this before a drain ended may still be on its way.
IN_FLIGHT_SECONDS = 10.0
MARKER_RE = re.compile(r"\[e2e:([\w-]+)\]\s*$")
PASSWORD = secrets.token_urlsafe(16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="target phase, msgs/s (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="target phase length (default 30)")
    parser.add_argument("--baseline-rate", type=float, default=5.0, help="unloaded baseline, msgs/s (default 5)")
    parser.add_argument("--baseline-seconds", type=float, default=12.0, help="baseline length (default 12)")
    parser.add_argument("--floor-events", type=int, default=50,
                        help="events emitted straight to the console for the doorbell floor, 5/s (default 50)")
    parser.add_argument("--warmup", type=int, default=40, help="warm-up messages, 5/s, not measured (default 40)")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds to wait after a phase's last POST for its events (default 30)")
    parser.add_argument("--batch", type=int, default=1,
                        help="messages per webhook delivery in the target phase (default 1; more shows what "
                             "micro-batching buys: one ingest, one classification task, one routing task each)")
    parser.add_argument("--default-concurrency", type=int, default=4,
                        help="concurrency of the default-queue worker (routing, replies; default 4)")
    parser.add_argument("--default-pool", choices=("prefork", "threads", "solo"), default="threads",
                        help="Celery pool of the default-queue worker (default threads, as the README deploys it: "
                             "prefork reopens PostgreSQL connections around every task)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CXM_TORCH_THREADS of the learning worker (default 1, as the README advises on small "
                             "machines; 0: torch's own, one per core)")
    parser.add_argument("--classify-batch", type=int, default=None, help="CXM_CLASSIFY_BATCH (default: product's)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"CSV of customer messages (default CXM_TRAINING_DATA/{SAMPLE})")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_E2E_DATABASE_URL", DEFAULT_DB_URL),
                        help="PostgreSQL database to create and drop; its name must contain 'bench' "
                             f"(default {DEFAULT_DB_URL}, or BENCH_E2E_DATABASE_URL)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_E2E_REDIS_URL", DEFAULT_REDIS_URL),
                        help=f"Redis database of the run, FLUSHED before and after (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--profile", choices=("learning", "default", "daphne"), default=None,
                        help="sample that process with py-spy during the target phase (py-spy on PATH, or in "
                             "PYTHONPATH_ENTRY/bin/ after `pip install --target PYTHONPATH_ENTRY py-spy`)")
    parser.add_argument("--client", choices=("lean", "httpx"), default="lean",
                        help="load generator: lean (requests built and signed before each phase, written on "
                             "kept-alive asyncio streams; default) or httpx (the earlier generator), both in a "
                             "thread of their own whose CPU is reported per message")
    parser.add_argument("--timeout", type=int, default=900, help="hard limit for the whole run, seconds")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.rate <= 0 or args.baseline_rate <= 0 or args.seconds <= 0 or args.baseline_seconds <= 0:
        parser.error("rates and durations must be positive")
    if urlsplit(args.redis_url).path.strip("/") in ("", "0"):
        parser.error("--redis-url must name a Redis database of its own (not 0): it is flushed")
    return args


def e2e_env(args: argparse.Namespace) -> dict[str, str]:
    """The deployment's environment: bench.ingest's (DEBUG=0, generated SECRET_KEY and Fernet key,
    the bench database), with Redis, real workers and classification on ingest."""
    env = bench_env(args.database_url, "shipped")
    env.pop("BENCH_DB_CONN", None)
    env.update({
        "REDIS_URL": args.redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CXM_CLASSIFY_ON_INGEST": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    if args.classify_batch:
        env["CXM_CLASSIFY_BATCH"] = str(args.classify_batch)
    return env


# --- Processes ----------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            for child in map(int, children):
                out += [child, *_descendants(child)]
    except OSError:
        pass
    return out


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    pids.append(int(entry))
    return pids


def _postgres_pids(db_name: str) -> list[int]:
    """PostgreSQL's server processes that work for the bench: the backends connected to its
    database and the shared background ones (WAL writer, checkpointer...), not the backends of
    other databases (other people's test runs on a shared machine)."""
    pids = []
    for pid in _pids_named("postgres"):
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            client = "(" in title or "[local]" in title or "autovacuum worker" in title
            if f" {db_name} " in f"{title} " or not client:
                pids.append(pid)
    return pids


@dataclass
class Worker:
    """One `celery worker` in its own process group, its output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "cxm", "worker", "-n", f"{self.name}@%h", "-l", "warning",
               "--without-heartbeat", "--without-mingle", "--without-gossip", *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env={**self.env, "DJANGO_SETTINGS_MODULE": "cxm.settings"},
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def command(self) -> str:
        return f"celery -A cxm worker {' '.join(self.args)}"

    def died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def pids(self) -> list[int]:
        return [self.proc.pid, *_descendants(self.proc.pid)] if self.proc else []

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} worker ({self.command})\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Prefork children left behind by a hard kill share the group: make sure they are gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Deployment:
    env: dict[str, str]
    log_dir: Path
    default_concurrency: int
    torch_threads: int | None
    db_name: str
    default_pool: str = "prefork"
    daphne: Servers | None = None
    workers: list[Worker] = field(default_factory=list)

    def start(self) -> None:
        learning_env = dict(self.env)
        if self.torch_threads:
            threads = str(self.torch_threads)
            learning_env.update({"CXM_TORCH_THREADS": threads, "OMP_NUM_THREADS": threads,
                                 "MKL_NUM_THREADS": threads})
        self.workers = [
            Worker("learning", ["-Q", "learning", "-c", "1", "-P", "solo"], learning_env,
                   self.log_dir / "learning.log"),
            Worker("default", ["-Q", "default", "-c", str(self.default_concurrency), "-P", self.default_pool], self.env,
                   self.log_dir / "default.log"),
        ]
        for worker in self.workers:
            worker.start()
        self.daphne = Servers("cxm.settings", 1, self.env, self.log_dir)
        self.daphne.start()
        self._wait_workers(90)

    def _wait_workers(self, deadline_s: float) -> None:
        from cxm.celery import app

        deadline = time.monotonic() + deadline_s
        names = {w.name for w in self.workers}
        while time.monotonic() < deadline:
            self.check()
            replies = app.control.ping(timeout=1.0) or []
            answered = {name.split("@", 1)[0] for reply in replies for name in reply}
            if names <= answered:
                return
        raise BenchFailure(f"workers {sorted(names)} did not answer a ping within {deadline_s:.0f}s")

    def check(self) -> None:
        """Raise if a process of the deployment has died."""
        for worker in self.workers:
            if worker.died():
                raise BenchFailure(f"the {worker.name} worker exited with {worker.proc.returncode}")
        if self.daphne:
            for proc in self.daphne.procs:
                if proc.poll() is not None:
                    raise BenchFailure(f"daphne exited with {proc.returncode}")

    def log_tails(self) -> str:
        parts = [w.log_tail() for w in self.workers]
        if self.daphne:
            parts.append(self.daphne.log_tail(40))
        return "\n".join(parts)

    def roles(self) -> dict[str, list[int]]:
        """Process ids by role, for CPU accounting."""
        return {
            "daphne": self.daphne.pids if self.daphne else [],
            "learning worker": self.workers[0].pids(),
            "default worker": self.workers[1].pids(),
            "postgres": _postgres_pids(self.db_name),
            "redis": _pids_named("redis-server"),
            "bench client": [os.getpid()],
        }

    def stop(self) -> None:
        if self.daphne:
            self.daphne.stop()
        for worker in self.workers:
            worker.stop()


def pg_sessions(db_name: str) -> int:
    """Sessions PostgreSQL has counted for the database so far (pg_stat_database.sessions)."""
    from django.db import connections

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [db_name])
        row = cursor.fetchone()
    connections.close_all()
    return int(row[0]) if row else 0


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_connect_timeout=5).flushdb()


# --- Fixture ------------------------------------------------------------------------------------
@dataclass
class Fixture:
    team_id: int
    connector_id: int
    slug: str
    cookie: str


def setup_fixture() -> Fixture:
    """A team with its default queues, an available agent in it with room for every case, the
    webhook connector the team owns, and the agent's session cookie."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from responses.models import AgentProfile, Presence, Role, Team
    from responses.teams import ensure_default_queues

    team = Team.objects.create(name="Bench care", slug="bench-care")
    ensure_default_queues(team)
    user = get_user_model().objects.create_user("bench-agent", "agent@example.com", PASSWORD,
                                                first_name="Bench", last_name="Agent")
    AgentProfile.objects.create(user=user, role=Role.AGENT, presence=Presence.AVAILABLE, capacity=32000)
    team.members.add(user)
    connector = make_webhook_connector("bench-e2e")
    team.connectors.add(connector)
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return Fixture(team.pk, connector.pk, connector.slug, f"sessionid={client.cookies['sessionid'].value}")


# --- The console client -------------------------------------------------------------------------
class Console:
    """One agent console on the websocket: hello, then every event; reconnects from its last id
    (the product's catch-up) if the connection drops, and counts that."""

    def __init__(self, url: str, origin: str, cookie: str):
        self.url, self.origin, self.cookie = url, origin, cookie
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.event_at: dict[str, str] = {}
        self.last_id = 0
        self.connects = 0
        self.frames = 0
        self.events = 0
        self.welcomed = asyncio.Event()
        self.failure: str = ""

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        while True:
            try:
                async with connect(self.url, origin=self.origin, additional_headers={"Cookie": self.cookie},
                                   max_size=64 * 2**20, open_timeout=20) as ws:
                    self.connects += 1
                    await ws.send(json.dumps({"type": "hello", "last_event_id": self.last_id}))
                    async for raw in ws:
                        now = time.time()
                        self._handle(json.loads(raw), now)
                if ws.close_code in (4401, 4403):
                    self.failure = f"the console was closed with {ws.close_code} ({ws.close_reason})"
                    return
            except InvalidStatus as exc:
                self.failure = f"websocket refused: {exc}"
                return
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)

    def _handle(self, message: dict, now: float) -> None:
        kind = message.get("type")
        if kind == "welcome":
            self.welcomed.set()
        elif kind == "events":
            self.frames += 1
            for event in message["events"]:
                self.events += 1
                self.last_id = max(self.last_id, event["id"])
                if event["type"] != "message.created":
                    continue
                match = MARKER_RE.search((event.get("message") or {}).get("text", ""))
                if match:
                    self.arrivals[match.group(1)].append(now)
                    self.event_at.setdefault(match.group(1), event.get("at", ""))
        elif kind == "bye":
            self.failure = f"the server said bye: {message.get('reason')}"

    def missing(self, markers) -> list[str]:
        return [m for m in markers if m not in self.arrivals]


# --- Phases -------------------------------------------------------------------------------------
@dataclass
class Sent:
    marker: str
    scheduled: float
    started: float = 0.0
    answered: float = 0.0
    status: int = 0
    stored: int = 0
    attempts: int = 0
    error: str = ""


@dataclass
class Phase:
    name: str
    rate: float
    sent: list[Sent]
    arrivals: dict[str, list[float]]
    drained_s: float
    noise: set[str] = field(default_factory=set)
    where_lost: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_whole: dict[str, float] = field(default_factory=dict)  # CPU seconds, drain included
    whole_s: float = 0.0
    idle: dict[str, float] = field(default_factory=dict)  # shares of one core with no traffic
    ended: float = 0.0
    pg_sessions: int = 0  # PostgreSQL connections opened to the bench database during the phase
    console_last_id: int = 0
    generator_cpu_s: float = 0.0  # the load generator's thread (getrusage), sending only
    generator_connections: int = 0
    skipped_ids: list[int] = field(default_factory=list)
    lanes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> list[Sent]:
        return [s for s in self.sent if s.stored == 1]

    @property
    def failed(self) -> list[Sent]:
        return [s for s in self.sent if s.stored != 1]

    @property
    def latencies_ms(self) -> list[float]:
        return [(self.arrivals[s.marker][0] - s.scheduled) * 1000 for s in self.ok if s.marker in self.arrivals]

    @property
    def lost(self) -> list[str]:
        return [s.marker for s in self.ok if s.marker not in self.arrivals and s.marker not in self.noise]

    @property
    def duplicates(self) -> int:
        return sum(len(self.arrivals[s.marker]) - 1 for s in self.sent if len(self.arrivals.get(s.marker, ())) > 1)

    @property
    def processed(self) -> int:
        """Messages the pipeline finished with (arrived, or classified as noise) during the phase."""
        return len(self.ok) - sum(1 for where in self.where_lost.values() if where == "not classified")

    def cpu_ms_per_msg(self) -> dict[str, float]:
        """CPU each role spent per processed message over the whole phase, drain included, less
        what it spends with no traffic (idle, measured before the phase): the marginal cost."""
        n = max(1, self.processed)
        return {role: max(0.0, used - self.idle.get(role, 0.0) * self.whole_s) * 1000 / n
                for role, used in self.cpu_whole.items()}

    @property
    def achieved_rate(self) -> float:
        """Messages per second from the first one's due time to the last delivery's start: the
        schedule's rate unless this client fell behind."""
        started = [s for s in self.sent if s.started]
        if len(started) < 2:
            return 0.0
        return (len(started) - 1) / (max(s.started for s in started) - min(s.scheduled for s in started))

    def figures(self) -> dict[str, Any]:
        lat = self.latencies_ms
        lag = [(s.started - s.scheduled) * 1000 for s in self.sent if s.started]
        post = [(s.answered - s.started) * 1000 for s in self.sent if s.answered]
        return {
            "rate_target": self.rate, "rate_achieved": round(self.achieved_rate, 2), "sent": len(self.sent),
            "stored": len(self.ok), "failed_posts": len(self.failed), "received": len(lat),
            "lost": len(self.lost), "duplicates": self.duplicates, "noise_no_case": len(self.noise),
            "retries": sum(max(0, s.attempts - 1) for s in self.sent),
            "p50_ms": round(pct(lat, 0.5), 1), "p95_ms": round(pct(lat, 0.95), 1),
            "p99_ms": round(pct(lat, 0.99), 1), "max_ms": round(max(lat), 1) if lat else 0.0,
            "mean_ms": round(statistics.fmean(lat), 1) if lat else 0.0,
            "send_lag_p99_ms": round(pct(lag, 0.99), 1), "post_p50_ms": round(pct(post, 0.5), 1),
            "post_p95_ms": round(pct(post, 0.95), 1), "drained_s": round(self.drained_s, 1),
            "lost_where": dict(Counter(self.where_lost.values())), "lanes": self.lanes,
            "skipped_event_ids": self.skipped_ids[:20], "pg_sessions_opened": self.pg_sessions,
            "generator_cpu_ms_per_msg": round(self.generator_cpu_s * 1000 / max(1, len(self.sent)), 3),
            "generator_connections": self.generator_connections,
        }


async def _post(send, items: list[Sent], request: Any) -> None:
    """One signed delivery of `items`' messages (`request`, prepared before the phase); a 5xx or a
    broken connection is retried with a short backoff, as providers do."""
    def note(**fields) -> None:
        for item in items:
            for key, value in fields.items():
                setattr(item, key, value)

    started = 0.0
    for attempt in range(RETRIES + 1):
        if attempt:
            await asyncio.sleep(0.05 * 2**attempt)
        t0 = time.time()
        started = started or t0
        note(attempts=attempt + 1, started=started)
        try:
            status, content = await send(request)
        except Exception as exc:  # noqa: BLE001 -- a broken delivery of either client, retried
            note(error=f"{type(exc).__name__}: {exc}")
            continue
        note(answered=time.time(), status=status)
        if status >= 500:
            note(error=f"HTTP {status}")
            continue
        if status == 200:
            stored = json.loads(content).get("stored", 0)
            note(stored=int(stored == len(items)), error="" if stored == len(items) else f"stored {stored}")
        else:
            note(error=f"HTTP {status}: {content[:200]!r}")
        return


@dataclass
class Generator:
    """The load generator: every request is built and signed before the phase (signed with its
    due time, inside the connector's 300 s window), then sent on schedule from a thread of its
    own with its own event loop, so its CPU is measured apart from the console client
    (getrusage(RUSAGE_THREAD)). `lean` writes the prepared bytes on kept-alive asyncio streams
    (bench.ingest.LeanHTTP); `httpx` is the earlier generator (httpx.AsyncClient), for comparison."""

    host: str
    port: int
    path: str
    kind: str = "lean"
    cpu_s: float = 0.0
    connections: int = 0

    def prepare(self, body: bytes, due: float) -> Any:
        if self.kind == "lean":
            return signed_request(f"{self.host}:{self.port}", self.path, body, int(due))
        from listening.connectors.webhook import sign

        return body, {"Content-Type": "application/json", **sign(SECRET, int(due), body)}

    def run(self, schedule: list[tuple[float, list[Sent], Any]], deployment: Deployment) -> None:
        """Blocks until every delivery is answered; call from a thread of its own."""
        before = resource.getrusage(resource.RUSAGE_THREAD)
        try:
            asyncio.run(self._send_all(schedule, deployment))
        finally:
            after = resource.getrusage(resource.RUSAGE_THREAD)
            self.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    async def _send_all(self, schedule: list[tuple[float, list[Sent], Any]], deployment: Deployment) -> None:
        import httpx

        lean = LeanHTTP(self.host, self.port, 256)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        url = f"http://{self.host}:{self.port}{self.path}"
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as client:

            async def send(request: Any) -> tuple[int, bytes]:
                if self.kind == "lean":
                    return await asyncio.wait_for(lean.request(request), 30.0)
                body, headers = request
                response = await client.post(url, content=body, headers=headers)
                return response.status_code, response.content

            tasks = []
            for n, (due, chunk, request) in enumerate(schedule):
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(_post(send, chunk, request)))
                if n % 25 == 0:
                    deployment.check()
            try:
                await asyncio.gather(*tasks)
            finally:
                await lean.close()
        self.connections = lean.opened


def _noise(markers: list[str]) -> set[str]:
    """Markers whose message the classifier put in the noise lane (spam): routing opens no case
    for it, so no event may come. Checked again after the drain (`diagnose`)."""
    from django.db import connections

    from learning.models import Classification

    try:
        return set(Classification.objects.filter(message__external_id__in=markers, is_current=True, lane="noise")
                   .values_list("message__external_id", flat=True))
    finally:
        connections.close_all()


def _arrived(console: Console, items: list[Sent]) -> dict[str, list[float]]:
    return {s.marker: list(console.arrivals[s.marker]) for s in items if s.marker in console.arrivals}


async def _wait_arrivals(console: Console, markers: list[str], deadline: float, deployment: Deployment,
                         check_noise: bool = True) -> None:
    loop = asyncio.get_running_loop()
    noise: set[str] = set()
    next_check = time.time() + 1.0
    while time.time() < deadline:
        missing = [m for m in console.missing(markers) if m not in noise]
        if not missing:
            break
        if console.failure:
            raise BenchFailure(console.failure)
        deployment.check()
        if check_noise and time.time() >= next_check:
            noise |= await loop.run_in_executor(None, _noise, missing)
            next_check = time.time() + 1.0
        await asyncio.sleep(0.05)
    if noise:
        await asyncio.sleep(2.0)  # a noise message that joins an open case still gets its event


@dataclass
class CpuSnapshot:
    """CPU seconds of every process on the machine, and of the whole machine."""

    per_pid: dict[int, float]
    machine: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        return cls({int(e): _proc_cpu(int(e)) for e in os.listdir("/proc") if e.isdigit()}, _machine_busy())


def _cpu_shares(before: CpuSnapshot, after: CpuSnapshot, seconds: float,
                roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds per second (share of one core) of each role between two snapshots. A process
    missing from `before` started in between and counts from zero (`before` lists every process);
    one that exited in between is not counted. "other" is the rest of the machine: other people's
    processes on a shared machine."""
    shares = {role: sum(after.per_pid.get(p, 0.0) - before.per_pid.get(p, 0.0) for p in pids) / seconds
              for role, pids in roles.items()}
    shares["machine"] = (after.machine - before.machine) / seconds
    shares["other"] = max(0.0, shares["machine"] - sum(v for k, v in shares.items() if k != "machine"))
    return shares


async def post_phase(name: str, rate: float, messages: list[dict], generator: Generator, console: Console,
                     deployment: Deployment, drain_s: float, batch: int = 1) -> Phase:
    """Open loop: message i is due at t0 + i/rate, and goes out then whatever happened to the
    earlier ones. With `batch` > 1 the messages are delivered `batch` at a time, when the last of
    them is due (a source that batches, like Meta's webhooks); each message's latency still counts
    from its own due time, so the wait for the batch to fill is included."""
    items = [Sent(m["id"], 0.0) for m in messages]
    chunks = [(items[i : i + batch], messages[i : i + batch]) for i in range(0, len(messages), batch)]
    loop = asyncio.get_running_loop()
    # Bodies and signatures before the clock starts: the generator's work in the phase is sending.
    first = time.time() + 0.5 + len(chunks) * 2e-4
    prepared = []
    for n, (chunk, chunk_messages) in enumerate(chunks):
        payload = chunk_messages[0] if batch == 1 else {"messages": chunk_messages}
        due = first + (n * batch + len(chunk) - 1) / rate
        prepared.append((chunk, generator.prepare(json.dumps(payload, ensure_ascii=False).encode(), due)))
    before = CpuSnapshot.take()
    sessions_before = await loop.run_in_executor(None, pg_sessions, deployment.db_name)
    t0 = max(first, time.time() + 0.1)
    for i, item in enumerate(items):
        item.scheduled = t0 + i / rate
    schedule = [(chunk[-1].scheduled, chunk, request) for chunk, request in prepared]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="generator") as pool:
        await loop.run_in_executor(pool, generator.run, schedule, deployment)
    posted = time.time()
    after_posts = CpuSnapshot.take()
    seconds = posted - t0
    await _wait_arrivals(console, [s.marker for s in items if s.stored == 1], posted + drain_s, deployment)
    after = CpuSnapshot.take()
    roles = deployment.roles()
    phase = Phase(name, rate, items, _arrived(console, items),
                  time.time() - posted)
    phase.seconds = seconds
    phase.cpu = _cpu_shares(before, after_posts, seconds, roles)
    phase.cpu_whole, phase.whole_s = _cpu_shares(before, after, 1.0, roles), time.time() - t0
    phase.ended, phase.console_last_id = time.time(), console.last_id
    phase.generator_cpu_s, phase.generator_connections = generator.cpu_s, generator.connections
    await asyncio.sleep(1.0)  # PostgreSQL counts a session when it ends, and reports it within ~1 s
    phase.pg_sessions = await asyncio.get_running_loop().run_in_executor(
        None, pg_sessions, deployment.db_name) - sessions_before
    return phase


async def floor_phase(count: int, rate: float, team_id: int, console: Console, deployment: Deployment,
                      drain_s: float) -> Phase:
    """Events written straight to the console from this process: insert + commit + doorbell +
    the consumer's query + push. No HTTP, no classification, no routing."""
    from django.db import connections, transaction

    from responses.events import emit

    def emit_one(marker: str) -> None:
        with transaction.atomic():
            emit("message.created", {"message": {"id": 0, "text": f"doorbell floor [e2e:{marker}]"}, "case_id": None},
                 team_id=team_id)

    loop = asyncio.get_running_loop()
    items = [Sent(f"floor-{i}", 0.0) for i in range(count)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        t0 = time.time() + 0.1
        for i, item in enumerate(items):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            item.scheduled = item.started = time.time()
            await loop.run_in_executor(pool, emit_one, item.marker)
            item.answered, item.status, item.stored, item.attempts = time.time(), 200, 1, 1
        await loop.run_in_executor(pool, connections.close_all)
    posted = time.time()
    await _wait_arrivals(console, [s.marker for s in items], posted + drain_s, deployment, check_noise=False)
    phase = Phase("floor", rate, items, _arrived(console, items),
                  time.time() - posted)
    phase.seconds = posted - t0
    return phase


async def run_phases(args: argparse.Namespace, deployment: Deployment, fixture: Fixture,
                     batches: dict[str, list[dict]]) -> dict[str, Phase]:
    port = deployment.daphne.port
    console = Console(f"ws://127.0.0.1:{port}/ws/console/", f"http://127.0.0.1:{port}", fixture.cookie)
    listener = asyncio.ensure_future(console.run())
    phases: dict[str, Phase] = {}
    try:
        try:
            await asyncio.wait_for(console.welcomed.wait(), 30)
        except TimeoutError:
            raise BenchFailure(f"the console websocket did not welcome us: {console.failure or 'no answer'}") from None
        generator = Generator("127.0.0.1", port, f"/hooks/{fixture.slug}/", args.client)
        print(f"warm-up: {len(batches['warmup'])} messages at 5 msgs/s (the learning worker loads the model)",
              flush=True)
        warm = await post_phase("warm-up", 5.0, batches["warmup"], generator, console, deployment, 120)
        rows = await asyncio.get_running_loop().run_in_executor(
            None, _db_rows_closing, fixture.connector_id, [s.marker for s in warm.sent])
        diagnose(warm, rows)
        if warm.lost or warm.failed:
            raise BenchFailure(f"warm-up: {len(warm.failed)} deliveries failed, {len(warm.lost)} of "
                               f"{len(warm.ok)} never reached the console within 120 s")
        phases["warm-up"] = warm
        await asyncio.sleep(2)
        print(f"floor: {args.floor_events} events emitted straight to the console at 5/s", flush=True)
        phases["floor"] = await floor_phase(args.floor_events, 5.0, fixture.team_id, console, deployment,
                                            args.drain)
        before = CpuSnapshot.take()
        await asyncio.sleep(IDLE_SECONDS)  # what the deployment burns with no traffic
        idle = _cpu_shares(before, CpuSnapshot.take(), IDLE_SECONDS, deployment.roles())
        print(f"baseline: {len(batches['baseline'])} messages at {args.baseline_rate:g} msgs/s", flush=True)
        phases["baseline"] = await post_phase("baseline", args.baseline_rate, batches["baseline"], generator,
                                              console, deployment, args.drain)
        await asyncio.sleep(2)
        print(f"target: {len(batches['target'])} messages at {args.rate:g} msgs/s for {args.seconds:g} s"
              + (f", {args.batch} per delivery" if args.batch > 1 else ""), flush=True)
        spy = None
        if args.profile:
            pids = deployment.roles()[{"learning": "learning worker", "default": "default worker",
                                       "daphne": "daphne"}[args.profile]]
            # The default worker's first pid is the prefork parent: sample a child, which routes.
            pid = pids[1] if args.profile == "default" and len(pids) > 1 else pids[0]
            spy = Profiler.start(pid, deployment.log_dir, seconds=max(1, int(min(args.seconds, 20))))
        phases["target"] = await post_phase("target", args.rate, batches["target"], generator, console,
                                            deployment, args.drain, args.batch)
        phases["baseline"].idle = phases["target"].idle = idle
        if spy:
            # The worker's own plumbing (celery, kombu, click) wraps every sample: leave it out.
            lines = [line for line in spy.finish(top=300)
                     if not any(f"({lib}/" in line for lib in ("celery", "kombu", "click", "billiard", "vine"))]
            phases["_profile"] = lines[:40]  # type: ignore[assignment]
        phases["_console"] = console  # type: ignore[assignment]
        return phases
    finally:
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener


# --- Traffic ------------------------------------------------------------------------------------
def make_batches(args: argparse.Namespace) -> tuple[dict[str, list[dict]], str]:
    """Real customer texts (bench.classify's sample) on bench.ingest's generated authors and
    threads; each text ends with its unique marker."""
    from django.conf import settings

    sizes = {"warmup": args.warmup, "baseline": max(1, round(args.baseline_rate * args.baseline_seconds)),
             "target": max(1, round(args.rate * args.seconds))}
    path = args.data or Path(settings.CXM_TRAINING_DATA) / SAMPLE
    texts, source = load_texts(sum(sizes.values()), path)
    batches, used = {}, 0
    for seed, (name, size) in enumerate(sizes.items()):
        messages = make_messages(size, name[0], seed=11 + seed)
        for message in messages:
            message["text"] = f"{texts[used].strip()} [e2e:{message['id']}]"
            used += 1
        batches[name] = messages
    return batches, source


# --- Where the messages stopped, and where the time went --------------------------------------
def _ts(value: datetime) -> float:
    return value.timestamp()


def db_rows(connector_id: int, markers: list[str]) -> dict[str, dict[str, Any]]:
    """Per marker (external id): stored at, classifications, events, lane."""
    from learning.models import Classification
    from listening.models import Message
    from responses.models import ConsoleEvent

    rows: dict[str, dict[str, Any]] = {}
    by_pk: dict[int, str] = {}
    for pk, ext, received in Message.objects.filter(connector_id=connector_id, external_id__in=markers).values_list(
            "pk", "external_id", "received_at"):
        rows[ext] = {"pk": pk, "received": _ts(received), "classified": [], "events": [], "lane": "", "status": ""}
        by_pk[pk] = ext
    for cid, mid, created, lane, status, current in Classification.objects.filter(
            message_id__in=list(by_pk)).order_by("pk").values_list("pk", "message_id", "created_at", "lane", "status",
                                                                   "is_current"):
        row = rows[by_pk[mid]]
        row["classified"].append((cid, _ts(created)))
        if current:
            row["lane"], row["status"] = lane, status
    earliest = min((r["received"] for r in rows.values()), default=0)
    if rows:
        from datetime import UTC

        since = datetime.fromtimestamp(earliest - 5, tz=UTC)
        events = ConsoleEvent.objects.filter(type="message.created", created_at__gte=since).order_by("pk")
        for pk, created, payload in events.values_list("pk", "created_at", "payload"):
            mid = (payload.get("message") or {}).get("id")
            if mid in by_pk:
                rows[by_pk[mid]]["events"].append((_ts(created), pk))
    return rows


def _db_rows_closing(connector_id: int, markers: list[str]) -> dict[str, dict[str, Any]]:
    from django.db import connections

    try:
        return db_rows(connector_id, markers)
    finally:
        connections.close_all()


def diagnose(phase: Phase, rows: dict[str, dict[str, Any]]) -> None:
    """Noise (no case by design) and, for each message that never arrived, where it stopped."""
    for s in phase.ok:
        if s.marker in phase.arrivals:
            continue
        row = rows.get(s.marker)
        if row is None:
            phase.where_lost[s.marker] = "not stored"
        elif not row["classified"]:
            phase.where_lost[s.marker] = "not classified"
        elif row["status"] != "ok":
            phase.where_lost[s.marker] = f"classification {row['status']}"
        elif not row["events"]:
            if row["lane"] == "noise":
                phase.noise.add(s.marker)
            elif phase.ended - row["classified"][0][1] < IN_FLIGHT_SECONDS:
                phase.where_lost[s.marker] = "classified, routing in flight at the drain's end"
            else:
                phase.where_lost[s.marker] = "classified, never routed"
        else:
            created, event_id = row["events"][0]
            if phase.ended - created < IN_FLIGHT_SECONDS:
                phase.where_lost[s.marker] = "event written, push in flight at the drain's end"
            elif event_id < phase.console_last_id:
                # The console moved past this id without it: the consumer gave up waiting for an
                # id that was not visible yet (events.GAP_WAIT_SECONDS) while its transaction
                # was still open. A product bug, not a slow bench.
                phase.where_lost[s.marker] = "event skipped by the console"
                phase.skipped_ids.append(event_id)
            else:
                phase.where_lost[s.marker] = "event written, not pushed"
    for marker in phase.noise:
        phase.where_lost.pop(marker, None)
    phase.lanes = dict(Counter(rows[s.marker]["lane"] or "-" for s in phase.ok if s.marker in rows))


def stage_breakdown(phase: Phase, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Split each arrived message's latency by the database's timestamps:

    - post -> stored: scheduled send -> Message.received_at (HTTP, Daphne, ingest);
    - learning wait / classify: the solo learning worker takes its tasks in order, so the task of
      message i starts at max(stored_i, done_{i-1}) (done = Classification.created_at, taken right
      after the encoder pass) and waits from stored_i to then; classify = done_i - start_i (reading
      the rows, the model, assess). Estimated: the task's own start is not stored;
    - routing: Classification.created_at -> the message.created ConsoleEvent.created_at (storing the
      result and its commit, messages_classified, route_messages queued and run on the default
      worker up to the event insert);
    - push: ConsoleEvent.created_at -> arrival at the client (the routing transaction's commit,
      the doorbell, the consumer's query, the websocket frame).
    """
    arrived = [s for s in phase.ok if s.marker in phase.arrivals and rows.get(s.marker, {}).get("classified")
               and rows[s.marker]["events"]]
    if not arrived:
        return {}
    ordered = sorted(arrived, key=lambda s: rows[s.marker]["classified"][0][0])
    stages: dict[str, list[float]] = defaultdict(list)
    previous_done = 0.0
    busy = 0.0
    for s in ordered:
        row = rows[s.marker]
        stored, done, event = row["received"], row["classified"][0][1], row["events"][0][0]
        start = max(stored, previous_done)
        if start > done:  # clock granularity or out of order: no wait, all service
            start = stored
        stages["post -> stored"].append((stored - s.scheduled) * 1000)
        stages["learning queue wait"].append((start - stored) * 1000)
        stages["classify (service)"].append((done - start) * 1000)
        stages["routing"].append((event - done) * 1000)
        stages["push"].append((phase.arrivals[s.marker][0] - event) * 1000)
        busy += done - start
        previous_done = max(previous_done, done)
    span = (max(rows[s.marker]["classified"][0][1] for s in ordered)
            - min(rows[s.marker]["received"] for s in ordered))
    out: dict[str, Any] = {name: {"p50_ms": round(pct(v, 0.5), 1), "p95_ms": round(pct(v, 0.95), 1),
                                  "mean_ms": round(statistics.fmean(v), 1)} for name, v in stages.items()}
    out["messages"] = len(ordered)
    out["learning_busy_share"] = round(busy / span, 3) if span > 0 else 0.0
    out["learning_msgs_per_busy_s"] = round(len(ordered) / busy, 1) if busy > 0 else 0.0
    return out


# --- Report -------------------------------------------------------------------------------------
def print_report(args, phases: dict[str, Phase], stages: dict[str, dict], console: Console, loads: list) -> None:
    rows = [("phase", "rate", "sent", "received", "lost", "dup", "noise", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    for name in ("floor", "baseline", "target"):
        f = phases[name].figures()
        rate = "-" if name == "floor" else f"{f['rate_achieved']:.1f}/s"
        rows.append((name, rate, str(f["sent"]), str(f["received"]), str(f["lost"]), str(f["duplicates"]),
                     str(f["noise_no_case"]), f"{f['p50_ms']:.0f}", f"{f['p95_ms']:.0f}", f"{f['p99_ms']:.0f}",
                     f"{f['max_ms']:.0f}"))
    print_table(f"CXM end-to-end bench: webhook POST -> console websocket, {os.cpu_count()} cores, 1 daphne, "
                f"learning worker solo (torch threads {args.torch_threads or 'default'}), default worker "
                f"-c {args.default_concurrency} -P {args.default_pool}, PostgreSQL, Redis, DEBUG=0; "
                + (f"target phase in deliveries of {args.batch} messages" if args.batch > 1
                   else "one message per delivery"), rows)
    print("latency = arrival of the message.created event at the websocket client - scheduled POST time; "
          "floor = an event emitted straight into ConsoleEvent (commit, doorbell, consumer, push)")
    for name in ("baseline", "target"):
        f = phases[name].figures()
        print(f"{name}: POST answered p50 {f['post_p50_ms']:.0f} ms, p95 {f['post_p95_ms']:.0f} ms; send lag p99 "
              f"{f['send_lag_p99_ms']:.0f} ms; {f['failed_posts']} deliveries failed, {f['retries']} retried; "
              f"drained in {f['drained_s']:.1f} s; {f['pg_sessions_opened']} PostgreSQL connections opened"
              + (f"; not arrived: {f['lost_where']}" if f["lost_where"] else ""))
    base, target, floor = (phases[n].figures() for n in ("baseline", "target", "floor"))
    print(f"ratios: target p95 / baseline p95 {_ratio(target['p95_ms'], base['p95_ms'])}, target p50 / baseline "
          f"p50 {_ratio(target['p50_ms'], base['p50_ms'])}, baseline p50 / floor p50 "
          f"{_ratio(base['p50_ms'], floor['p50_ms'])}")
    for name in ("baseline", "target"):
        st = stages.get(name)
        if not st:
            continue
        print(f"stages, {name} ({st['messages']} messages; ms p50 / p95 / mean):")
        for stage in ("post -> stored", "learning queue wait", "classify (service)", "routing", "push"):
            v = st[stage]
            print(f"  {stage:<22} {v['p50_ms']:>8.0f} {v['p95_ms']:>8.0f} {v['mean_ms']:>8.0f}")
        print(f"  learning worker busy {st['learning_busy_share']:.0%} of the span, "
              f"{st['learning_msgs_per_busy_s']:.1f} msgs per busy second")
    cpu = phases["target"].cpu
    cores = os.cpu_count() or 1
    print("CPU during the target phase's POSTs, share of one core: "
          + ", ".join(f"{role} {share:.0%}" for role, share in cpu.items() if role != "machine")
          + f"; machine {cpu['machine'] / cores:.0%} busy of {cores} cores")
    for name in ("baseline", "target"):
        per = phases[name].cpu_ms_per_msg()
        own = sum(v for k, v in per.items() if k not in ("machine", "other", "bench client"))
        print(f"CPU ms per message, {name} phase incl. drain: "
              + ", ".join(f"{role} {v:.1f}" for role, v in per.items() if role not in ("machine",))
              + f"; the deployment (daphne, workers, postgres, redis) {own:.1f} ms: "
              f"{own * args.rate / 1000:.2f} cores at {args.rate:g} msgs/s")
    for name in ("baseline", "target"):
        f = phases[name].figures()
        print(f"load generator ({args.client}), {name}: {f['generator_cpu_ms_per_msg']:.2f} CPU ms per message "
              f"(its thread, getrusage), {f['generator_connections']} connection(s)")
    print(f"console: {console.connects} connection(s), {console.frames} frames, {console.events} events; "
          f"load average {loads[0]:.2f} before, {loads[1]:.2f} after")
    met = goal_met(args, target)
    print(f"goal: p95 <= {GOAL_P95_MS:.0f} ms at >= {GOAL_RATE:.0f} msgs/s with none lost (target p95 "
          f"{target['p95_ms']:.0f} ms at {target['rate_achieved']:.1f} msgs/s, {target['lost']} lost, "
          f"{target['failed_posts']} failed): {'met' if met else 'NOT met'}")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def goal_met(args, target: dict[str, Any]) -> bool:
    # The goal is about single-message deliveries (chat widgets, forms): a batching source is easier.
    return (args.batch == 1 and args.rate >= GOAL_RATE and target["rate_achieved"] >= 0.99 * args.rate
            and target["p95_ms"] <= GOAL_P95_MS and target["lost"] == 0 and target["failed_posts"] == 0
            and target["received"] > 0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = e2e_env(args)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cxm.settings"

    install_time_limit(args.timeout)
    started = time.perf_counter()
    lock = _run_lock(args)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="cxm-bench-e2e-")
    tmp = Path(tmp_ctx.name)
    deployment = Deployment(env, tmp, args.default_concurrency, args.torch_threads,
                            urlsplit(args.database_url).path.lstrip("/"), args.default_pool)
    created_db = flushed = False
    loads = [os.getloadavg()[0]]
    try:
        print(f"bench database {urlsplit(args.database_url).path.lstrip('/')}: creating and migrating; "
              f"Redis {args.redis_url} flushed", flush=True)
        create_database(args.database_url)
        created_db = True
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)
        fixture = setup_fixture()
        batches, source = make_batches(args)
        connections.close_all()
        flush_redis(args.redis_url)
        flushed = True
        print(f"starting daphne, a learning worker and a default worker (DEBUG=0, {socket.gethostname()})",
              flush=True)
        deployment.start()
        print(f"  daphne on 127.0.0.1:{deployment.daphne.port}; workers answer; texts from {source}", flush=True)
        phases = asyncio.run(run_phases(args, deployment, fixture, batches))
        console = phases.pop("_console")
        profile = phases.pop("_profile", None)
        loads.append(os.getloadavg()[0])
        stages = {}
        for name in ("baseline", "target"):
            rows = db_rows(fixture.connector_id, [s.marker for s in phases[name].sent])
            diagnose(phases[name], rows)
            stages[name] = stage_breakdown(phases[name], rows)
        connections.close_all()
        print_report(args, phases, stages, console, loads)
        if profile:
            print(f"py-spy, the {args.profile} process during the target phase (inclusive share of samples):")
            for line in profile:
                print(f"  {line}")
        figures: dict[str, Any] = {
            "cores": os.cpu_count(), "texts": source, "rate": args.rate, "seconds": args.seconds,
            "baseline_rate": args.baseline_rate, "batch": args.batch, "default_concurrency": args.default_concurrency,
            "default_pool": args.default_pool, "client": args.client,
            "torch_threads": args.torch_threads, "drain_s": args.drain,
            "classify_batch": int(env.get("CXM_CLASSIFY_BATCH", 0)) or None,
            "console_connections": console.connects, "load_avg_before": round(loads[0], 2),
            "load_avg_after": round(loads[1], 2),
        }
        for name in ("floor", "baseline", "target"):
            figures[name] = phases[name].figures()
        figures["stages"] = stages
        figures["cpu_target_core_share"] = {k: round(v, 3) for k, v in phases["target"].cpu.items()}
        for name in ("baseline", "target"):
            figures[f"cpu_ms_per_msg_{name}"] = {k: round(v, 2) for k, v in phases[name].cpu_ms_per_msg().items()}
        figures["cpu_idle_core_share"] = {k: round(v, 3) for k, v in phases["baseline"].idle.items()}
        base, target = figures["baseline"], figures["target"]
        for key, a, b in (("ratio_target_vs_baseline_p95", target["p95_ms"], base["p95_ms"]),
                          ("ratio_target_vs_baseline_p50", target["p50_ms"], base["p50_ms"]),
                          ("ratio_baseline_vs_floor_p50", base["p50_ms"], figures["floor"]["p50_ms"])):
            figures[key] = round(a / b, 2) if b else None
        figures["goal_met"] = goal_met(args, target)
        figures["total_seconds"] = round(time.perf_counter() - started, 1)
        print("BENCH e2e " + json.dumps(figures, sort_keys=True))
        return 0
    except (BenchFailure, BenchTimeout, KeyboardInterrupt, SystemExit) as exc:
        print(deployment.log_tails(), file=sys.stderr)
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception:
        print(deployment.log_tails(), file=sys.stderr)
        raise
    finally:
        signal.alarm(0)
        deployment.stop()
        if flushed:
            with contextlib.suppress(Exception):
                flush_redis(args.redis_url)
        if created_db:
            drop_bench_database(args.database_url)
        tmp_ctx.cleanup()
        lock.close()


def _run_lock(args: argparse.Namespace):
    """One run at a time per database: a second run would drop the first one's database."""
    import fcntl

    name = urlsplit(args.database_url).path.lstrip("/")
    handle = open(Path(tempfile.gettempdir()) / f"cxm-{name}.lock", "w")  # noqa: SIM115 (held for the run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench/e2e.py run is using the database {name}; wait for it to finish") from None
    return handle


if __name__ == "__main__":
    sys.exit(main())
