"""bench/e2e.py's analysis and report: where each message that did not arrive stopped (from the
database), each arrived message's latency split into stages, the printed table and the goal."""

from __future__ import annotations

import os
import statistics
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import pct, print_table  # noqa: E402
from bench.e2e_client import Console, Phase  # noqa: E402

GOAL_P95_MS = 1000.0
GOAL_RATE = 50.0
# Poll interval (3 s) + the consumer's wait for an id not yet visible (5 s) + slack: a stage done
# more recently than this before a drain ended may still be on its way.
IN_FLIGHT_SECONDS = 10.0


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

