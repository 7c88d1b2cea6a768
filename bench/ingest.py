#!/usr/bin/env python
"""Ingestion benchmark: signed webhooks through a real Daphne, and file import.

    python bench/ingest.py [--messages N] [--quick] [--workers 2] [--import-rows 100000]

What it does, in one run (see bench/README.md):
  1. creates a dedicated PostgreSQL database (default cxm_bench), migrates it, creates generic
     webhook connectors with signing secrets;
  2. times the ingestion actions in-process (no HTTP) and counts their queries: where the time goes;
  3. starts Daphne (cxm.asgi:application, DEBUG=0) as subprocess(es) and sends N signed
     single-message deliveries with bounded concurrency (asyncio + httpx), then the same volume in
     batched deliveries, then replays some deliveries to check dedupe; every phase checks that
     the database holds exactly what was sent;
  4. runs the naive baseline (one ORM save at a time, get_or_create for contact and conversation,
     see bench/naive.py) behind the same Daphne setup, timed the same way;
  5. generates a CSV and imports it with listening.importing.import_file, against the naive
     baseline over a subset;
  6. prints a table and, as the very last line, `BENCH ingest {json}`.

The server processes are always killed and the bench database always dropped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import inspect
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_bench"
SECRET = "bench-signing-secret-" + secrets.token_hex(8)
RETRIES = 5
# Causes of 500s, counted in the servers' logs (each appears once per traceback).
SERVER_ERRORS = {
    "deadlocks": "django.db.utils.OperationalError: deadlock detected",
    "too many clients": "django.db.utils.OperationalError: connection failed:",
    "pool timeouts": "django.db.utils.OperationalError: couldn't get a connection",
}


class BenchFailure(Exception):
    """A correctness check failed: the numbers of this run must not be trusted."""


class BenchTimeout(Exception):
    pass


# --- Realistic traffic --------------------------------------------------------------------------
FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Inès", "Jonas", "Kavya", "Liam",
         "María", "Noah", "Olga", "Pedro", "Quinn", "Rania", "Sven", "Tariq", "Uma", "Valentina", "Wei", "Yusuf"]
LAST = ["Silva", "Okafor", "Müller", "Tanaka", "Dubois", "Khan", "Novak", "García", "Smith", "Rossi", "Kowalski",
        "Nguyen", "Haddad", "Andersson", "O'Brien", "Petrov", "Moreau", "Costa"]
PRODUCTS = ["the Aurora X2 headphones", "the mobile app", "my Nimbus router", "the order tracking page",
            "the loyalty card", "checkout", "the Flex 3 treadmill", "the smart thermostat", "the Premium plan",
            "your delivery service", "the kids' tablet", "the espresso machine", "the web shop search"]
ISSUES = [
    "{p} stopped working after the last update",
    "I was charged twice for {p} and nobody answers my emails",
    "order #{o} still hasn't arrived, it's been {d} days",
    "{p} keeps disconnecting every few minutes",
    "the refund for order #{o} never came through",
    "I can't log in, the password reset email for {p} never arrives",
    "{p} arrived with a cracked screen",
    "your chatbot sent me in circles for 40 minutes about {p}",
]
PRAISE = [
    "just wanted to say {p} is brilliant",
    "huge thanks to {a} from support, sorted in five minutes",
    "{p} arrived a day early, love it",
    "best customer service I've had all year, {a} went above and beyond",
    "been using {p} for {d} days now and it's flawless",
]
MIXED = [
    "{p} is great but the battery barely lasts {h} hours",
    "love the design of {p}, hate that the charger costs extra",
    "not sure about {p} anymore, it used to be better",
    "{p} works, I guess, but support took {d} days to reply",
]
QUESTIONS = [
    "does {p} work with Android 12?",
    "when will {p} be back in stock?",
    "can I change the delivery address for order #{o}?",
    "is there a student discount on {p}?",
]
FOREIGN = [
    "El pedido #{o} llegó roto, ¿cómo pido el reembolso?",
    "Merci pour la livraison rapide, tout est parfait !",
    "Seit dem Update funktioniert die App nicht mehr richtig.",
    "Adorei o produto, mas o app trava às vezes.",
    "注文#{o}の配送が遅れています。いつ届きますか？",
    "Bestelling #{o} is nog steeds niet geleverd.",
]
OPENERS = ["", "", "", "Hi, ", "Hello team, ", "@brand ", "Seriously? ", "Quick question: ", "Hey! "]
TAILS = ["", "", "", " Please help.", " Any update?", " Thanks!", " This is the third time I'm asking.",
         " DM me.", " 😡", " 🙏", " ❤️", " 👍", " 😕"]
CHANNELS = ["web", "web", "chat", "chat", "app-review", "forms", "sms"]


def _sentence(rng: random.Random) -> str:
    pool = rng.choices([ISSUES, PRAISE, MIXED, QUESTIONS, FOREIGN], weights=[40, 20, 15, 18, 7])[0]
    text = rng.choice(pool).format(
        p=rng.choice(PRODUCTS), o=rng.randint(100000, 999999), d=rng.randint(2, 30), h=rng.randint(2, 9),
        a=rng.choice(FIRST),
    )
    return text[0].upper() + text[1:]


def _text(rng: random.Random) -> str:
    count = rng.choices([1, 2, 3, 8], weights=[55, 28, 12, 5])[0]  # a few long, email-like messages
    body = " ".join(_sentence(rng) + rng.choice([".", "!", "", "..."]) for _ in range(count))
    return rng.choice(OPENERS) + body + rng.choice(TAILS)


def make_messages(count: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    """`count` generic-webhook message objects: authors with a long-tailed activity, threads that
    run over several messages, some replies, some verified emails, timestamps moving forward."""
    rng = random.Random(seed)
    authors = []
    channel_of: dict[str, str] = {}
    for i in range(max(20, count // 4)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        author: dict[str, Any] = {"id": f"{prefix}-u{i}", "name": f"{first} {last}",
                                  "handle": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}"}
        channel_of[author["id"]] = rng.choice(CHANNELS)
        if rng.random() < 0.3:
            author["email"] = f"{first.lower()}{i}@example.com"
            author["email_verified"] = rng.random() < 0.2
        authors.append(author)
    cumulative, total = [], 0.0
    for i in range(len(authors)):
        total += 1 / (i + 1) ** 0.8  # a long tail: some customers write a lot
        cumulative.append(total)
    open_threads: dict[str, list[str]] = {}  # author id -> [thread id, last message id]
    start = datetime.now(tz=UTC) - timedelta(hours=6)
    messages = []
    for n in range(count):
        author = rng.choices(authors, cum_weights=cumulative)[0]
        channel = channel_of[author["id"]]
        message: dict[str, Any] = {
            "id": f"{prefix}-m{n}",
            "text": _text(rng),
            "author": author,
            "sent_at": (start + timedelta(seconds=n * 1.7 + rng.random())).isoformat().replace("+00:00", "Z"),
            "channel": channel,
        }
        thread = open_threads.get(author["id"])
        if thread and rng.random() < 0.6:
            message["thread_id"] = thread[0]
            if rng.random() < 0.5:
                message["in_reply_to"] = thread[1]
        else:
            message["thread_id"] = f"{prefix}-t{n}"
        open_threads[author["id"]] = [message["thread_id"], message["id"]]
        messages.append(message)
    return messages


def to_inbound(item: dict[str, Any]):
    from listening.connectors.base import InboundAuthor, InboundMessage

    author = item["author"]
    return InboundMessage(
        external_id=item["id"],
        text=item["text"],
        author=InboundAuthor(external_id=author["id"], handle=author.get("handle", ""),
                             display_name=author.get("name", ""), email=author.get("email", ""),
                             email_verified=author.get("email_verified", False)),
        sent_at=datetime.fromisoformat(item["sent_at"].replace("Z", "+00:00")),
        channel=item["channel"],
        thread_id=item.get("thread_id", ""),
        parent_external_id=item.get("in_reply_to", ""),
        raw=item,
    )


# --- Database -----------------------------------------------------------------------------------
def _admin_url(db_url: str) -> tuple[str, str]:
    parts = urlsplit(db_url)
    name = parts.path.lstrip("/")
    if not name or "bench" not in name:
        raise SystemExit(f"refusing to create/drop database {name!r}: its name must contain 'bench'")
    return urlunsplit(parts._replace(path="/postgres")), name


def create_database(db_url: str) -> None:
    import psycopg
    from psycopg import sql

    admin, name = _admin_url(db_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_bench_database(db_url: str) -> None:
    """At the end of a run that created it: close Django's connections and drop the database,
    reporting a failure without masking the run's own outcome."""
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    try:
        drop_database(db_url)
    except Exception as exc:  # noqa: BLE001 -- report, never mask the run's own outcome
        print(f"warning: could not drop the bench database: {exc}", file=sys.stderr)


def drop_database(db_url: str) -> None:
    import psycopg
    from psycopg import sql

    admin, name = _admin_url(db_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- CPU accounting -----------------------------------------------------------------------------
CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User+system CPU seconds of one process (all threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLK


@dataclass
class CpuSample:
    client: float
    servers: float
    machine: float

    @classmethod
    def take(cls, server_pids: list[int]) -> CpuSample:
        return cls(time.process_time(), sum(_proc_cpu(p) for p in server_pids), _machine_busy())


# --- Servers ------------------------------------------------------------------------------------
@dataclass
class Servers:
    """`workers` Daphne processes sharing one port through SO_REUSEPORT sockets: the kernel spreads
    incoming connections across them, like gunicorn/uvicorn's multi-worker mode."""

    settings_module: str
    workers: int
    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    port: int = 0
    root: Path = REPO  # the checkout it serves (--compare-ref: another commit's worktree)
    tag: str = ""
    server: str = "daphne"  # or uvicorn (--compare-server: httptools and uvloop)

    def start(self, deadline_s: float = 60) -> None:
        sockets = []
        try:
            for _ in range(self.workers):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(("127.0.0.1", self.port))
                sock.listen(1024)
                self.port = sock.getsockname()[1]
                sockets.append(sock)
            env = {**self.env, "DJANGO_SETTINGS_MODULE": self.settings_module}
            if self.root != REPO:
                env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(REPO), str(self.root), 1)
            for i, sock in enumerate(sockets):
                tag = f"{self._prefix}-{i}"
                log = open(self.log_dir / f"{tag}.log", "wb")  # noqa: SIM115 (closed with the process)
                if self.server == "uvicorn":
                    # Its access log goes to the process log (stdout), as Daphne's goes to its file.
                    cmd = [sys.executable, "-m", "uvicorn", "--fd", str(sock.fileno()), "--http", "httptools",
                           "--loop", "uvloop", "--lifespan", "off", "cxm.asgi:application"]
                else:
                    cmd = [sys.executable, "-m", "daphne", "--fd", str(sock.fileno()),
                           "--access-log", str(self.log_dir / f"{tag}.access"), "cxm.asgi:application"]
                proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        pass_fds=[sock.fileno()], start_new_session=True)
                log.close()
                self.procs.append(proc)
        finally:
            # Our copies must go: a listening socket left open here would take its share of
            # connections that nobody accepts.
            for sock in sockets:
                sock.close()
        self._wait_healthy(deadline_s)

    def _wait_healthy(self, deadline_s: float) -> None:
        import httpx

        deadline = time.monotonic() + deadline_s
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise BenchFailure(f"{self.server} exited with {proc.returncode} at start:\n{self.log_tail()}")
            try:
                # Fresh connections, several times: each worker must answer.
                ok = all(httpx.get(url, timeout=2).status_code == 200 for _ in range(4 * self.workers))
                if ok:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise BenchFailure(f"{self.server} not healthy after {deadline_s}s:\n{self.log_tail()}")

    @property
    def _prefix(self) -> str:
        return self.settings_module.replace(".", "_") + self.tag

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def access_counts(self) -> list[int]:
        counts = []
        for i in range(self.workers):
            path = self.log_dir / f"{self._prefix}-{i}.access"
            counts.append(path.read_bytes().count(b"\n") if path.exists() else 0)
        return counts

    def count_in_logs(self, needle: str) -> int:
        """Occurrences of `needle` in the servers' error logs (tracebacks of 500s)."""
        total = 0
        for path in self.log_dir.glob(f"{self._prefix}-*.log"):
            total += path.read_text(errors="replace").count(needle)
        return total

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.log_dir.glob(f"{self._prefix}-*.log")):
            out.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()


# --- Profiling ----------------------------------------------------------------------------------
PROFILE_SKIP = ("Thread._bootstrap", "Thread.run ", "_run_module_as_main", "_run_code", "<module> (daphne",
                "CommandLineInterface", "_worker (concurrent", "_WorkItem.run (concurrent", "func (asgiref",
                "run_child (asgiref", "Server.run (daphne")


@dataclass
class Profiler:
    """py-spy sampling one server process (all threads) while a phase runs."""

    proc: subprocess.Popen
    out: Path

    @classmethod
    def start(cls, pid: int, tmp: Path, seconds: int) -> Profiler | None:
        exe = shutil.which("py-spy") or next(
            (str(Path(p) / "bin" / "py-spy") for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and (Path(p) / "bin" / "py-spy").exists()), None)
        if exe is None:
            print("  --profile: py-spy not found, skipping (pip install py-spy)", flush=True)
            return None
        out = tmp / "profile.txt"
        proc = subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw",
                                 "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(proc, out)

    def finish(self, top: int = 28) -> list[str]:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return ["py-spy did not finish"]
        if not self.out.exists():
            return [f"py-spy wrote nothing (exit {self.proc.returncode}; it needs ptrace permission)"]
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            seen = set()
            for frame in stack.split(";"):
                name, _, where = frame.partition(" (")
                where = where.split("site-packages/")[-1].split(str(REPO) + "/")[-1].rsplit(":", 1)[0]
                key = f"{name} ({where}"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] = inclusive.get(key, 0) + int(count)
        ranked = [(k, v) for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])
                  if not any(skip in k for skip in PROFILE_SKIP)]
        return [f"{100 * v / total:5.1f}%  {k}" for k, v in ranked[:top]]


# --- Lean HTTP client ---------------------------------------------------------------------------
class LeanHTTPError(Exception):
    """The connection broke or the answer was not HTTP/1.1 as expected."""


def signed_request(host: str, path: str, body: bytes, timestamp: int | None = None) -> bytes:
    """The whole POST, head and body, as bytes: built (and signed) before a run, so sending it
    costs the generator one write. The signature stays valid for the connector's tolerance
    window (300 s by default): build a phase's requests just before the phase."""
    from listening.connectors.webhook import sign

    headers = sign(SECRET, int(time.time()) if timestamp is None else timestamp, body)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
    return head.encode("latin-1") + body


def get_request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1")


class LeanHTTP:
    """HTTP/1.1 with keep-alive over asyncio streams, for requests prepared as bytes.

    httpx builds a request object, headers, a URL and a response model per call: about 1 ms of
    client CPU per request here, which on 2 shared cores is taken from the server being measured.
    This client writes prepared bytes and reads the status line, Content-Length (or chunks) and
    the body, nothing else. At most `limit` connections; an idle one is reused."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._connect()
            try:
                status, body, keep = await self._exchange(conn, raw)
            except (OSError, asyncio.IncompleteReadError, LeanHTTPError) as exc:
                conn[1].close()
                if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                    raise LeanHTTPError(f"{type(exc).__name__}: {exc}") from None
                # A kept-alive connection the server had closed before our request reached it,
                # as clients treat it: once more on a new connection.
                conn = await self._connect()
                try:
                    status, body, keep = await self._exchange(conn, raw)
                except (OSError, asyncio.IncompleteReadError, LeanHTTPError) as again:
                    conn[1].close()
                    raise LeanHTTPError(f"{type(again).__name__}: {again}") from None
                except BaseException:  # cancelled (a timeout): the connection is mid-answer
                    conn[1].close()
                    raise
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self.idle.append(conn)
            else:
                conn[1].close()
            return status, body

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
                        ) -> tuple[int, bytes, bool]:
        reader, writer = conn
        writer.write(raw)
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        if not head.startswith(b"http/1.1 "):
            raise LeanHTTPError(f"not an HTTP/1.1 answer: {head[:40]!r}")
        status = int(head[9:12])
        keep = b"\r\nconnection: close" not in head
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
            return status, await reader.readexactly(length), keep
        if b"\r\ntransfer-encoding: chunked" in head:
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await reader.readexactly(size + 2))
            await reader.readuntil(b"\r\n")  # no trailers are sent to us
            return status, b"".join(p[:-2] for p in parts), keep
        return status, await reader.read(), False  # the body ends with the connection

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


# --- HTTP load ----------------------------------------------------------------------------------
@dataclass
class LoadResult:
    deliveries: int
    messages: int
    seconds: float
    latencies_ms: list[float]
    stored: int
    duplicates: int
    cpu_client: float
    cpu_servers: float
    cpu_machine: float
    per_worker: list[int] = field(default_factory=list)
    retries: int = 0
    server_errors: dict[str, int] = field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _send_all(url: str, bodies: list[bytes | None], concurrency: int, timeout_s: float,
                    prepared: list[bytes] | None = None) -> tuple:
    """Deliver every body, `concurrency` at a time. Like Meta, WhatsApp or Stripe, a delivery that
    gets a 5xx or a broken connection is retried (up to RETRIES times, short backoff); the
    retries are counted and reported. Latency is per attempt. With `prepared` (the requests as
    bytes, signed before the run) the lean client sends them; without, httpx builds and signs
    each request as it goes (`--client httpx`, the earlier generator)."""
    import httpx

    from listening.connectors.webhook import sign

    latencies: list[float] = []
    counts = {"stored": 0, "duplicates": 0, "retries": 0}
    errors: list[str] = []
    queue = iter(range(len(bodies)))
    parts = urlsplit(url)
    lean = LeanHTTP(parts.hostname or "127.0.0.1", parts.port or 80, concurrency) if prepared is not None else None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as client:

        async def send(i: int) -> tuple[int, bytes]:
            body = bodies[i]
            if lean is not None:
                return await asyncio.wait_for(lean.request(prepared[i]), 30.0)
            if body is None:  # the HTTP floor: GET /healthz, no database
                response = await client.get(url)
            else:
                headers = {"Content-Type": "application/json", **sign(SECRET, int(time.time()), body)}
                response = await client.post(url, content=body, headers=headers)
            return response.status_code, response.content

        async def deliver(i: int) -> None:
            last = ""
            for attempt in range(RETRIES + 1):
                if attempt:
                    counts["retries"] += 1
                    await asyncio.sleep(0.05 * 2**attempt)
                t0 = time.perf_counter()
                try:
                    status, content = await send(i)
                except (httpx.HTTPError, LeanHTTPError, OSError, TimeoutError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                if status >= 500:
                    last = f"HTTP {status}"
                    continue
                if status != 200:
                    errors.append(f"HTTP {status}: {content[:200]!r}")
                    return
                if bodies[i] is not None:
                    answer = json.loads(content)
                    counts["stored"] += answer["stored"]
                    counts["duplicates"] += answer["duplicates"]
                return
            errors.append(f"gave up after {RETRIES} retries, last: {last}")

        async def worker() -> None:
            for i in queue:
                await deliver(i)

        try:
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout_s)
        finally:
            if lean is not None:
                await lean.close()
    return latencies, counts, errors


def prepare_requests(url: str, bodies: list[bytes | None]) -> list[bytes]:
    parts = urlsplit(url)
    host = parts.netloc
    return [get_request(host, parts.path) if body is None else signed_request(host, parts.path, body)
            for body in bodies]


CLIENT = "lean"  # the load generator of run_load: "lean" (prepared bytes) or "httpx"; --client


def run_load(servers: Servers, path: str, bodies: list[bytes | None], messages: int, concurrency: int,
             timeout_s: float) -> LoadResult:
    url = f"http://127.0.0.1:{servers.port}{path}"
    # Built and signed before the clock starts: the generator's work in the run is the sending.
    prepared = prepare_requests(url, bodies) if CLIENT == "lean" else None
    before_counts = servers.access_counts()
    errors_before = {name: servers.count_in_logs(needle) for name, needle in SERVER_ERRORS.items()}
    before = CpuSample.take(servers.pids)
    t0 = time.perf_counter()
    try:
        latencies, counts, errors = asyncio.run(_send_all(url, bodies, concurrency, timeout_s, prepared))
    except TimeoutError:
        raise BenchTimeout(f"load on {path} did not finish within {timeout_s:.0f}s") from None
    seconds = time.perf_counter() - t0
    after = CpuSample.take(servers.pids)
    if errors:
        raise BenchFailure(f"{len(errors)} of {len(bodies)} deliveries to {path} failed, first: {errors[0]}")
    time.sleep(0.2)  # access log lines are written after the response
    per_worker = [b - a for a, b in zip(before_counts, servers.access_counts(), strict=True)]
    return LoadResult(len(bodies), messages, seconds, latencies, counts["stored"], counts["duplicates"],
                      after.client - before.client, after.servers - before.servers, after.machine - before.machine,
                      per_worker, counts["retries"],
                      {name: servers.count_in_logs(needle) - errors_before[name]
                       for name, needle in SERVER_ERRORS.items()})


def bodies_single(messages: list[dict]) -> list[bytes]:
    return [json.dumps(m, ensure_ascii=False).encode() for m in messages]


def bodies_batched(messages: list[dict], size: int) -> list[bytes]:
    return [json.dumps({"messages": messages[i : i + size]}, ensure_ascii=False).encode()
            for i in range(0, len(messages), size)]


# --- Checks -------------------------------------------------------------------------------------
def check_stored(connector, expected_ids: list[str], what: str) -> None:
    """The database must hold exactly the sent messages for this connector: none lost, no dupes."""
    from listening.models import Message

    stored = list(Message.objects.filter(connector=connector).values_list("external_id", flat=True))
    if len(stored) != len(expected_ids) or set(stored) != set(expected_ids):
        missing = len(set(expected_ids) - set(stored))
        extra = len(stored) - len(set(stored)) + len(set(stored) - set(expected_ids))
        raise BenchFailure(f"{what}: stored {len(stored)} messages, sent {len(expected_ids)} "
                           f"({missing} missing, {extra} unexpected or duplicated)")


def check_load(result: LoadResult, expect_stored: int, expect_dupes: int, what: str) -> None:
    if (result.stored, result.duplicates) != (expect_stored, expect_dupes):
        raise BenchFailure(f"{what}: server answered stored={result.stored} duplicates={result.duplicates}, "
                           f"expected {expect_stored} and {expect_dupes}")


# --- In-process probes: where the time goes -----------------------------------------------------
def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def probe_in_process(count: int) -> dict[str, Any]:
    """Time the storage paths alone (no HTTP, no server), one call at a time, and count queries."""
    from django.db import connection, transaction
    from django.db.models import F
    from django.test.utils import CaptureQueriesContext

    from bench.naive import store_naive
    from listening.actions import ingest_messages
    from listening.connectors.base import WebhookRequest
    from listening.connectors.webhook import sign
    from listening.models import Connector
    from listening.webhooks import receive_webhook

    out: dict[str, Any] = {}
    msgs = make_messages(count * 4 + 40, "probe", seed=7)
    parts = [msgs[i * count : (i + 1) * count] for i in range(4)]

    def conn(slug: str) -> Connector:
        return make_webhook_connector(slug)

    # ingest_messages, one message per call
    c1 = conn("probe-ingest")
    samples = []
    for item in parts[0]:
        t0 = time.perf_counter()
        ingest_messages(c1, [to_inbound(item)])
        samples.append(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as ctx:
        ingest_messages(c1, [to_inbound(msgs[-1])])
    out["ingest_single_ms"] = _median_ms(samples)
    out["ingest_single_queries"] = len(ctx.captured_queries)

    # the whole webhook action in-process: lookup, decrypt secret, HMAC, parse, ingest
    conn("probe-hook")
    samples = []
    for item in parts[1]:
        body = json.dumps(item).encode()
        request = WebhookRequest("POST", "http://127.0.0.1/hooks/probe-hook/",
                                 {k.lower(): v for k, v in sign(SECRET, int(time.time()), body).items()}, {}, body)
        t0 = time.perf_counter()
        receive_webhook("probe-hook", request)
        samples.append(time.perf_counter() - t0)
    body = json.dumps(msgs[-2]).encode()
    request = WebhookRequest("POST", "http://127.0.0.1/hooks/probe-hook/",
                             {k.lower(): v for k, v in sign(SECRET, int(time.time()), body).items()}, {}, body)
    with CaptureQueriesContext(connection) as ctx:
        receive_webhook("probe-hook", request)
    out["webhook_action_single_ms"] = _median_ms(samples)
    out["webhook_action_single_queries"] = len(ctx.captured_queries)
    out["webhook_action_query_sql"] = [q["sql"][:90] for q in ctx.captured_queries]

    # naive, one message per call
    c3 = conn("probe-naive")
    samples = []
    for item in parts[2]:
        t0 = time.perf_counter()
        store_naive(c3, to_inbound(item))
        samples.append(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as ctx:
        store_naive(c3, to_inbound(msgs[-3]))
    out["naive_single_ms"] = _median_ms(samples)
    out["naive_single_queries"] = len(ctx.captured_queries)

    # ingest_messages, 20 per call
    c4 = conn("probe-batch")
    samples = []
    part = parts[3]
    for i in range(0, len(part) - 19, 20):
        t0 = time.perf_counter()
        ingest_messages(c4, [to_inbound(m) for m in part[i : i + 20]])
        samples.append((time.perf_counter() - t0) / 20)
    out["ingest_batch20_ms_per_msg"] = _median_ms(samples) if samples else float("nan")
    with CaptureQueriesContext(connection) as ctx:
        ingest_messages(c4, [to_inbound(m) for m in msgs[-40:-20]])
    out["ingest_batch20_queries"] = len(ctx.captured_queries)

    # calibration: one round trip, and one small write with its commit
    samples, writes = [], []
    with connection.cursor() as cursor:
        for _ in range(count):
            t0 = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            samples.append(time.perf_counter() - t0)
        for _ in range(max(20, count // 4)):
            t0 = time.perf_counter()
            with transaction.atomic():
                Connector.objects.filter(pk=c4.pk).update(poll_interval_seconds=F("poll_interval_seconds") + 1)
            writes.append(time.perf_counter() - t0)
    out["db_roundtrip_ms"] = _median_ms(samples)
    out["db_write_commit_ms"] = _median_ms(writes)
    return out


# --- Connectors ---------------------------------------------------------------------------------
def make_webhook_connector(slug: str):
    from listening.models import Connector

    connector = Connector(kind="webhook", name=f"Bench {slug}", slug=slug, config={"channel": "web"})
    connector.credentials = {"signing_secret": SECRET}
    connector.save()
    return connector


def prefill_history(connector, count: int) -> float:
    """Give `connector` `count` already-stored messages from 1,000 past contacts in 5,000 threads
    (set-based SQL, not timed), as any connector has after some weeks in production, then ANALYZE.
    Returns the seconds it took."""
    from django.db import connection

    prefix = f"hist{connector.pk}-u"
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO listening_contact (channel, external_id, handle, display_name, profile_url, email,"
            " email_verified, phone, phone_verified, first_seen_at, last_seen_at, message_count)"
            " SELECT 'web', %s || g, '', 'Past customer ' || g, '', '', false, '', false, now(), now(), 0"
            " FROM generate_series(0, 999) g", [prefix])
        cursor.execute("SELECT min(id) FROM listening_contact WHERE channel = 'web' AND external_id = %s",
                       [f"{prefix}0"])
        first_contact = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO listening_conversation (connector_id, channel, external_id, subject, contact_id,"
            " started_at, last_message_at, message_count)"
            " SELECT %s, 'web', 'hist-t' || g, '', %s + g %% 1000, now() - interval '30 days',"
            " now() - interval '1 day', 0 FROM generate_series(0, 4999) g", [connector.pk, first_contact])
        cursor.execute("SELECT min(id) FROM listening_conversation WHERE connector_id = %s", [connector.pk])
        first_conversation = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO listening_message (connector_id, external_id, channel, direction, conversation_id,"
            " author_id, text, url, sent_at, received_at, parent_external_id, raw, raw_truncated, ingest_batch)"
            " SELECT %s, 'hist-m' || g, 'web', 'in', %s + g %% 5000, %s + g %% 1000,"
            " 'An older message, number ' || g || ', about the order tracking page', '',"
            " now() - interval '30 days' + g * interval '1 second', now() - interval '30 days', '',"
            " jsonb_build_object('id', 'hist-m' || g), false, gen_random_uuid()"
            " FROM generate_series(0, %s) g",
            [connector.pk, first_conversation, first_contact, count - 1])
        cursor.execute("ANALYZE listening_message")
        cursor.execute("ANALYZE listening_conversation")
        cursor.execute("ANALYZE listening_contact")
    return time.perf_counter() - t0


# --- File import --------------------------------------------------------------------------------
def write_csv(path: Path, messages: list[dict]) -> None:
    """An export the way a previous tool writes one: its own column names, a reply column."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message_id", "body", "customer_id", "customer_name", "created_at", "conversation",
                         "reply_to"])
        for m in messages:
            writer.writerow([m["id"], m["text"], m["author"]["id"], m["author"]["name"], m["sent_at"],
                             m.get("thread_id", ""), m.get("in_reply_to", "")])


CSV_MAPPING = {"id": "message_id", "text": "body", "author": "customer_id", "author_name": "customer_name",
               "sent_at": "created_at", "thread": "conversation", "in_reply_to": "reply_to"}


def rows_from_csv(path: Path, limit: int) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if i >= limit:
                return
            yield row


def naive_import(connector, path: Path, limit: int) -> int:
    """The naive import: read a row, build the message, store it with one ORM save. Rows/s."""
    from bench.naive import store_naive
    from listening.connectors.base import InboundAuthor, InboundMessage

    stored = 0
    for row in rows_from_csv(path, limit):
        message = InboundMessage(
            external_id=row["message_id"], text=row["body"],
            author=InboundAuthor(external_id=row["customer_id"], display_name=row["customer_name"]),
            sent_at=datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")),
            channel="import", thread_id=row["conversation"], parent_external_id=row["reply_to"], raw=dict(row),
        )
        stored += store_naive(connector, message)
    return stored


def run_import(args, tmp: Path, figures: dict[str, Any], table: list[tuple[str, str, str]]) -> None:
    from listening.models import Connector, Message

    try:
        from listening.importing import import_file
    except ImportError:
        raise BenchFailure("listening.importing.import_file is not available; cannot run the import part") from None

    rows = args.import_rows
    naive_rows = min(args.naive_import_rows, rows)
    messages = make_messages(rows, "imp", seed=11)
    path = tmp / "messages.csv"
    t0 = time.perf_counter()
    write_csv(path, messages)
    gen_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6

    connector = Connector(kind=args.import_kind, name="Bench import", slug="bench-import", config={})
    connector.save()
    marks: list[tuple[int, float]] = []  # (rows, seconds) after each batch: does it slow down as the table grows?
    extra = {}
    if "progress" in inspect.signature(import_file).parameters:
        extra["progress"] = lambda running: marks.append((running.rows, time.perf_counter() - t0))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    report = import_file(connector, path, fmt="csv", mapping=CSV_MAPPING, batch_size=args.import_batch, **extra)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stored = Message.objects.filter(connector=connector).count()
    if report.rejected or report.created != rows or stored != rows:
        raise BenchFailure(f"import: {rows} rows, report {report}, {stored} stored"
                           + (f", first errors: {report.errors[:3]}" if getattr(report, "errors", None) else ""))

    # Same file again: everything must be a duplicate.
    t1 = time.perf_counter()
    again = import_file(connector, path, fmt="csv", mapping=CSV_MAPPING, batch_size=args.import_batch)
    again_s = time.perf_counter() - t1
    if again.created or again.duplicates != rows or Message.objects.filter(connector=connector).count() != rows:
        raise BenchFailure(f"import replay: expected {rows} duplicates and nothing new, report {again}")

    naive_connector = Connector(kind=args.import_kind, name="Bench naive import", slug="bench-import-naive", config={})
    naive_connector.save()
    # Fresh ids, same shape: the naive path must not meet the rows above.
    naive_path = tmp / "naive.csv"
    write_csv(naive_path, make_messages(naive_rows, "nimp", seed=11))
    t0 = time.perf_counter()
    naive_stored = naive_import(naive_connector, naive_path, naive_rows)
    naive_s = time.perf_counter() - t0
    if naive_stored != naive_rows:
        raise BenchFailure(f"naive import stored {naive_stored} of {naive_rows} rows")

    figures["import_rows"] = rows
    figures["import_rows_per_s"] = round(rows / seconds, 1)
    figures["import_seconds"] = round(seconds, 2)
    figures["import_cpu_s"] = round(cpu, 2)
    figures["import_replay_rows_per_s"] = round(rows / again_s, 1)
    figures["import_naive_rows"] = naive_rows
    figures["import_naive_rows_per_s"] = round(naive_rows / naive_s, 1)
    figures["import_ratio_vs_naive"] = round(figures["import_rows_per_s"] / figures["import_naive_rows_per_s"], 2)
    table.append(("import: CSV generated", f"{rows:,} rows, {size_mb:.1f} MB", f"{gen_s:.1f} s"))
    table.append((f"import: import_file (batch {args.import_batch})", f"{figures['import_rows_per_s']:,.0f} rows/s",
                  f"{seconds:.1f} s wall, {cpu:.1f} s bench-process CPU"))
    if len(marks) >= 10:
        fifth = len(marks) // 5
        first = marks[fifth - 1][0] / marks[fifth - 1][1]
        last_rows = marks[-1][0] - marks[-fifth - 1][0]
        last = last_rows / (marks[-1][1] - marks[-fifth - 1][1])
        figures["import_first_fifth_rows_per_s"] = round(first, 1)
        figures["import_last_fifth_rows_per_s"] = round(last, 1)
        trend = "slower at the end: per-batch cost grows with the table" if last < 0.8 * first else "steady"
        table.append(("import: first / last fifth of the file", f"{first:,.0f} / {last:,.0f} rows/s", trend))
    table.append(("import: same file again (all duplicates)", f"{figures['import_replay_rows_per_s']:,.0f} rows/s",
                  f"{again_s:.1f} s"))
    table.append(("import: naive, one save per row", f"{figures['import_naive_rows_per_s']:,.0f} rows/s",
                  f"{naive_rows:,} rows in {naive_s:.1f} s"))
    table.append(("import: ratio import_file / naive", f"{figures['import_ratio_vs_naive']:.1f}x", ""))


# --- Main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="messages per webhook phase (default 3000, quick 800)")
    parser.add_argument("--quick", action="store_true", help="small volumes, about a minute")
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight (default 16)")
    parser.add_argument("--batch", type=int, default=20, help="messages per batched delivery (default 20)")
    parser.add_argument("--workers", type=int, default=2,
                        help="Daphne processes sharing the port through SO_REUSEPORT (default 2, one per core)")
    parser.add_argument("--import-rows", type=int, help="CSV rows to import (default 100000, quick 10000)")
    parser.add_argument("--naive-import-rows", type=int, help="rows for the naive import (default 2000, quick 1000)")
    parser.add_argument("--import-batch", type=int, default=1000, help="import_file batch_size (default 1000)")
    parser.add_argument("--import-kind", default="import", help="connector kind for imports (default 'import')")
    parser.add_argument("--history", type=int, help="messages already stored on the connector of the history "
                        "phase (default 50000, quick 10000)")
    parser.add_argument("--floor-requests", type=int, default=1500,
                        help="GET /healthz requests that measure the HTTP stack alone (default 1500)")
    parser.add_argument("--history-messages", type=int, default=600,
                        help="deliveries sent to that connector (default 600)")
    parser.add_argument("--db-conn", choices=["shipped", "close", "persistent"], default="shipped",
                        help="database connections of the servers, see bench/server_settings.py (default "
                        "shipped: the product's pool)")
    parser.add_argument("--profile", action="store_true",
                        help="sample one server process with py-spy during the single-message phase and print "
                        "where its time goes (py-spy on PATH or in a PYTHONPATH entry's bin/)")
    parser.add_argument("--client", choices=["lean", "httpx"], default="lean",
                        help="load generator: lean (requests built and signed before the run, written on kept-alive "
                        "asyncio streams; default) or httpx (builds and signs each request as it goes, the earlier "
                        "generator)")
    parser.add_argument("--compare-ref", default="",
                        help="also serve this git commit (a worktree, same database and client) and compare its "
                        "single-message deliveries and /healthz floor with this checkout's, in alternating rounds")
    parser.add_argument("--compare-server", choices=["", "uvicorn"], default="",
                        help="instead of another commit, serve this checkout with uvicorn (httptools, uvloop; "
                        "installed, or on PYTHONPATH) next to Daphne, and compare them the same way")
    parser.add_argument("--compare-rounds", type=int, default=3,
                        help="rounds of --compare-ref or --compare-server (default 3)")
    parser.add_argument("--skip-import", action="store_true", help="webhook part only")
    parser.add_argument("--skip-webhook", action="store_true", help="import part only")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB_URL),
                        help=f"bench database, created and dropped; its name must contain 'bench' "
                        f"(default {DEFAULT_DB_URL})")
    parser.add_argument("--timeout", type=int, default=540, help="hard limit for the whole run, seconds")
    args = parser.parse_args(argv)
    args.messages = args.messages or (800 if args.quick else 3000)
    args.import_rows = args.import_rows or (10_000 if args.quick else 100_000)
    args.naive_import_rows = args.naive_import_rows or (1000 if args.quick else 2000)
    args.history = args.history if args.history is not None else (10_000 if args.quick else 50_000)
    args.probe = 100 if args.quick else 200
    return args


def bench_env(db_url: str, db_conn: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "DATABASE_URL": db_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "CXM_CREDENTIALS_KEYS": Fernet.generate_key().decode(),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "CXM_SSL_REDIRECT": "0",  # the bench speaks plain HTTP to Daphne, with no TLS proxy in front
        "CELERY_TASK_ALWAYS_EAGER": "1",
        # Ingestion only: eager classification would run the models inside the web process,
        # which a deployment never does (workers do; bench/classify.py measures them).
        "CXM_CLASSIFY_ON_INGEST": "0",
        "LOG_LEVEL": "WARNING",
        "BENCH_DB_CONN": db_conn,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    })
    return env


def webhook_phase(name: str, servers: Servers, connector, messages: list[dict], batch: int,
                  concurrency: int, timeout_s: float, hook: str = "hooks", already: int = 0) -> LoadResult:
    bodies = bodies_single(messages) if batch == 1 else bodies_batched(messages, batch)
    result = run_load(servers, f"/{hook}/{connector.slug}/", bodies, len(messages), concurrency, timeout_s)
    check_load(result, len(messages), 0, name)
    expected = [m["id"] for m in messages] + [f"hist-m{i}" for i in range(already)]
    check_stored(connector, expected, name)
    return result


def _load_rows(label: str, r: LoadResult, workers: int, unit: str = "msgs/s") -> list[tuple[str, str, str]]:
    cores = r.seconds * (os.cpu_count() or 1)
    what = f"{r.deliveries:,} requests" if unit == "req/s" else f"{r.messages:,} msgs in {r.deliveries:,} deliveries"
    return [
        (label, f"{r.msgs_per_s:,.0f} {unit}",
         f"{what}, {r.seconds:.1f} s; "
         f"latency p50 {r.pct(0.5):.1f} ms, p95 {r.pct(0.95):.1f} ms"),
        ("", "", f"CPU: client {r.cpu_client / r.seconds:.0%} ({r.cpu_client * 1000 / r.deliveries:.2f} ms per "
                 f"request), {workers} daphne "
                 f"{r.cpu_servers / r.seconds:.0%}, rest (PostgreSQL, other) "
                 f"{max(0.0, r.cpu_machine - r.cpu_client - r.cpu_servers) / r.seconds:.0%} of one core; "
                 f"machine {r.cpu_machine / cores:.0%} busy; requests per worker {r.per_worker}"),
        *([("", "", f"5xx or broken deliveries retried: {r.retries}; in the server logs: "
                    + (", ".join(f"{n} {name}" for name, n in r.server_errors.items() if n) or "no known cause"))]
          if r.retries else []),
    ]


def run_webhook(args, env: dict[str, str], tmp: Path, servers: list[Servers], probe: dict[str, Any],
                figures: dict[str, Any], table: list[tuple[str, str, str]]) -> None:
    from django.db import connections

    phase_timeout = max(60.0, args.messages / 10)  # below 10 msgs/s we call it hung
    n, c, w = args.messages, args.concurrency, args.workers
    singles = make_messages(n, "s", seed=1)
    batched = make_messages(n, "b", seed=2)
    naive = make_messages(n, "n", seed=3)
    warm = make_messages(200, "w", seed=4)
    hook_single, hook_batched = make_webhook_connector("bench-single"), make_webhook_connector("bench-batched")
    hook_naive, hook_warm = make_webhook_connector("bench-naive"), make_webhook_connector("bench-warm")
    hook_warm_naive = make_webhook_connector("bench-warm-naive")
    hook_history = make_webhook_connector("bench-history")
    history_n = min(n, args.history_messages)
    history_msgs = make_messages(history_n, "h", seed=5)
    print(f"prefilling {args.history:,} stored messages on a connector", flush=True)
    prefill_s = prefill_history(hook_history, args.history)
    connections.close_all()  # the servers get the database to themselves while measured

    product = Servers("bench.server_settings", w, env, tmp)
    servers.append(product)
    print(f"starting {w} daphne worker(s) (cxm.asgi:application, DEBUG=0)", flush=True)
    product.start()
    print(f"  listening on 127.0.0.1:{product.port}; warming up", flush=True)
    run_load(product, f"/hooks/{hook_warm.slug}/", bodies_single(warm), len(warm), c, 60)
    print(f"HTTP floor: {args.floor_requests} GET /healthz (no database) at concurrency {c}", flush=True)
    floor = run_load(product, "/healthz", [None] * args.floor_requests, args.floor_requests, c, 60)

    print(f"webhook, single-message deliveries: {n} at concurrency {c}", flush=True)
    spy = Profiler.start(product.pids[0], tmp, seconds=8) if args.profile else None
    single = webhook_phase("webhook single", product, hook_single, singles, 1, c, phase_timeout)
    if spy:
        figures["_profile"] = spy.finish()
    print(f"webhook, batched deliveries of {args.batch}: {n} messages", flush=True)
    batch = webhook_phase("webhook batched", product, hook_batched, batched, args.batch, c, phase_timeout)

    print(f"webhook, single-message deliveries to the connector holding {args.history:,} messages: "
          f"{history_n}", flush=True)
    history = webhook_phase("webhook single, with history", product, hook_history, history_msgs, 1, c,
                            phase_timeout, already=args.history)

    replay_count = min(400, n)
    print(f"webhook, replaying {replay_count} delivered messages (dedupe check)", flush=True)
    replay = run_load(product, f"/hooks/{hook_single.slug}/", bodies_single(singles[:replay_count]),
                      replay_count, c, phase_timeout)
    check_load(replay, 0, replay_count, "webhook replay")
    check_stored(hook_single, [m["id"] for m in singles], "webhook replay")
    product.stop()

    naive_servers = Servers("bench.naive_settings", w, env, tmp)
    servers.append(naive_servers)
    print(f"naive baseline: {w} daphne worker(s) with bench.naive_settings (adds /naive-hooks/)", flush=True)
    naive_servers.start()
    run_load(naive_servers, f"/naive-hooks/{hook_warm_naive.slug}/", bodies_single(warm), len(warm), c, 60)
    print(f"naive webhook, single-message deliveries: {n} at concurrency {c}", flush=True)
    naive_result = webhook_phase("naive webhook", naive_servers, hook_naive, naive, 1, c, phase_timeout,
                                 hook="naive-hooks")
    naive_servers.stop()

    figures.update({
        "webhook_messages": n,
        "http_floor_req_per_s": round(floor.msgs_per_s, 1),
        "http_floor_p50_ms": round(floor.pct(0.5), 2),
        "client": CLIENT,
        "http_floor_client_cpu_ms_per_req": round(floor.cpu_client * 1000 / floor.deliveries, 3),
        "webhook_client_cpu_ms_per_delivery": round(single.cpu_client * 1000 / single.deliveries, 3),
        "http_floor_server_cpu_ms_per_req": round(floor.cpu_servers * 1000 / floor.deliveries, 3),
        "webhook_server_cpu_ms_per_delivery": round(single.cpu_servers * 1000 / single.deliveries, 3),
        "ratio_webhook_vs_http_floor": round(single.msgs_per_s / floor.msgs_per_s, 3),
        "webhook_msgs_per_s": round(single.msgs_per_s, 1),
        "webhook_p50_ms": round(single.pct(0.5), 2),
        "webhook_p95_ms": round(single.pct(0.95), 2),
        "webhook_batch_size": args.batch,
        "webhook_batched_msgs_per_s": round(batch.msgs_per_s, 1),
        "webhook_batched_p50_ms": round(batch.pct(0.5), 2),
        "webhook_batched_p95_ms": round(batch.pct(0.95), 2),
        "webhook_replay_deliveries_per_s": round(replay.deliveries_per_s, 1),
        "webhook_history_stored": args.history,
        "webhook_history_msgs_per_s": round(history.msgs_per_s, 1),
        "webhook_history_p50_ms": round(history.pct(0.5), 2),
        "webhook_history_p95_ms": round(history.pct(0.95), 2),
        "webhook_naive_msgs_per_s": round(naive_result.msgs_per_s, 1),
        "webhook_naive_p50_ms": round(naive_result.pct(0.5), 2),
        "webhook_naive_p95_ms": round(naive_result.pct(0.95), 2),
        "webhook_retries": single.retries,
        "webhook_batched_retries": batch.retries,
        "webhook_batched_deadlocks": batch.server_errors["deadlocks"],
        "webhook_naive_retries": naive_result.retries,
    })
    figures["ratio_webhook_vs_naive"] = round(single.msgs_per_s / naive_result.msgs_per_s, 2)
    figures["ratio_webhook_batched_vs_naive"] = round(batch.msgs_per_s / naive_result.msgs_per_s, 2)
    figures["ratio_webhook_batched_vs_single"] = round(batch.msgs_per_s / single.msgs_per_s, 2)
    table += _load_rows("HTTP floor: GET /healthz, no database", floor, w, unit="req/s")
    table += _load_rows("webhook: single-message deliveries", single, w)
    table += _load_rows(f"webhook: batched, {args.batch} msgs/delivery", batch, w)
    table += _load_rows(f"webhook: single, connector with {args.history // 1000}k msgs", history, w)
    table.append(("", "", f"(history prefilled by SQL in {prefill_s:.1f} s, not timed; "
                          f"ratio to fresh connector {history.msgs_per_s / single.msgs_per_s:.2f}x)"))
    table.append(("webhook: replay of delivered messages", f"{replay.deliveries_per_s:,.0f} deliveries/s",
                  f"{replay_count} all answered duplicate, nothing stored twice"))
    table += _load_rows("naive webhook: get_or_create + save()", naive_result, w)
    table.append(("webhook: ratio single / naive", f"{figures['ratio_webhook_vs_naive']:.2f}x", ""))
    table.append(("webhook: ratio batched / naive", f"{figures['ratio_webhook_batched_vs_naive']:.2f}x", ""))


def run_compare(args, env: dict[str, str], tmp: Path, servers: list[Servers], figures: dict[str, Any],
                table: list[tuple[str, str, str]]) -> None:
    """Single-message deliveries and the /healthz floor through this checkout's servers and through
    `--compare-ref`'s (a git worktree of that commit, same database, same client), in alternating
    rounds so that both see the same load on a shared machine."""
    from django.db import connections

    worktree = tmp / "compare-ref"
    if args.compare_server:  # this checkout under two servers
        sides = {"ref": Servers("bench.server_settings", args.workers, env, tmp),
                 "head": Servers("bench.server_settings", args.workers, env, tmp, tag="-uvicorn", server="uvicorn")}
        names = {"ref": "daphne", "head": args.compare_server}
    else:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(worktree), args.compare_ref],
                       check=True, timeout=120)
        sides = {"ref": Servers("bench.server_settings", args.workers, env, tmp, root=worktree, tag="-ref"),
                 "head": Servers("bench.server_settings", args.workers, env, tmp)}
        names = {"ref": args.compare_ref, "head": "this checkout"}
    try:
        hooks = {side: make_webhook_connector(f"cmp-{side}") for side in sides}
        rounds, n, c = args.compare_rounds, args.messages, args.concurrency
        msgs = {side: make_messages(n * rounds, f"cmp{side}", seed=21 + i) for i, side in enumerate(sides)}
        warm = {side: make_messages(100, f"cmpw{side}", seed=31 + i) for i, side in enumerate(sides)}
        warm_hooks = {side: make_webhook_connector(f"cmp-warm-{side}") for side in sides}
        connections.close_all()
        results: dict[str, dict[str, list[LoadResult]]] = {side: {"floor": [], "single": []} for side in sides}
        for side, srv in sides.items():
            servers.append(srv)
            print(f"compare: starting {args.workers} {srv.server} worker(s) for {side} ({names[side]})", flush=True)
            srv.start()
            run_load(srv, f"/hooks/{warm_hooks[side].slug}/", bodies_single(warm[side]), 100, c, 60)
        for r in range(rounds):
            for side, srv in sides.items():
                print(f"compare round {r + 1}/{rounds}, {side}: floor, then {n} single deliveries", flush=True)
                results[side]["floor"].append(run_load(srv, "/healthz", [None] * args.floor_requests,
                                                       args.floor_requests, c, 60))
                part = msgs[side][r * n : (r + 1) * n]
                result = run_load(srv, f"/hooks/{hooks[side].slug}/", bodies_single(part), n, c, max(60.0, n / 10))
                check_load(result, n, 0, f"compare {side}")
                results[side]["single"].append(result)
        for side, srv in sides.items():
            check_stored(hooks[side], [m["id"] for m in msgs[side]], f"compare {side}")
            srv.stop()
        out: dict[str, Any] = {"ref_name": names["ref"], "head_name": names["head"], "rounds": rounds,
                               "load_avg": round(os.getloadavg()[0], 2)}
        for side in sides:
            floor = statistics.median(x.msgs_per_s for x in results[side]["floor"])
            single = statistics.median(x.msgs_per_s for x in results[side]["single"])
            cpu = statistics.median(x.cpu_servers * 1000 / x.deliveries for x in results[side]["single"])
            floor_cpu = statistics.median(x.cpu_servers * 1000 / x.deliveries for x in results[side]["floor"])
            p50 = statistics.median(x.pct(0.5) for x in results[side]["single"])
            out[side] = {"http_floor_req_per_s": round(floor, 1), "webhook_msgs_per_s": round(single, 1),
                         "ratio_webhook_vs_floor": round(single / floor, 3),
                         "server_cpu_ms_per_delivery": round(cpu, 2), "webhook_p50_ms": round(p50, 1),
                         "server_cpu_ms_per_floor_request": round(floor_cpu, 2),
                         # What the servers' CPU allows, the way the floor is what HTTP alone allows.
                         "cpu_ratio_webhook_vs_floor": round(floor_cpu / cpu, 3)}
            label = f"compare, {names[side]}"
            table.append((f"{label}: single / floor", f"{single / floor:.0%}",
                          f"median of {rounds} rounds: {single:,.0f} msgs/s vs /healthz {floor:,.0f} req/s; "
                          f"{cpu:.1f} ms {sides[side].server} CPU per delivery vs {floor_cpu:.2f} per /healthz "
                          f"({floor_cpu / cpu:.0%}); p50 {p50:.0f} ms"))
        figures["compare"] = out
    finally:
        if not args.compare_server:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], timeout=120,
                           check=False)


def _probe_rows(probe: dict[str, Any]) -> list[tuple[str, str, str]]:
    rtt = probe["db_roundtrip_ms"]
    return [
        ("calibration: SELECT 1 round trip", f"{rtt:.3f} ms", "this run's cost of one query, for scale"),
        ("calibration: 1-row UPDATE + COMMIT", f"{probe['db_write_commit_ms']:.3f} ms",
         "WAL flush on commit (synchronous_commit=on)"),
        ("in-process: receive_webhook, 1 msg", f"{probe['webhook_action_single_ms']:.2f} ms/call",
         f"{probe['webhook_action_single_queries']} queries (lookup, HMAC, parse, ingest): "
         f"{probe['webhook_action_single_ms'] / rtt:.0f} round trips' worth"),
        ("in-process: ingest_messages, 1 msg", f"{probe['ingest_single_ms']:.2f} ms/call",
         f"{probe['ingest_single_queries']} queries"),
        ("in-process: ingest_messages, 20 msgs", f"{probe['ingest_batch20_ms_per_msg']:.2f} ms/msg",
         f"{probe['ingest_batch20_queries']} queries per call of 20"),
        ("in-process: naive store, 1 msg", f"{probe['naive_single_ms']:.2f} ms/call",
         f"{probe['naive_single_queries']} queries"),
    ]


def install_time_limit(seconds: int) -> None:
    """Fail the whole run with BenchTimeout after `seconds`, and turn SIGTERM into a clean exit
    (so the finally blocks stop the servers)."""

    def on_alarm(signum, frame):
        raise BenchTimeout(f"the whole run exceeded --timeout {seconds}s")

    def on_term(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = bench_env(args.database_url, args.db_conn)
    os.environ.update(env)
    for key in ("REDIS_URL",):
        os.environ.pop(key, None)
    # In-process work (probes, import) runs under the same settings as the servers.
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.server_settings"

    install_time_limit(args.timeout)
    global CLIENT
    CLIENT = args.client

    servers: list[Servers] = []
    created_db = False
    figures: dict[str, Any] = {}
    table: list[tuple[str, str, str]] = []
    started = time.perf_counter()
    tmp_ctx = tempfile.TemporaryDirectory(prefix="cxm-bench-")
    tmp = Path(tmp_ctx.name)
    try:
        print(f"bench database {urlsplit(args.database_url).path.lstrip('/')}: creating and migrating", flush=True)
        create_database(args.database_url)
        created_db = True
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)

        print(f"in-process probes ({args.probe} calls each)", flush=True)
        probe = probe_in_process(args.probe)
        figures["probe"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in probe.items()
                            if k != "webhook_action_query_sql"}
        figures.update({"workers": args.workers, "concurrency": args.concurrency, "db_conn": args.db_conn,
                        "cores": os.cpu_count()})
        connections.close_all()

        if args.compare_ref or args.compare_server:
            run_compare(args, env, tmp, servers, figures, table)
        if not args.skip_webhook:
            run_webhook(args, env, tmp, servers, probe, figures, table)
        table += _probe_rows(probe)

        if not args.skip_import:
            print(f"file import: {args.import_rows:,} CSV rows, naive over {args.naive_import_rows:,}", flush=True)
            run_import(args, tmp, figures, table)

        figures["total_seconds"] = round(time.perf_counter() - started, 1)
        profile = figures.pop("_profile", None)
        print_table(table, args, probe)
        if profile:
            print("py-spy, one server process during the single-message phase (inclusive share of samples, "
                  "all threads):")
            for line in profile:
                print(f"  {line}")
        goals = {}
        if "webhook_msgs_per_s" in figures:
            goals["webhook_goal_500_met"] = figures["webhook_msgs_per_s"] >= 500
        if "import_rows_per_s" in figures:
            goals["import_goal_5000_met"] = figures["import_rows_per_s"] >= 5000
        figures.update(goals)
        print("BENCH ingest " + json.dumps(figures, sort_keys=True))
        return 0
    except (BenchFailure, BenchTimeout) as exc:
        for s in servers:
            if s.procs:
                print(s.log_tail(), file=sys.stderr)
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        for s in servers:
            s.stop()
        if created_db:
            drop_bench_database(args.database_url)
        tmp_ctx.cleanup()


def print_table(table: list[tuple[str, str, str]], args: argparse.Namespace, probe: dict[str, Any]) -> None:
    width = max(len(row[0]) for row in table)
    value_width = max(len(row[1]) for row in table)
    print()
    print(f"CXM ingestion bench: {os.cpu_count()} cores, {args.workers} daphne worker(s) on one port "
          f"(SO_REUSEPORT), concurrency {args.concurrency}, PostgreSQL, DEBUG=0")
    print("-" * (width + value_width + 60))
    for name, value, detail in table:
        print(f"{name:<{width}}  {value:>{value_width}}  {detail}")
    print("-" * (width + value_width + 60))
    print("queries of one single-message webhook delivery (in-process):")
    for sql in probe["webhook_action_query_sql"]:
        print(f"  {sql}")


if __name__ == "__main__":
    sys.exit(main())
