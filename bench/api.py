#!/usr/bin/env python
"""API benchmark: list and read latency for cases and messages over the dashboards' generated
database (1,000,000 inbound messages by default), keyset pages against the naive OFFSET page, and
webhook fan-out to a local receiver against a naive sequential sender, in the same run.

    .venv/bin/python bench/api.py                       # reuses (or generates) cxm_bench_dashboards, 1M messages
    .venv/bin/python bench/api.py --messages 100000 --database-url postgresql://.../cxm_bench_api_small

What it does:
  1. the same seeded data as bench/dashboards.py (teams, agents, connectors, conversations,
     messages, classifications, cases, replies), made once (bench.dashboards.ensure_data) and
     reused without waiting for the dashboards' rollups, which the API does not read;
  2. a token for the admin (sees everything) and one for a brand manager of one team;
  3. in-process through Django's full request stack (test client: middleware, DRF, serializers,
     problem+json), --requests times each: GET /api/v1/cases and /messages (first page, a page
     deep in the table by its keyset cursor, a filtered page), GET /cases/{id} and /messages/{id};
     the naive baseline pages the same querysets with Django's Paginator (COUNT(*) + OFFSET) at the
     same depth;
  4. webhook fan-out: --subscriptions subscriptions x --events events, sent by --senders threads
     (standing in for Celery workers) to a local HTTP receiver that answers 204; deliveries per
     second and p95 from the event's commit to its receipt; the naive baseline sends the same
     deliveries one after another, each with a new HTTP client (no connection reuse);
  5. prints a table and, last, `BENCH api {json}`. Goals (issue 17): list p95 <= 100 ms, fan-out
     >= 200 deliveries/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import pct, print_table  # noqa: E402
from bench.dashboards import DEFAULT_DB_URL, ensure_data, setup_django  # noqa: E402
from bench.ingest import BenchTimeout, install_time_limit  # noqa: E402

GOAL_LIST_P95_MS = 100.0
GOAL_FANOUT_PER_S = 200.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DASHBOARDS_DATABASE_URL", DEFAULT_DB_URL))
    parser.add_argument("--requests", type=int, default=60, help="timed requests per route (default 60)")
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--senders", type=int, default=16, help="sending threads (Celery workers' stand-ins)")
    parser.add_argument("--only", choices=["latency", "webhooks"], help="time one half (both by default)")
    parser.add_argument("--timeout", type=int, default=3600)
    return parser.parse_args(argv)


def _cursor(position: int) -> str:
    """DRF CursorPagination's cursor for "after id `position`" (newest first)."""
    return base64.b64encode(f"p={position}".encode()).decode()


def _time(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def api_latency(args) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from listening.models import Message
    from responses import access
    from responses.api import tokens
    from responses.models import ApiToken

    settings.CXM_API_RATE = "100000000/min"
    # In process, no proxy: the test client's host, and plain HTTP (no redirect to HTTPS).
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.SECURE_SSL_REDIRECT = False
    users = get_user_model().objects
    people = {"admin": users.get(username="admin"),
              "manager": users.filter(username__startswith="manager-").order_by("username").first()}
    ApiToken.objects.filter(name="bench").delete()
    client = Client()
    figures: dict = {}
    for who, user in people.items():
        secret = tokens.create_token(user, "bench", ["cases:read", "messages:read"]).secret
        headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
        cases = access.visible_cases(user).order_by("-id")
        messages = Message.objects.filter(connector_id__in=access.connector_ids(user)).order_by("-id")
        for kind, rows in (("cases", cases), ("messages", messages)):
            figures[f"{who}.{kind}"] = _measure(client, headers, kind, rows, args.requests)
    return figures


def _measure(client, headers: dict, kind: str, rows, requests: int) -> dict:
    from django.core.paginator import Paginator

    from responses.api.serializers import CaseSerializer, MessageSerializer

    total = rows.count()
    deep_offset = total // 2
    deep_id = rows.values_list("id", flat=True)[deep_offset]
    some = list(rows.values_list("id", flat=True)[: requests * 7: 7])

    def get(path, query=None):
        response = client.get(f"/api/v1/{path}" + (f"?{urlencode(query)}" if query else ""), **headers)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        return response

    deep_cursor = _cursor(deep_id)
    # Untimed: the first requests of a process pay for imports, URL patterns and the planner's
    # first look, and would be the p95 of whichever route is timed first.
    for _ in range(3):
        get(kind)
    first = _time(lambda: get(kind), requests)
    deep = _time(lambda: get(kind, {"cursor": deep_cursor}), requests)
    # A filter a client would send: negative ones on a channel the data has.
    channel = rows.values_list("channel", flat=True).first()
    query = {"cases": {"status": "resolved", "sentiment": "negative"},
             "messages": {"sentiment": "negative", "channel": channel}}[kind]
    filtered = _time(lambda: get(kind, query), requests)
    ids = iter(some * 2)
    read = _time(lambda: get(f"{kind}/{next(ids)}"), min(requests, len(some)))

    # Naive: the same page the obvious way, COUNT(*) and OFFSET, serialised the same.
    serializer = CaseSerializer if kind == "cases" else MessageSerializer
    base = rows.select_related("assignee") if kind == "cases" else rows
    page_number = deep_offset // 50 + 1

    def naive():
        page = Paginator(base, 50).page(page_number)
        json.dumps(serializer(page.object_list, many=True).data, default=str)

    naive_deep = _time(naive, max(5, requests // 4))
    return {
        "rows": total,
        "list_first_p50_ms": round(pct(first, 0.5), 1), "list_first_p95_ms": round(pct(first, 0.95), 1),
        "list_deep_p50_ms": round(pct(deep, 0.5), 1), "list_deep_p95_ms": round(pct(deep, 0.95), 1),
        "list_filtered_p95_ms": round(pct(filtered, 0.95), 1),
        "read_p50_ms": round(pct(read, 0.5), 1), "read_p95_ms": round(pct(read, 0.95), 1),
        "naive_offset_deep_p50_ms": round(pct(naive_deep, 0.5), 1),
        "naive_offset_deep_p95_ms": round(pct(naive_deep, 0.95), 1),
        "list_per_s": round(1000 / statistics.mean(first), 1),
    }


class Receiver:
    """A local webhook receiver: answers 204 and notes when each delivery id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.arrived[self.headers["X-CXM-Delivery"] or self.headers["X-Naive"]] = time.time()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def fan_out(args) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections, transaction

    from responses import outbound
    from responses.models import WebhookDelivery, WebhookSubscription

    settings.ALLOW_PRIVATE_URLS = True
    receiver = Receiver()
    admin = get_user_model().objects.get(username="admin")
    WebhookSubscription.objects.filter(name__startswith="bench").delete()
    for i in range(args.subscriptions):
        outbound.subscribe(admin, f"bench {i}", receiver.url, ["case.updated"])
    # Each event's deliveries go to the senders as soon as its transaction commits, as on_commit
    # hands them to Celery; the senders stand in for the workers.
    committed: dict[int, float] = {}
    ids: list[int] = []

    def send(delivery_id):
        try:
            outbound.deliver(delivery_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(args.senders) as pool:
        outbound._enqueue = lambda new: [pool.submit(send, i) for i in new]  # noqa: SLF001
        started = time.perf_counter()
        for n in range(args.events):
            with transaction.atomic():
                made = outbound.fan_out("case.updated", {"case": {"id": n}}, order_key=0)
            now = time.time()
            ids.extend(made)
            committed.update(dict.fromkeys(made, now))
        fan_out_s = time.perf_counter() - started
    send_s = time.perf_counter() - started
    event_ids = dict(WebhookDelivery.objects.filter(pk__in=ids).values_list("pk", "event_id"))
    latencies = [(receiver.arrived[str(event_ids[i])] - committed[i]) * 1000 for i in ids
                 if str(event_ids[i]) in receiver.arrived]
    delivered = WebhookDelivery.objects.filter(pk__in=ids, status="delivered").count()

    # Naive: one after another in the caller, a new client per request, no pool, no threads.
    import httpx

    naive_n = min(len(ids), 300)
    started = time.perf_counter()
    for i in range(naive_n):
        with httpx.Client(timeout=10) as c:
            c.post(receiver.url, content=json.dumps({"n": i}).encode(), headers={"X-Naive": f"naive-{i}"})
    naive_s = time.perf_counter() - started
    receiver.server.shutdown()
    WebhookSubscription.objects.filter(name__startswith="bench").delete()
    return {"deliveries": len(ids), "delivered": delivered, "fan_out_rows_per_s": round(len(ids) / fan_out_s, 1),
            "deliveries_per_s": round(len(ids) / send_s, 1),
            "commit_to_receipt_p50_ms": round(pct(latencies, 0.5), 1),
            "commit_to_receipt_p95_ms": round(pct(latencies, 0.95), 1),
            "naive_sequential_per_s": round(naive_n / naive_s, 1), "senders": args.senders}


def ensure_api_data(args) -> dict:
    """The dashboards bench's data, without waiting for its rollups: the API reads none. New
    migrations are applied (and the rollups marked stale for bench/dashboards.py, which rebuilds
    them when it next runs); anything else is ensure_data's."""
    from django.core.management import call_command

    from bench.dashboards import read_marker, unapplied_migrations, wanted_marker, write_marker

    marker = read_marker(args.database_url)
    wanted = wanted_marker(args)
    if args.regenerate or not marker or any(marker.get(k) != v for k, v in wanted.items()):
        return ensure_data(args)
    print(f"database: reusing {marker['messages']:,} messages generated {marker['generated_at']}", flush=True)
    pending = unapplied_migrations()
    if pending:
        print(f"  applying new migrations: {', '.join(pending)}", flush=True)
        call_command("migrate", verbosity=0, interactive=False)
        write_marker({**marker, "rollups": None})
    return marker


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_time_limit(args.timeout)
    setup_django(args.database_url)
    try:
        marker = ensure_api_data(args)
        latency = api_latency(args) if args.only != "webhooks" else {}
        webhooks = fan_out(args) if args.only != "latency" else {"deliveries": 0, "delivered": 0,
                                                                 "deliveries_per_s": 0.0}
        rows = [("route", "rows", "first p95", "deep p95", "naive deep p95", "filtered p95", "read p95")]
        for name, f in latency.items():
            rows.append((name, f"{f['rows']:,}", f"{f['list_first_p95_ms']}", f"{f['list_deep_p95_ms']}",
                         f"{f['naive_offset_deep_p95_ms']}", f"{f['list_filtered_p95_ms']}", f"{f['read_p95_ms']}"))
        print_table(f"API over {marker['messages']:,} inbound messages (ms); {os.cpu_count()} cores", rows)
        print(f"webhooks: {webhooks}")
        list_p95 = max((max(f["list_first_p95_ms"], f["list_deep_p95_ms"], f["list_filtered_p95_ms"])
                        for f in latency.values()), default=0.0)
        figures = {"messages": marker["messages"], "latency": latency, "webhooks": webhooks,
                   "worst_list_p95_ms": list_p95,
                   "goal_list_p95_met": list_p95 <= GOAL_LIST_P95_MS,
                   "goal_fanout_met": webhooks["deliveries_per_s"] >= GOAL_FANOUT_PER_S,
                   "load_avg": round(os.getloadavg()[0], 2)}
        print("BENCH api " + json.dumps(figures))
        return 0 if webhooks["delivered"] == webhooks["deliveries"] else 1
    except BenchTimeout as exc:
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
