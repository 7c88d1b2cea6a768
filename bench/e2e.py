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

The code: this file (arguments, the phases, main), bench/e2e_deploy.py (the processes, their CPU
from /proc, the fixture), bench/e2e_client.py (the console websocket, the load generator, `Phase`)
and bench/e2e_report.py (where messages stopped, the stage split, the report and the goal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import SAMPLE, load_texts  # noqa: E402
from bench.e2e_client import Console, Generator, Phase, Sent, _arrived, _wait_arrivals  # noqa: E402
from bench.e2e_deploy import (  # noqa: E402
    CpuSnapshot,
    Deployment,
    Fixture,
    _cpu_shares,
    e2e_env,
    flush_redis,
    pg_sessions,
    setup_fixture,
)
from bench.e2e_report import (  # noqa: E402
    GOAL_RATE,
    _db_rows_closing,
    db_rows,
    diagnose,
    goal_met,
    print_report,
    stage_breakdown,
)
from bench.ingest import (  # noqa: E402
    BenchFailure,
    BenchTimeout,
    Profiler,
    create_database,
    drop_bench_database,
    install_time_limit,
    make_messages,
)

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_bench_e2e"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
IDLE_SECONDS = 4.0


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
