#!/usr/bin/env python
"""Search benchmark: the console's search (responses.search: tsvector + GIN, scoped, filtered,
grouped by conversation with snippets and matching customers) over the dashboards' generated
database (1,000,000 inbound messages by default), against the naive ILIKE search in the same run.

    .venv/bin/python bench/search.py                     # reuses (or generates) cxm_bench_dashboards, 1M messages
    .venv/bin/python bench/search.py --messages 100000 --database-url postgresql://.../cxm_bench_search_small

What it does:
  1. the same seeded data as bench/dashboards.py (bench.dashboards.generate), made once and reused;
     a database the dashboards bench made is reused as it is; one made here skips the rollups
     (search does not read them; the dashboards bench builds them when it next runs);
  2. ~20 realistic searches (common and rare words, a word being typed, phrases, OR, a word left
     out, other languages, a customer's handle and email), most with filters (status, lane,
     channel, language, assignee, the last N days), each --runs times as an agent of the largest
     team and as an admin (who sees every team), through responses.search.search(): one page of
     20 conversations, their snippets, the matching customers and the capped count;
  3. the naive baseline in the same run: the same scope and filters with every word as
     text ILIKE '%word%', newest 200 matches and the capped count (what one writes without an
     index), --naive-runs times;
  4. prints a table and, last, `BENCH search {json}`. Goal (issue 16): p95 < 300 ms over 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import pct, print_table  # noqa: E402
from bench.dashboards import (  # noqa: E402
    DEFAULT_DB_URL,
    create_database,
    generate,
    read_marker,
    setup_django,
    unapplied_migrations,
    vacuum_analyze,
    wanted_marker,
    write_marker,
)
from bench.ingest import BenchTimeout, install_time_limit  # noqa: E402

GOAL_P95_MS = 300.0
AGENT = "agent5"  # Customer care: WhatsApp, LATAM WhatsApp, Telegram, web chat and forms (~53% of messages)

# (text, filters): what agents type, with the filters they pick.
QUERIES = (
    ("refund", {}),
    ("charged twice", {"status": "active"}),
    ('"money back"', {}),
    ("refu", {"lane": "issue"}),  # typing: the last word is a prefix
    ("cancel subscription", {"days": "30"}),
    ("log in OR locked", {"status": "active"}),
    ("password reset email", {"channel": "whatsapp"}),
    ("order -gift", {"days": "90"}),
    ("Premium", {"lane": "praise"}),
    ("Family plan", {"status": "resolved"}),
    ("Deezer", {}),
    ("outage", {"since": "RECENT"}),
    ("still waiting", {"assignee": "none"}),
    ("problema", {"language": "es"}),
    ("funciona", {"channel": "whatsapp", "language": "pt"}),
    ("ありがとうございます", {}),
    ("Merci", {"language": "fr"}),
    ("user4821", {}),  # a customer's handle
    ("customer9921@mail.example", {}),  # a customer's email
    ("xylophone", {}),  # found nowhere
    ("", {"status": "pending", "lane": "issue"}),  # a saved view without words: cases by filters
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DASHBOARDS_DATABASE_URL", DEFAULT_DB_URL))
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query and persona (default 5)")
    parser.add_argument("--naive-runs", type=int, default=1, help="naive runs per query and persona (default 1)")
    parser.add_argument("--timeout", type=int, default=3600)
    return parser.parse_args(argv)


def ensure(args) -> dict:
    """The generated data: reused when the marker matches, else made (without the rollups)."""
    from django.core.management import call_command
    from django.db import connections

    marker = read_marker(args.database_url)
    wanted = wanted_marker(args)
    name = urlsplit(args.database_url).path.lstrip("/")
    if args.regenerate or not marker or any(marker.get(k) != v for k, v in wanted.items()):
        print(f"database {name}: generating {args.messages:,} messages", flush=True)
        connections.close_all()
        create_database(args.database_url)
        call_command("migrate", verbosity=0, interactive=False)
        marker = {**wanted, **generate(args.messages, args.seed), "rollups": None}
        marker["vacuum_s"] = vacuum_analyze()
        write_marker(marker)
    else:
        print(f"database {name}: reusing {marker['messages']:,} messages generated {marker['generated_at']}",
              flush=True)
        pending = unapplied_migrations()
        if pending:
            started = time.perf_counter()
            call_command("migrate", verbosity=0, interactive=False)
            print(f"  applied {', '.join(pending)} in {time.perf_counter() - started:.1f} s", flush=True)
            marker["vacuum_s"] = vacuum_analyze()
            marker["rollups"] = None  # new migrations: the dashboards bench rebuilds them
            write_marker(marker)
    return marker


def _filters(raw: dict) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    out = dict(raw)
    if out.get("since") == "RECENT":  # a window ending at the data's end (generated up to now): 14 days
        out["since"] = (timezone.localdate() - timedelta(days=14)).isoformat()
    return out


def naive(user, text: str, filters, limit: int = 200) -> int:
    """The same scope and filters, each word as ILIKE '%word%': no index can help."""
    from responses import search

    query = search.parse_query(text)
    rows = search.message_rows(user, search.Query(), filters) if not query.empty else None
    if rows is None:
        return search.count(user, query, filters)
    for group in query.groups:
        for term in group:
            lookup = {"text__icontains": term.text}
            rows = rows.exclude(**lookup) if term.negated else rows.filter(**lookup)
    list(rows.order_by("-sent_at", "-id").values_list("id", "conversation_id")[:limit])
    return rows[:search.COUNT_CAP + 1].count()


def run(args) -> dict:
    from django.contrib.auth import get_user_model

    from responses import search

    users = get_user_model().objects
    people = {"agent": users.get(username=AGENT), "admin": users.get(username="admin")}
    timings: dict[str, list[float]] = {who: [] for who in people}
    naive_timings: dict[str, list[float]] = {who: [] for who in people}
    rows = [("query", "filters", "who", "count", "p50 ms", "max ms", "naive ms")]
    for text, raw in QUERIES:
        filters = search.parse_filters(_filters(raw))
        query = search.parse_query(text)
        for who, user in people.items():
            search.search(user, query, filters)  # warm: the first run pays for cold pages
            took = []
            for _ in range(args.runs):
                started = time.perf_counter()
                results = search.search(user, query, filters)
                took.append((time.perf_counter() - started) * 1000)
            timings[who] += took
            slow = []
            for _ in range(args.naive_runs):
                started = time.perf_counter()
                naive(user, text, filters)
                slow.append((time.perf_counter() - started) * 1000)
            naive_timings[who] += slow
            rows.append((text or "(none)", " ".join(f"{k}={v}" for k, v in raw.items()), who, results.count_label,
                         f"{statistics.median(took):.1f}", f"{max(took):.1f}", f"{statistics.median(slow):.0f}"))
    return {"timings": timings, "naive": naive_timings, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_time_limit(args.timeout)
    setup_django(args.database_url)
    try:
        marker = ensure(args)
        result = run(args)
        print_table(f"Search over {marker['messages']:,} inbound messages; {os.cpu_count()} cores", result["rows"])
        every = [t for ts in result["timings"].values() for t in ts]
        naive_every = [t for ts in result["naive"].values() for t in ts]
        figures = {"messages": marker["messages"], "queries": len(QUERIES), "runs": args.runs}
        for who, took in result["timings"].items():
            figures[f"{who}_p50_ms"] = round(pct(took, 0.5), 1)
            figures[f"{who}_p95_ms"] = round(pct(took, 0.95), 1)
            figures[f"{who}_naive_p50_ms"] = round(pct(result["naive"][who], 0.5), 1)
            figures[f"{who}_naive_p95_ms"] = round(pct(result["naive"][who], 0.95), 1)
        figures["p50_ms"] = round(pct(every, 0.5), 1)
        figures["p95_ms"] = round(pct(every, 0.95), 1)
        figures["max_ms"] = round(max(every), 1)
        figures["naive_p50_ms"] = round(pct(naive_every, 0.5), 1)
        figures["naive_p95_ms"] = round(pct(naive_every, 0.95), 1)
        figures["searches_per_s"] = round(1000 / statistics.mean(every), 1)
        figures["naive_over_search_p50_ratio"] = round(figures["naive_p50_ms"] / max(figures["p50_ms"], 0.01), 1)
        figures["naive_over_search_p95_ratio"] = round(figures["naive_p95_ms"] / max(figures["p95_ms"], 0.01), 1)
        figures["goal_p95_met"] = figures["p95_ms"] < GOAL_P95_MS
        figures["load_avg"] = round(os.getloadavg()[0], 2)
        print("BENCH search " + json.dumps(figures))
        return 0
    except BenchTimeout as exc:
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
