"""bench/e2e.py's deployment: the processes it starts (Daphne, a learning and a default Celery
worker, each in its own process group), their CPU accounting from /proc (per role: web, workers,
PostgreSQL's processes for the bench database, Redis, the bench itself), and the fixture (a team,
an agent with room for every case, its session cookie, the webhook connector)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import (  # noqa: E402
    BenchFailure,
    Servers,
    _machine_busy,
    _proc_cpu,
    bench_env,
    make_webhook_connector,
)

PASSWORD = secrets.token_urlsafe(16)


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
    root: Path = REPO  # the checkout it runs (bench/signals.py's BENCH_ROOT); Celery imports from its cwd

    def start(self) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "cxm", "worker", "-n", f"{self.name}@%h", "-l", "warning",
               "--without-heartbeat", "--without-mingle", "--without-gossip", *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env={**self.env, "DJANGO_SETTINGS_MODULE": "cxm.settings"},
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
