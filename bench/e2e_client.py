"""bench/e2e.py's clients: the agent console on the websocket (records when each marked
message.created event arrives), and the load generator (requests built and signed before a phase,
sent open loop from a thread of its own whose CPU is measured), with the per-phase record (`Phase`)
the report reads."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import pct  # noqa: E402
from bench.e2e_deploy import Deployment  # noqa: E402
from bench.ingest import RETRIES, SECRET, BenchFailure, LeanHTTP, signed_request  # noqa: E402

MARKER_RE = re.compile(r"\[e2e:([\w-]+)\]\s*$")


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
                self.on_event(event, now)
        elif kind == "bye":
            self.failure = f"the server said bye: {message.get('reason')}"

    def on_event(self, event: dict, now: float) -> None:
        """What this console keeps of an event: when each marked message.created arrived."""
        if event["type"] != "message.created":
            return
        match = MARKER_RE.search((event.get("message") or {}).get("text", ""))
        if match:
            self.arrivals[match.group(1)].append(now)
            self.event_at.setdefault(match.group(1), event.get("at", ""))

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

