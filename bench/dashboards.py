#!/usr/bin/env python
"""Dashboards benchmark: every Insight panel over 1,000,000 generated messages, against the naive
query over the raw tables in the same run.

    .venv/bin/python bench/dashboards.py                  # 1M messages (generated once, then reused)
    .venv/bin/python bench/dashboards.py --runs 10        # fewer timed runs
    .venv/bin/python bench/dashboards.py --regenerate     # generate the data again
    .venv/bin/python bench/dashboards.py --messages 100000 --database-url postgresql://.../cxm_bench_dash_small

What it does (see bench/README.md, "bench/dashboards.py"):
  1. a dedicated PostgreSQL database (default cxm_bench_dashboards), created and migrated; reused
     when its marker (a comment on the database) says it holds this generator's data for the same
     --messages and --seed, regenerated otherwise or with --regenerate;
  2. generation (seeded): 3 teams with their queues, agents, supervisors, one brand manager per
     team and an admin; 8 connectors over 6 channels; 20 terms (a brand, products, competitors,
     topics); customers and contacts with long-tailed activity; conversations of about 2.4 inbound
     messages (plus the agents' replies as outbound messages) over 180 days with daily and weekly
     seasonality, growth and four bursts (an outage, a campaign, a competitor's price cut, a billing
     glitch); one current classification per inbound message (sentiment, emotion, intent, lane,
     language and topics drawn together, as the model and learning.lanes would give them; 3% with
     an older classification that is no longer current, 0.2% failed); a case for most non-noise
     conversations (team, queue, SLA, assignee, first response, resolution) and its replies. Rows go
     in by COPY, with foreign-key triggers off and secondary indexes built after the load;
  3. the rollups from the raw tables with learning.rollups.rebuild(), then VACUUM ANALYZE;
  4. --runs filter sets drawn from a fixed seed (last 7/30/90/180 days or an older window; hour,
     day or week buckets; with or without channel, connector, team, lane, language and term
     filters; as an admin or as a brand manager of one team); for each, every panel of
     the registry, insight.panels (the rollups), and its reference in bench.insight_raw (the naive query over Message,
     Classification, Case and Reply) is timed and their answers compared;
  5. prints a table (p50 and p95 per panel, naive/rollup ratio, pass against 300 ms p95) and, last,
     `BENCH dashboards {json}`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.classify import pct, print_table  # noqa: E402
from bench.ingest import BenchTimeout, bench_env, create_database, install_time_limit  # noqa: E402

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/cxm_bench_dashboards"
GENERATOR_VERSION = 1  # bump when the generated data changes: older databases are regenerated
GOAL_P95_MS = 300.0
DAYS = 180

# --- The generated world ------------------------------------------------------------------------
TEAMS = (("social", "Social care"), ("care", "Customer care"), ("reviews", "Reviews and ratings"))
QUEUES = (("care", "Care", "issue", 60), ("amplify", "Amplify", "praise", 240),
          ("recover", "Recover", "ambivalence", 120))
AGENTS_PER_TEAM = {"social": 4, "care": 6, "reviews": 2}
LANGS = ("en", "es", "fr", "de", "pt", "nl", "ja")


@dataclass(frozen=True)
class ConnectorSpec:
    slug: str
    name: str
    kind: str
    channel: str
    team: str
    share: float  # of conversations
    languages: dict[str, float]


CONNECTORS = (
    ConnectorSpec("acme-facebook", "Acme on Facebook", "meta", "messenger", "social", 0.20,
                  {"en": 70, "es": 10, "fr": 7, "de": 6, "pt": 4, "nl": 3}),
    ConnectorSpec("acme-instagram", "Acme on Instagram", "meta", "instagram", "social", 0.17,
                  {"en": 65, "es": 12, "pt": 10, "fr": 6, "de": 4, "ja": 3}),
    ConnectorSpec("acme-whatsapp", "Acme WhatsApp", "meta", "whatsapp", "care", 0.19, {"en": 90, "de": 5, "nl": 5}),
    ConnectorSpec("acme-whatsapp-latam", "Acme WhatsApp LATAM", "meta", "whatsapp", "care", 0.08, {"es": 70, "pt": 30}),
    ConnectorSpec("acme-telegram", "Acme Telegram bot", "telegram", "telegram", "care", 0.05,
                  {"en": 50, "de": 20, "nl": 10, "fr": 10, "ja": 10}),
    ConnectorSpec("acme-chat", "Website chat", "webhook", "web", "care", 0.15, {"en": 75, "fr": 10, "de": 10, "nl": 5}),
    ConnectorSpec("acme-helpdesk", "Help centre forms", "webhook", "web", "care", 0.06,
                  {"en": 85, "fr": 5, "de": 5, "es": 5}),
    ConnectorSpec("acme-reviews", "App store reviews", "rss", "feed", "reviews", 0.10,
                  {"en": 60, "ja": 15, "de": 10, "fr": 10, "es": 5}),
)

TERMS = (
    ("Acme", "brand"),
    ("Premium", "product"), ("Family plan", "product"), ("Duo plan", "product"), ("Student plan", "product"),
    ("Acme Connect", "product"), ("Car mode", "product"), ("Podcasts", "product"),
    ("Apple Music", "competitor"), ("YouTube Music", "competitor"), ("Deezer", "competitor"), ("Tidal", "competitor"),
    ("billing", "topic"), ("login", "topic"), ("offline downloads", "topic"), ("ads", "topic"), ("shuffle", "topic"),
    ("lyrics", "topic"), ("outage", "topic"), ("refund", "topic"),
)
T_BRAND, T_PRODUCTS, T_COMPETITORS = 0, range(1, 8), range(8, 12)
T = {name: i for i, (name, _) in enumerate(TERMS)}

# Conversation kinds: what the customer came for. Per channel: issue, question, praise,
# ambivalence, noise.
KINDS = ("issue", "question", "praise", "ambivalence", "noise")
KIND_LANE = ("issue", "issue", "praise", "ambivalence", "noise")
KIND_BY_CHANNEL = {
    "messenger": (.40, .15, .15, .12, .18), "instagram": (.30, .12, .25, .13, .20),
    "whatsapp": (.55, .22, .08, .10, .05), "telegram": (.45, .20, .10, .10, .15),
    "web": (.60, .25, .04, .08, .03), "feed": (.30, .05, .35, .25, .05),
}
# Inbound messages per conversation: geometric, by kind (means 3.0, 2.2, 1.5, 2.4, 1.1).
KIND_CONTINUE = (0.33, 0.45, 0.65, 0.42, 0.88)

INTENTS = ("complaint", "question", "refund_request", "cancellation_request", "order_status", "account_access",
           "praise", "suggestion", "purchase_interest", "churn_threat", "follow_up", "spam", "")
IX = {slug: i for i, slug in enumerate(INTENTS)}
ISSUE_INTENTS = ("complaint", "refund_request", "cancellation_request", "order_status", "account_access",
                 "churn_threat")


def _mix(**weights) -> np.ndarray:
    p = np.zeros(len(INTENTS))
    for slug, w in weights.items():
        p[IX[slug if slug != "none" else ""]] = w
    return p / p.sum()


INTENT_BY_KIND = (
    _mix(complaint=35, refund_request=12, cancellation_request=6, order_status=12, account_access=15,
         churn_threat=5, question=15),
    _mix(question=80, order_status=10, purchase_interest=10),
    _mix(praise=85, suggestion=10, question=5),
    _mix(suggestion=35, purchase_interest=20, churn_threat=15, complaint=15, question=15),
    _mix(spam=60, none=40),
)
SENTIMENTS = ("negative", "neutral", "positive")
SENTIMENT_BY_KIND = ((.78, .20, .02), (.15, .75, .10), (.01, .09, .90), (.50, .25, .25), (.08, .80, .12))
EMOTIONS = ("anger", "joy", "optimism", "sadness")
EMOTION_BY_SENTIMENT = ((.55, .02, .03, .40), (.15, .30, .35, .20), (.01, .70, .28, .01))


@dataclass(frozen=True)
class Burst:
    name: str
    days_before_end: int
    hour: int  # local start hour
    hours: float  # duration
    peak: float  # extra intensity at the peak, times the usual rate
    kinds: tuple  # kind probabilities of its conversations
    intents: np.ndarray
    sentiments: tuple
    terms: dict  # term -> probability a message of the burst mentions it
    connectors: tuple  # connector shares (None: as usual)


BURSTS = (
    Burst("outage", 150, 10, 8, 6.0, (.85, .15, 0, 0, 0),
          _mix(complaint=60, question=20, account_access=10, churn_threat=10), (.88, .11, .01),
          {"outage": .7, "Acme": .5, "offline downloads": .15}, None),
    Burst("campaign", 95, 16, 30, 2.5, (.05, .20, .60, .15, 0),
          _mix(praise=60, purchase_interest=25, question=15), (.05, .30, .65),
          {"Family plan": .7, "Acme": .4}, (.35, .40, .05, .05, 0, .10, .05, 0)),
    Burst("competitor price cut", 40, 13, 12, 3.0, (.30, .15, 0, .55, 0),
          _mix(churn_threat=35, suggestion=20, complaint=20, purchase_interest=10, question=15), (.55, .30, .15),
          {"YouTube Music": .6, "Premium": .4}, (.40, .35, .05, .02, .03, .05, .02, .08)),
    Burst("billing glitch", 12, 7, 14, 4.0, (.90, .10, 0, 0, 0),
          _mix(refund_request=50, complaint=30, cancellation_request=10, churn_threat=10), (.85, .14, .01),
          {"billing": .7, "Premium": .6, "refund": .3}, (.10, .05, .35, .10, .05, .20, .15, 0)),
)

HOUR_OF_DAY = np.array([.25, .18, .14, .12, .13, .18, .30, .45, .62, .75, .85, .92, .97, 1.0, 1.0, .98, .95, .93, .95,
                        .98, .92, .78, .58, .38])
DAY_OF_WEEK = np.array([1.08, 1.05, 1.02, 1.0, .95, .72, .68])  # Monday first

OPENINGS = {
    "complaint": ["This is so frustrating", "Really disappointed", "Still broken after the update",
                  "Worst experience this week", "Why does this keep happening"],
    "question": ["Quick question", "Can someone tell me", "Does anyone know", "How do I change my settings",
                 "Is it possible to switch"],
    "refund_request": ["I want my money back", "Please refund me", "I was charged twice",
                       "Requesting a refund"],
    "cancellation_request": ["Please cancel my subscription", "How do I cancel", "I want to close my account"],
    "order_status": ["Where is my order", "Still waiting for my gift card", "My upgrade has not gone through"],
    "account_access": ["I can't log in", "Locked out of my account", "Password reset email never arrives"],
    "praise": ["Love it", "Thank you so much", "Best app ever", "You made my day", "Great support today"],
    "suggestion": ["It would be great if", "Please add an option", "Nice, but I wish", "Feature request"],
    "purchase_interest": ["Thinking about upgrading", "How much is it", "Is there a discount",
                          "Would like to try"],
    "churn_threat": ["I'm about to switch", "Cancelling if this is not fixed", "Thinking of leaving"],
    "follow_up": ["Any update?", "Still waiting", "Done, it shows the same error", "ok thanks", "Order number 48213"],
    "spam": ["Follow me for free followers", "Win a free phone, click here", "lol this thread",
             "Check out my playlist promo"],
    "": ["hmm", "...", "just saw this", "same"],
}
OTHER_OPENINGS = {
    "es": ["Hola, tengo un problema", "Gracias por la ayuda", "No funciona", "¿Alguien sabe?"],
    "fr": ["Bonjour, j'ai un souci", "Merci beaucoup", "Ça ne marche pas", "Quelqu'un sait ?"],
    "de": ["Hallo, ich habe ein Problem", "Vielen Dank", "Funktioniert nicht", "Weiß jemand"],
    "pt": ["Olá, tenho um problema", "Muito obrigado", "Não funciona", "Alguém sabe?"],
    "nl": ["Hoi, ik heb een probleem", "Heel erg bedankt", "Werkt niet", "Weet iemand"],
    "ja": ["問題があります", "ありがとうございます", "動きません", "誰か知っていますか"],
}
LINKS = ["with", "about", "and", "on", "for"]
REPLY_TEXTS = ["Sorry to hear that, could you DM us your account email?", "Thanks for the love!",
               "We're on it, a fix is rolling out now.", "Your refund is on its way.",
               "Happy to help, try signing out and back in.", "Thanks for the feedback, passed it on to the team."]


# --- Options ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="inbound messages (default 1,000,000)")
    parser.add_argument("--regenerate", action="store_true", help="generate again even if the database holds the data")
    parser.add_argument("--runs", type=int, default=30, help="timed filter sets per panel (default 30)")
    parser.add_argument("--naive-runs", type=int, default=10,
                        help="how many of those filter sets the naive baseline also runs (default 10: it is slow)")
    parser.add_argument("--seed", type=int, default=5, help="generation seed (default 5)")
    parser.add_argument("--filter-seed", type=int, default=11, help="seed of the filter draws (default 11)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DASHBOARDS_DATABASE_URL", DEFAULT_DB_URL),
                        help=f"its name must contain 'bench' (default {DEFAULT_DB_URL})")
    parser.add_argument("--generate-only", action="store_true", help="make sure the data is there, time nothing")
    parser.add_argument("--rebuild-compare", action="store_true",
                        help="time the row-by-row rollup rebuild (the previous one) and the set-based one, one after "
                             "the other, before the panels")
    parser.add_argument("--timeout", type=int, default=3600, help="fail the whole run after this many seconds")
    return parser.parse_args(argv)


def setup_django(db_url: str) -> None:
    env = bench_env(db_url, "shipped")
    for key in ("BENCH_DB_CONN", "CELERY_TASK_ALWAYS_EAGER", "CXM_CLASSIFY_ON_INGEST", "PYTHONPATH"):
        env.pop(key, None)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cxm.settings"
    import django

    django.setup()


# --- The marker: what the database holds --------------------------------------------------------
def _source_hash(*paths: str) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update((REPO / path).read_bytes())
    return digest.hexdigest()[:16]


def wanted_marker(args: argparse.Namespace) -> dict:
    return {"generator": GENERATOR_VERSION, "messages": args.messages, "seed": args.seed}


def read_marker(db_url: str) -> dict | None:
    import psycopg

    try:
        with psycopg.connect(db_url, connect_timeout=10) as conn:
            row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                               "WHERE datname = current_database()").fetchone()
    except psycopg.OperationalError:
        return None  # no such database yet
    try:
        return json.loads(row[0]) if row and row[0] else None
    except ValueError:
        return None


def write_marker(marker: dict) -> None:
    from django.db import connection
    from psycopg import sql

    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(json.dumps(marker))).as_string(cursor.connection))


def unapplied_migrations() -> list[str]:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, _ in plan]


def ensure_data(args: argparse.Namespace) -> dict:
    """The generated data, made if the database lacks it; returns the marker (with the data's
    end date). Rollups are rebuilt when learning/rollups.py or the migrations changed."""
    from django.core.management import call_command
    from django.db import connections

    marker = read_marker(args.database_url)
    wanted = wanted_marker(args)
    fresh = args.regenerate or not marker or any(marker.get(k) != v for k, v in wanted.items())
    name = urlsplit(args.database_url).path.lstrip("/")
    if fresh:
        print(f"database {name}: {'--regenerate' if args.regenerate else 'no matching data'}; "
              f"creating, migrating and generating {args.messages:,} messages", flush=True)
        connections.close_all()
        create_database(args.database_url)
        call_command("migrate", verbosity=0, interactive=False)
        marker = {**wanted, **generate(args.messages, args.seed)}
        marker["rollups"] = None
    else:
        print(f"database {name}: reusing {marker['messages']:,} messages generated {marker['generated_at']} "
              f"(--regenerate to make them again)", flush=True)
        pending = unapplied_migrations()
        if pending:
            print(f"  applying new migrations: {', '.join(pending)}", flush=True)
            started = time.perf_counter()
            call_command("migrate", verbosity=0, interactive=False)
            print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
            marker["rollups"] = None
    from learning.rollups import reporting_tz

    # The rollups' days depend on the reporting time zone as much as on the code.
    rollup_source = f"{_source_hash('learning/rollups.py', 'insight/care_rollup.py')} {reporting_tz().key}"
    ensure_segments()
    if marker.get("rollups") != rollup_source:
        marker["rollup_build_s"] = build_rollups()
        marker["rollups"] = rollup_source
        marker["vacuum_s"] = vacuum_analyze()
        write_marker(marker)
    return marker


# --- Generation ---------------------------------------------------------------------------------
class Generator:
    """Arrays first (numpy, vectorised), then one COPY per table. Times are float seconds since
    the epoch (UTC) until they are written."""

    def __init__(self, messages: int, seed: int):
        from learning.rollups import day_start, local_day, reporting_tz

        self.day_start = day_start
        self.m = messages
        self.rng = np.random.default_rng(seed)
        self.tz = reporting_tz()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.end = now.timestamp()
        self.end_day = local_day(now)
        self.start = day_start(self.end_day - timedelta(days=DAYS - 1)).timestamp()

    # Intensity of new conversations per hour: seasonality, growth, bursts.
    def hourly_intensity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hours = np.arange(self.start, self.end, 3600.0)
        local = [datetime.fromtimestamp(h, self.tz) for h in hours]
        hod = np.array([d.hour for d in local])
        dow = np.array([d.weekday() for d in local])
        day_index = ((hours - self.start) // 86400).astype(int)
        day_noise = self.rng.lognormal(0.0, 0.08, DAYS + 1)[day_index]
        trend = 0.85 + 0.3 * (hours - self.start) / (self.end - self.start)
        base = HOUR_OF_DAY[hod] * DAY_OF_WEEK[dow] * trend * day_noise
        bursts = np.zeros((len(BURSTS), len(hours)))
        for b, burst in enumerate(BURSTS):
            day = self.end_day - timedelta(days=burst.days_before_end)
            begins = self.day_start(day).timestamp() + burst.hour * 3600
            t = (hours - begins) / 3600.0
            # A fast rise then a slow decay over the burst's hours.
            shape = np.where((t >= 0) & (t < burst.hours * 1.5), np.minimum(1.0, (t + 1) / 2.0)
                             * np.exp(-np.maximum(t - 1, 0) / max(burst.hours / 2.5, 1)), 0.0)
            bursts[b] = burst.peak * shape * base.mean()
        return hours, base, bursts

    def conversations(self) -> None:
        rng = self.rng
        hours, base, bursts = self.hourly_intensity()
        total = base + bursts.sum(axis=0)
        count = int(self.m / 2.2) + 1000  # more than needed; cut at the message count below
        hour_index = rng.choice(len(hours), size=count, p=total / total.sum())
        start = hours[hour_index] + rng.random(count) * 3600.0
        # Which conversations a burst brought: with the burst's share of that hour's intensity.
        share = np.vstack([bursts, base[None, :]])[:, hour_index] / total[hour_index]
        burst = _choose_rows(rng, share.T)
        burst = np.where(burst == len(BURSTS), -1, burst)
        shares = np.array([c.share for c in CONNECTORS])
        connector = rng.choice(len(CONNECTORS), size=count, p=shares / shares.sum())
        for b, spec in enumerate(BURSTS):
            mine = burst == b
            if spec.connectors is not None and mine.any():
                p = np.array(spec.connectors, dtype=float)
                connector[mine] = rng.choice(len(CONNECTORS), size=int(mine.sum()), p=p / p.sum())
        channel_kinds = np.array([KIND_BY_CHANNEL[c.channel] for c in CONNECTORS])
        kind = _choose_rows(rng, channel_kinds[connector])
        for b, spec in enumerate(BURSTS):
            mine = burst == b
            kind[mine] = rng.choice(len(KINDS), size=int(mine.sum()), p=spec.kinds)
        n = rng.geometric(np.array(KIND_CONTINUE)[kind])
        # The draws are independent: keeping the first ones (not the earliest) keeps the shape.
        cumulative = np.cumsum(n)
        keep = int(np.searchsorted(cumulative, self.m)) + 1
        n[keep - 1] -= int(cumulative[keep - 1] - self.m)
        order = np.argsort(start[:keep], kind="stable")  # conversation ids in order of their start
        language = np.empty(count, dtype=int)
        for c, spec in enumerate(CONNECTORS):
            mine = connector == c
            weights = np.array([spec.languages.get(lang, 0) for lang in LANGS], dtype=float)
            language[mine] = rng.choice(len(LANGS), size=int(mine.sum()), p=weights / weights.sum())
        self.c = keep
        self.conv_start, self.conv_burst, self.conv_connector = start[order], burst[order], connector[order]
        self.conv_kind, self.conv_n, self.conv_language = kind[order], n[order], language[order]

    def inbound_times(self) -> None:
        """Each conversation's inbound messages: the first at its start, the next ones minutes to
        days later (squeezed to end by now)."""
        rng = self.rng
        self.msg_conv = np.repeat(np.arange(self.c), self.conv_n)
        first = np.concatenate([[0], np.cumsum(self.conv_n)[:-1]])
        self.conv_first = first
        self.msg_pos = np.arange(self.m) - first[self.msg_conv]
        gaps = np.where(self.msg_pos == 0, 0.0, rng.lognormal(math.log(8 * 60), 1.5, self.m))
        offsets = np.cumsum(gaps)
        offsets -= offsets[first][self.msg_conv]
        span = offsets[first + self.conv_n - 1]
        room = np.maximum(self.end - 60 - self.conv_start, 1.0)
        squeeze = np.minimum(1.0, room / np.maximum(span, 1.0))
        self.msg_sent = self.conv_start[self.msg_conv] + offsets * squeeze[self.msg_conv]
        polled = np.array([c.channel == "feed" for c in CONNECTORS])[self.conv_connector][self.msg_conv]
        delay = np.where(polled, rng.random(self.m) * 900.0, 0.3 + rng.lognormal(0.0, 0.6, self.m))
        self.msg_received = np.minimum(self.msg_sent + delay, self.end)
        self.conv_last_in = self.msg_sent[first + self.conv_n - 1]

    def cases_and_replies(self) -> None:
        """A case per non-noise conversation (97%), its first response (agents work 07:00-23:00
        local), follow-up replies, and its resolution."""
        rng, c = self.rng, self.c
        self.conv_lane = np.array(KIND_LANE)[self.conv_kind]
        self.has_case = (self.conv_kind != KINDS.index("noise")) & (rng.random(c) < 0.97)
        opened = self.msg_received[self.conv_first] + 1.0 + rng.random(c) * 3.0
        median = np.select([self.conv_lane == "praise", self.conv_lane == "ambivalence"], [100.0, 45.0], 22.0)
        delay = rng.lognormal(np.log(median * 60.0), 1.0)
        local_hour = np.array([datetime.fromtimestamp(t, self.tz).hour for t in opened])
        night = (local_hour >= 23) | (local_hour < 7)
        delay += np.where(night, ((7 - local_hour) % 24) * 3600.0 + rng.random(c) * 1800.0, 0.0)
        answer_p = np.select([self.conv_lane == "praise", self.conv_lane == "ambivalence"], [0.7, 0.88], 0.95)
        responded = self.has_case & (rng.random(c) < answer_p) & (opened + delay < self.end)
        first_response = np.where(responded, opened + delay, np.nan)
        self.conv_opened, self.conv_responded, self.conv_first_response = opened, responded, first_response

        # Follow-up replies: to later inbound messages after the first response, 60% of them.
        later = (self.msg_pos >= 1) & responded[self.msg_conv]
        later &= self.msg_received > np.nan_to_num(first_response, nan=np.inf)[self.msg_conv]
        later &= rng.random(self.m) < 0.6
        follow_at = self.msg_received + rng.lognormal(np.log(10 * 60.0), 0.9, self.m)
        later &= follow_at < self.end
        first_cases = np.flatnonzero(responded)
        follow_msgs = np.flatnonzero(later)
        self.reply_conv = np.concatenate([first_cases, self.msg_conv[follow_msgs]])
        self.reply_at = np.concatenate([first_response[first_cases], follow_at[follow_msgs]])
        self.reply_to_msg = np.concatenate([self.conv_first[first_cases], follow_msgs])  # inbound index
        order = np.argsort(self.reply_at, kind="stable")
        self.reply_conv, self.reply_at, self.reply_to_msg = (a[order] for a in
                                                             (self.reply_conv, self.reply_at, self.reply_to_msg))
        r = len(self.reply_at)
        roll = rng.random(r)
        self.reply_status = np.where(roll < 0.01, "failed", "delivered")
        last_reply = np.full(c, -np.inf)
        np.maximum.at(last_reply, self.reply_conv, self.reply_at)

        # Resolution after the last activity; a few old cases stay open (a stale backlog).
        last_activity = np.maximum(self.conv_last_in, last_reply)
        resolved_at = last_activity + rng.lognormal(np.log(2 * 3600.0), 1.2, c)
        unanswered_close = ~responded & (rng.random(c) < 0.8)
        resolved_at = np.where(unanswered_close, opened + rng.lognormal(np.log(2 * 86400.0), 0.6, c), resolved_at)
        stale = rng.random(c) < 0.015
        resolved = self.has_case & (resolved_at < self.end) & ~stale
        self.conv_resolved_at = np.where(resolved, resolved_at, np.nan)
        status = np.full(c, "", dtype=object)
        status[resolved] = np.where(rng.random(int(resolved.sum())) < 0.85, "resolved", "closed")
        active = self.has_case & ~resolved
        waiting = active & (self.conv_last_in > last_reply)  # the customer spoke last
        status[active & ~responded] = np.where(rng.random(int((active & ~responded).sum())) < 0.5, "new", "open")
        status[active & responded & waiting] = "open"
        status[active & responded & ~waiting] = "pending"
        self.conv_status = status
        self.conv_last_reply = last_reply

        # Who: the assignee answers 90% of the replies, a teammate or the supervisor the rest.
        team_of = np.array([[t for t, _ in TEAMS].index(spec.team) for spec in CONNECTORS])[self.conv_connector]
        self.conv_team = team_of
        assigned = responded | (active & (rng.random(c) < 0.6))
        self.conv_assignee_slot = np.where(assigned, -1, -2)  # slot picked in write_cases (needs user ids)
        self.conv_assignee_roll = rng.random(c)
        self.reply_other = rng.random(r) < 0.1
        self.reply_roll = rng.random(r)
        self.conv_priority = np.clip(rng.normal(np.select([self.conv_lane == "issue"], [0.55], 0.25), 0.15), 0, 1)

    def classifications(self) -> None:
        """Sentiment, emotion, intent, lane, language and topics of each inbound message, drawn
        together: the conversation's kind sets the first message; later ones follow up, and an
        unhappy customer answered in time may come round."""
        rng, m = self.rng, self.m
        kind = self.conv_kind[self.msg_conv]
        burst = self.conv_burst[self.msg_conv]
        first = self.msg_pos == 0
        intent_p = np.array(INTENT_BY_KIND)[kind]
        sentiment_p = np.array(SENTIMENT_BY_KIND)[kind]
        for b, spec in enumerate(BURSTS):
            mine = burst == b
            intent_p[mine] = spec.intents
            sentiment_p[mine] = spec.sentiments
        intent = _choose_rows(rng, intent_p)
        follow = ~first & (rng.random(m) < 0.45)
        intent[follow] = IX["follow_up"]
        # Recovery: a negative conversation answered within the hour turns round 45% of the time.
        fr = self.conv_first_response
        fast = np.nan_to_num(fr - self.conv_opened, nan=np.inf) < 3600
        recovers = self.conv_responded & (rng.random(self.c) < np.where(fast, 0.45, 0.25))
        after_reply = ~first & recovers[self.msg_conv] & (self.msg_sent > np.nan_to_num(fr, nan=np.inf)[self.msg_conv])
        sentiment_p[after_reply & (self.conv_lane[self.msg_conv] != "praise")] = (.10, .45, .45)
        sentiment = _choose_rows(rng, sentiment_p)
        emotion = _choose_rows(rng, np.array(EMOTION_BY_SENTIMENT)[sentiment])
        self.msg_intent, self.msg_sentiment, self.msg_emotion = intent, sentiment, emotion
        self.msg_lane = self._lanes(intent, sentiment, emotion, self.conv_lane[self.msg_conv])
        language = self.conv_language[self.msg_conv].copy()
        drift = rng.random(m) < 0.03  # detection noise
        language[drift] = rng.integers(0, len(LANGS), int(drift.sum()))
        self.msg_language = language
        self.msg_terms = self._terms(intent, burst)

    @staticmethod
    def _lanes(intent, sentiment, emotion, conversation_lane) -> np.ndarray:
        neg, pos = sentiment == 0, sentiment == 2
        issue_intent = np.isin(intent, [IX[s] for s in ISSUE_INTENTS])
        mixed = np.isin(intent, [IX["suggestion"], IX["purchase_interest"]])
        return np.select(
            [intent == IX["spam"], issue_intent, (intent == IX["praise"]) & ~neg, mixed,
             neg & (emotion == EMOTIONS.index("sadness")), neg, pos, intent == IX["follow_up"],
             intent == IX["question"]],
            ["noise", "issue", "praise", "ambivalence", "ambivalence", "issue", "praise", conversation_lane, "issue"],
            default=conversation_lane)

    def _terms(self, intent, burst) -> list[list[int]]:
        """Up to four term indexes per message: the brand, a product (Car mode rising over the last
        30 days), a topic that goes with the intent, now and then a competitor; bursts add theirs."""
        rng, m = self.rng, self.m
        progress = (self.msg_sent - self.start) / (self.end - self.start)
        social = np.isin(self.conv_connector[self.msg_conv], [0, 1])
        brand = rng.random(m) < np.where(social, 0.45, 0.25)
        product_w = np.array([.35, .20, .08, .10, .10, .04, .07])
        has_product = rng.random(m) < 0.4
        product = np.array(list(T_PRODUCTS))[rng.choice(len(product_w), size=m, p=product_w / product_w.sum())]
        late = (progress > 1 - 30 / DAYS) & (rng.random(m) < 0.15)
        product[late] = T["Car mode"]
        topic_by_intent = {"refund_request": "billing", "cancellation_request": "billing", "account_access": "login",
                           "order_status": "billing", "complaint": None, "question": None}
        topic = np.full(m, -1)
        roll = rng.random(m)
        for slug, name in topic_by_intent.items():
            mine = (intent == IX[slug]) & (roll < 0.5)
            if name:
                topic[mine] = T[name]
            else:
                choices = np.array([T[x] for x in ("offline downloads", "ads", "shuffle", "lyrics", "login", "refund")])
                topic[mine] = choices[rng.choice(len(choices), size=int(mine.sum()), p=[.25, .25, .15, .1, .15, .1])]
        lyrics_late = (topic >= 0) & (progress > 1 - 20 / DAYS) & (rng.random(m) < 0.3)
        topic[lyrics_late] = T["lyrics"]
        competitor_p = np.where(intent == IX["churn_threat"], 0.4, 0.03)
        has_competitor = rng.random(m) < competitor_p
        competitor = np.array(list(T_COMPETITORS))[rng.choice(4, size=m, p=[.4, .35, .15, .1])]
        burst_terms = np.full((m, len(TERMS)), False)
        for b, spec in enumerate(BURSTS):
            mine = np.flatnonzero(burst == b)
            for name, p in spec.terms.items():
                burst_terms[mine, T[name]] = rng.random(len(mine)) < p
        out = []
        for i in range(m):
            found = []
            if brand[i] or burst_terms[i, T_BRAND]:
                found.append(T_BRAND)
            if has_product[i]:
                found.append(int(product[i]))
            if topic[i] >= 0:
                found.append(int(topic[i]))
            if has_competitor[i]:
                found.append(int(competitor[i]))
            if burst[i] >= 0:
                found += [t for t in np.flatnonzero(burst_terms[i]) if t not in found]
            out.append(found)
        return out


def _choose_rows(rng, p: np.ndarray) -> np.ndarray:
    """One draw per row of the probability matrix p."""
    cumulative = np.cumsum(p, axis=1)
    cumulative[:, -1] = 1.0
    return (rng.random(len(p))[:, None] > cumulative).sum(axis=1)


def _ts(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as ISO strings PostgreSQL reads (UTC)."""
    micro = np.round(np.asarray(seconds, dtype=float) * 1e6).astype("int64").astype("datetime64[us]")
    return np.char.add(np.datetime_as_string(micro, unit="us"), "+00")


def generate(messages: int, seed: int) -> dict:
    from django.db import connection, transaction

    started = time.perf_counter()
    gen = Generator(messages, seed)
    steps = [("conversations", gen.conversations), ("inbound times", gen.inbound_times),
             ("cases and replies", gen.cases_and_replies), ("classifications", gen.classifications)]
    for name, step in steps:
        t = time.perf_counter()
        step()
        print(f"  generated {name} in {time.perf_counter() - t:.1f} s", flush=True)
    with transaction.atomic():
        set_database_defaults()
        world = create_world()
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor
            cursor.execute("SET LOCAL session_replication_role = replica")  # no FK triggers: ids are ours
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            cursor.execute("SET LOCAL synchronous_commit = off")
            writer = Writer(gen, world, cursor)
            writer.write_all()
    generated = time.perf_counter() - started
    counts = writer.counts
    print(f"  generated and stored in {generated:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()),
          flush=True)
    return {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "end_day": gen.end_day.isoformat(),
            "end": datetime.fromtimestamp(gen.end, UTC).isoformat(), "generation_s": round(generated, 1),
            "counts": counts}


def set_database_defaults() -> None:
    """The Writer COPYs the columns it knows; a NOT NULL column added by a later migration, with a
    default only in Django (responses_case.snoozed, a flag), would make PostgreSQL refuse every row.
    Such columns get their Django default in the database too, so the COPY leaves them out safely:
    constants, [] and {} as JSON, timezone.now as now(), uuid4 as gen_random_uuid(). Used by every
    bench that generates this data (dashboards, api, search)."""
    import uuid

    from django.apps import apps
    from django.db import connection
    from django.utils import timezone
    from psycopg import sql

    functions = {timezone.now: sql.SQL("now()"), uuid.uuid4: sql.SQL("gen_random_uuid()")}
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if model._meta.proxy or not model._meta.managed:  # noqa: SLF001
                continue
            for f in model._meta.concrete_fields:  # noqa: SLF001
                if f.null or not f.has_default() or f.primary_key:
                    continue
                if f.default in functions:
                    value = functions[f.default]
                elif callable(f.default) and f.default not in (list, dict):
                    continue  # computed per row in Python: nothing the database can repeat
                else:
                    value = f.default() if callable(f.default) else f.default
                    value = sql.Literal(json.dumps(value) if isinstance(value, list | dict) else value)
                cursor.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    sql.Identifier(model._meta.db_table), sql.Identifier(f.column),  # noqa: SLF001
                    value).as_string(cursor.connection))


def create_world() -> dict:
    """Teams, queues, users, connectors and terms: few rows, through the ORM."""
    from django.contrib.auth import get_user_model

    from learning.models import Term
    from listening.models import Connector
    from responses.models import AgentProfile, Presence, Queue, Role, Team

    user_model = get_user_model()
    teams, queues, agents, supervisors, managers = {}, {}, {}, {}, {}
    for slug, name in TEAMS:
        team = Team.objects.create(name=name, slug=slug)
        teams[slug] = team
        for position, (qslug, qname, lane, sla) in enumerate(QUEUES):
            queues[(slug, lane)] = Queue.objects.create(team=team, slug=qslug, name=qname, lane=lane, sla_minutes=sla,
                                                        position=position)

    def person(username, first, last, role, team_slugs, capacity=5):
        user = user_model.objects.create_user(username, f"{username}@acme.example", None, first_name=first,
                                              last_name=last)
        AgentProfile.objects.create(user=user, role=role, presence=Presence.AVAILABLE, capacity=capacity)
        for slug in team_slugs:
            teams[slug].members.add(user)
        return user

    first_names = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Femi", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena"]
    k = 0
    for slug, _ in TEAMS:
        agents[slug] = []
        for _ in range(AGENTS_PER_TEAM[slug]):
            agents[slug].append(person(f"agent{k + 1}", first_names[k], "Agent", Role.AGENT, [slug], 12))
            k += 1
        supervisors[slug] = person(f"supervisor-{slug}", slug.title(), "Supervisor", Role.SUPERVISOR, [slug])
        managers[slug] = person(f"manager-{slug}", slug.title(), "Manager", Role.BRAND_MANAGER, [slug])
    admin = person("admin", "Ada", "Admin", Role.ADMIN, [])
    connectors = []
    for spec in CONNECTORS:
        connector = Connector.objects.create(kind=spec.kind, name=spec.name, slug=spec.slug,
                                             config={"channel": spec.channel})
        teams[spec.team].connectors.add(connector)
        connectors.append(connector)
    terms = [Term.objects.create(name=name, kind=kind) for name, kind in TERMS]
    return {"teams": teams, "queues": queues, "agents": agents, "supervisors": supervisors, "managers": managers,
            "admin": admin, "connectors": connectors, "terms": terms}


class Writer:
    """COPYs the generated arrays into the tables, ids chosen here (time order), then moves each
    table's id sequence past them. Secondary indexes are dropped for the load and built after."""

    TABLES = ("listening_customer", "listening_contact", "listening_conversation", "listening_message",
              "learning_classification", "responses_case", "responses_reply")

    def __init__(self, gen: Generator, world: dict, cursor):
        self.g, self.w, self.cur = gen, world, cursor
        self.counts: dict[str, int] = {}

    def copy(self, table: str, columns: tuple, rows) -> None:
        t = time.perf_counter()
        n = 0
        with self.cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        self.counts[table.split("_", 1)[1]] = n
        print(f"    {table}: {n:,} rows in {time.perf_counter() - t:.1f} s", flush=True)

    def write_all(self) -> None:
        indexes = self._drop_indexes()
        self.contacts()
        self.conversations()
        self.messages()
        self.classifications()
        self.cases()
        self.replies()
        t = time.perf_counter()
        for statement in indexes:
            self.cur.execute(statement)
        print(f"    secondary indexes built in {time.perf_counter() - t:.1f} s", flush=True)
        for table in self.TABLES:
            self.cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 (constants)
                             f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")

    def _drop_indexes(self) -> list[str]:
        """Indexes that no constraint owns (the primary and unique keys stay)."""
        self.cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", [list(self.TABLES)])
        found = self.cur.fetchall()
        for name, _ in found:
            self.cur.execute(f'DROP INDEX "{name}"')
        return [definition for _, definition in found]

    # Contacts: per channel, conversations pick an author with a long tail (a few very active).
    def contacts(self) -> None:
        g, rng = self.g, self.g.rng
        channel_of = np.array([c.channel for c in CONNECTORS])[g.conv_connector]
        g.conv_contact = np.empty(g.c, dtype=np.int64)
        next_id, channels = 1, []
        for channel in sorted(set(channel_of)):
            mine = np.flatnonzero(channel_of == channel)
            pool = max(1, int(len(mine) * 0.75))
            pick = np.floor(pool * rng.random(len(mine)) ** 1.6).astype(np.int64)
            used, inverse = np.unique(pick, return_inverse=True)
            g.conv_contact[mine] = next_id + inverse
            channels += [channel] * len(used)
            next_id += len(used)
        k = next_id - 1
        ids = np.arange(1, k + 1)
        # Most contacts are one customer each; 8% are the same person as another contact.
        customer = ids.copy()
        merge = rng.random(k) < 0.08
        customer[merge] = rng.integers(1, k + 1, int(merge.sum()))
        customer_ids = np.unique(customer)
        customer = np.searchsorted(customer_ids, customer) + 1
        first_seen = np.full(k + 1, np.inf)
        last_seen = np.zeros(k + 1)
        count = np.bincount(g.conv_contact[g.msg_conv], minlength=k + 1)
        np.minimum.at(first_seen, g.conv_contact[g.msg_conv], g.msg_sent)
        np.maximum.at(last_seen, g.conv_contact[g.msg_conv], g.msg_sent)
        now = _ts([g.end])[0]
        self.copy("listening_customer", ("id", "display_name", "email", "phone", "vip", "created_at", "updated_at"),
                  ((int(i), f"Customer {i}", f"customer{i}@mail.example" if i % 3 == 0 else "", "",
                    i % 500 == 0, now, now) for i in range(1, len(customer_ids) + 1)))
        first_s, last_s = _ts(first_seen[1:]), _ts(last_seen[1:])
        followers = np.round(rng.lognormal(5.0, 2.0, k)).astype(np.int64)
        self.copy("listening_contact", ("id", "channel", "external_id", "handle", "display_name", "profile_url",
                                        "followers", "email", "email_verified", "phone", "phone_verified",
                                        "customer_id", "first_seen_at", "last_seen_at", "message_count"),
                  ((int(i), channels[i - 1], f"u{i}", f"@user{i}", f"User {i}", "", int(followers[i - 1]), "", False,
                    "", False, int(customer[i - 1]), first_s[i - 1], last_s[i - 1], int(count[i]))
                   for i in range(1, k + 1)))

    def conversations(self) -> None:
        g = self.g
        # Ids in order of the first message (they are already sorted by start).
        g.conv_id = np.arange(1, g.c + 1)
        connector_ids = np.array([c.pk for c in self.w["connectors"]])
        channels = [c.channel for c in CONNECTORS]
        out_count = np.bincount(g.reply_conv[g.reply_status == "delivered"], minlength=g.c)
        last = np.maximum(g.conv_last_in, np.where(out_count > 0, g.conv_last_reply, 0))
        started, last_s = _ts(g.conv_start), _ts(last)
        self.copy("listening_conversation", ("id", "connector_id", "channel", "external_id", "subject", "contact_id",
                                             "started_at", "last_message_at", "message_count"),
                  ((i + 1, int(connector_ids[g.conv_connector[i]]), channels[g.conv_connector[i]], f"t{i + 1}", "",
                    int(g.conv_contact[i]), started[i], last_s[i], int(g.conv_n[i] + out_count[i]))
                   for i in range(g.c)))

    def messages(self) -> None:
        """Inbound messages and the outbound copies of delivered replies, ids in order of arrival."""
        g, rng = self.g, self.g.rng
        delivered = np.flatnonzero(g.reply_status == "delivered")
        out_at = g.reply_at[delivered] + 0.5 + rng.random(len(delivered)) * 2.5
        g.reply_delivered_at = np.full(len(g.reply_at), np.nan)
        g.reply_delivered_at[delivered] = out_at
        received = np.concatenate([g.msg_received, out_at])
        order = np.argsort(received, kind="stable")
        ids = np.empty(len(order), dtype=np.int64)
        ids[order] = np.arange(1, len(order) + 1)
        g.msg_id = ids[:g.m]
        g.reply_message_id = np.zeros(len(g.reply_at), dtype=np.int64)
        g.reply_message_id[delivered] = ids[g.m:]
        g.msg_text, g.msg_topics = self._texts()
        sent = _ts(np.concatenate([g.msg_sent, out_at]))
        received_s = _ts(received)
        connector_ids = np.array([c.pk for c in self.w["connectors"]])
        channels = [c.channel for c in CONNECTORS]
        conv_of = np.concatenate([g.msg_conv, g.reply_conv[delivered]])
        reply_index = np.full(len(order), -1)
        reply_index[g.m:] = delivered

        def rows():
            for j in order:
                conv = conv_of[j]
                connector = g.conv_connector[conv]
                inbound = j < g.m
                yield (int(ids[j]), int(connector_ids[connector]), f"m{ids[j]}", channels[connector],
                       "in" if inbound else "out", int(conv + 1), int(g.conv_contact[conv]) if inbound else None,
                       g.msg_text[j] if inbound else REPLY_TEXTS[reply_index[j] % len(REPLY_TEXTS)], "",
                       sent[j], received_s[j], None, "", "{}", False)

        self.copy("listening_message", ("id", "connector_id", "external_id", "channel", "direction", "conversation_id",
                                        "author_id", "text", "url", "sent_at", "received_at", "parent_id",
                                        "parent_external_id", "raw", "raw_truncated"), rows())

    def _texts(self) -> tuple[list[str], list[str]]:
        """A short text per inbound message naming its terms, and the topics JSON that
        learning.terms would store for it (term_id, name, kind, text, start, end)."""
        g, rng = self.g, self.g.rng
        terms = self.w["terms"]
        pick = rng.integers(0, 1 << 30, g.m)
        texts, topics = [], []
        for i in range(g.m):
            lang = LANGS[g.msg_language[i]]
            intent = INTENTS[g.msg_intent[i]]
            choices = OPENINGS[intent] if lang == "en" or lang not in OTHER_OPENINGS else OTHER_OPENINGS[lang]
            text = choices[pick[i] % len(choices)]
            found = []
            for n, t in enumerate(g.msg_terms[i]):
                term = terms[t]
                text += f" {LINKS[(pick[i] + n) % len(LINKS)]} "
                found.append({"term_id": term.pk, "name": term.name, "kind": term.kind, "text": term.name,
                              "start": len(text), "end": len(text) + len(term.name)})
                text += term.name
            texts.append(text)
            topics.append(json.dumps(found))
        return texts, topics

    def classifications(self) -> None:
        """One current classification per inbound message (0.2% failed); 3% also have an older
        one from the previous model, no longer current, that often said something else."""
        g, rng = self.g, self.g.rng
        m = g.m
        failed = rng.random(m) < 0.002
        older = rng.random(m) < 0.03
        created = g.msg_received + 0.5 + rng.lognormal(0.5, 1.0, m)
        reclassified = created + np.where(older, rng.random(m) * 86400 * 3, 0.0)
        stamps = np.concatenate([created[older], np.minimum(reclassified, np.maximum(created, g.end))])
        kind = np.concatenate([np.full(int(older.sum()), 1), np.zeros(m, dtype=int)])  # 1: the old one
        msg = np.concatenate([np.flatnonzero(older), np.arange(m)])
        order = np.argsort(stamps, kind="stable")
        stamp_s = _ts(stamps)
        sentiment_json = [[json.dumps(_scores(SENTIMENTS, s, p)) for p in (.55, .7, .85, .95)]
                          for s in range(len(SENTIMENTS))]
        emotion_json = [[json.dumps(_scores(EMOTIONS, e, p)) for p in (.45, .6, .8)] for e in range(len(EMOTIONS))]
        intent_json = [[json.dumps(_scores(INTENTS[:-1], i, p, top=3)) if INTENTS[i] else "{}" for p in (.4, .6, .85)]
                       for i in range(len(INTENTS))]
        old_sentiment = rng.integers(0, 3, m)
        roll = rng.integers(0, 1 << 30, m)
        confidence = np.round(0.4 + 0.6 * rng.random(m), 4)
        priority = np.round(np.clip(np.where(g.msg_lane == "issue", 0.5, 0.2) + rng.normal(0, 0.15, m), 0, 1), 4)

        def rows():
            for row_id, j in enumerate(order, start=1):
                i = msg[j]
                old = kind[j] == 1
                if failed[i] and not old:
                    yield (row_id, int(g.msg_id[i]), True, "failed", "model timed out", "", "{}", "", "{}", "", "{}",
                           "", None, "[]", "[]", "", 0.0, "{}", None, "[]", "", "", "{}", stamp_s[j])
                    continue
                s = int(old_sentiment[i] if old else g.msg_sentiment[i])
                r = roll[i]
                yield (row_id, int(g.msg_id[i]), not old, "ok", "", SENTIMENTS[s], sentiment_json[s][r % 4],
                       EMOTIONS[g.msg_emotion[i]], emotion_json[g.msg_emotion[i]][r % 3], INTENTS[g.msg_intent[i]],
                       intent_json[g.msg_intent[i]][r % 3], LANGS[g.msg_language[i]], 0.9, g.msg_topics[i], "[]",
                       g.msg_lane[i], float(priority[i]), "{}", float(confidence[i]), "[]", "cxm-multitask",
                       "2026.10.2" if old else "2026.11.1", "{}", stamp_s[j])

        self.copy("learning_classification", (
            "id", "message_id", "is_current", "status", "error", "sentiment", "sentiment_scores", "emotion",
            "emotion_scores", "intent", "intent_scores", "language", "language_confidence", "topics", "entities",
            "lane", "priority", "priority_factors", "confidence", "flags", "model_name", "model_version",
            "models_used", "created_at"), rows())

    def cases(self) -> None:
        g = self.g
        w = self.w
        team_slugs = [t for t, _ in TEAMS]
        queue_ids = {key: q.pk for key, q in w["queues"].items()}
        team_ids = [w["teams"][t].pk for t in team_slugs]
        agent_ids = [[a.pk for a in w["agents"][t]] for t in team_slugs]
        with_case = np.flatnonzero(g.has_case)
        g.case_id = np.zeros(g.c, dtype=np.int64)
        g.case_id[with_case] = np.arange(1, len(with_case) + 1)
        # An agent's share of a team's cases: long-tailed (the senior agents take more).
        g.conv_assignee = np.zeros(g.c, dtype=np.int64)
        for team, agents in enumerate(agent_ids):
            weights = np.array([1.0 / (k + 1) ** 0.6 for k in range(len(agents))])
            cumulative = np.cumsum(weights / weights.sum())
            mine = g.conv_team == team
            slot = np.minimum(np.searchsorted(cumulative, g.conv_assignee_roll[mine]), len(agents) - 1)
            g.conv_assignee[mine] = np.array(agents)[slot]
        g.conv_assignee[g.conv_assignee_slot == -2] = 0
        opened, first_resp = _ts(g.conv_opened), _ts(np.nan_to_num(g.conv_first_response))
        resolved = _ts(np.nan_to_num(g.conv_resolved_at))
        last_msg = g.msg_id[g.conv_first + g.conv_n - 1]
        connector_ids = np.array([c.pk for c in w["connectors"]])
        channels = [c.channel for c in CONNECTORS]
        sla_of = {lane: sla for _, _, lane, sla in QUEUES}
        now = g.end

        def rows():
            for conv in with_case:
                team = g.conv_team[conv]
                lane = g.conv_lane[conv]
                status = g.conv_status[conv]
                sla = sla_of[lane]
                active = status in ("new", "open", "pending")
                waiting = status in ("new", "open")
                due = (g.conv_last_in[conv] if g.conv_responded[conv] else g.conv_opened[conv]) + sla * 60
                sla_state = ""
                if active and waiting:
                    sla_state = "breached" if now >= due else ("near" if now >= due - max(sla * 12, 300) else "ok")
                elif not g.conv_responded[conv] and status == "closed" and now >= due:
                    sla_state = ""  # closed unanswered: routing cleared it
                updated = max(x for x in (g.conv_opened[conv], g.conv_last_in[conv], g.conv_last_reply[conv],
                                          np.nan_to_num(g.conv_resolved_at[conv])) if np.isfinite(x))
                yield (int(g.case_id[conv]), int(conv + 1), int(connector_ids[g.conv_connector[conv]]),
                       channels[g.conv_connector[conv]], team_ids[team], queue_ids[(team_slugs[team], lane)],
                       int(g.conv_assignee[conv]) or None, status, lane, float(round(g.conv_priority[conv], 4)), sla,
                       _ts([due])[0] if sla_state else None, sla_state, "[]",
                       bool(active and not g.conv_assignee[conv] and status == "new"),
                       _ts([due - sla * 60])[0] if waiting and active else None, int(last_msg[conv]), opened[conv],
                       first_resp[conv] if g.conv_responded[conv] else None,
                       resolved[conv] if np.isfinite(g.conv_resolved_at[conv]) else None, _ts([updated])[0])

        self.copy("responses_case", ("id", "conversation_id", "connector_id", "channel", "team_id", "queue_id",
                                     "assignee_id", "status", "lane", "priority", "sla_minutes", "sla_due_at",
                                     "sla_state", "tags", "awaiting_assignment", "waiting_since", "last_message_id",
                                     "opened_at", "first_response_at", "resolved_at", "updated_at"), rows())

    def replies(self) -> None:
        g = self.g
        w = self.w
        team_slugs = [t for t, _ in TEAMS]
        others = [[a.pk for a in w["agents"][t]] + [w["supervisors"][t].pk] for t in team_slugs]
        created = _ts(g.reply_at)
        delivered = _ts(np.nan_to_num(g.reply_delivered_at))

        def rows():
            for r in range(len(g.reply_at)):
                conv = g.reply_conv[r]
                author = int(g.conv_assignee[conv])
                if g.reply_other[r] or not author:
                    pool = others[g.conv_team[conv]]
                    author = pool[int(g.reply_roll[r] * len(pool))]
                ok = g.reply_status[r] == "delivered"
                message_id = int(g.reply_message_id[r]) if ok else None
                yield (r + 1, int(g.case_id[conv]), author, REPLY_TEXTS[r % len(REPLY_TEXTS)], f"bench-{r + 1}",
                       int(g.msg_id[g.reply_to_msg[r]]), g.reply_status[r], False, False, 1 if ok else 6,
                       "" if ok else "provider answered 500", f"m{message_id}" if ok else "", message_id, None, None,
                       created[r], delivered[r] if ok else None)

        self.copy("responses_reply", ("id", "case_id", "author_id", "text", "idempotency_key", "in_reply_to_id",
                                      "status", "resolve_on_delivery", "automatic", "attempts", "last_error",
                                      "external_id", "message_id", "sending_until", "next_attempt_at", "created_at",
                                      "delivered_at"), rows())


def _scores(labels, winner: int, p: float, top: int = 0) -> dict:
    rest = [x for k, x in enumerate(labels) if k != winner]
    share = (1 - p) / len(rest)
    out = {labels[winner]: round(p, 4), **{x: round(share, 4) for x in rest}}
    return dict(list(out.items())[:top]) if top else out


# --- Rollups ------------------------------------------------------------------------------------
# Saved segments for the segment_sentiment panel (an attribute and tiers set on a share of the
# customers, by id, so every run has the same members): a panel over no segment times only
# everyone's row. Set on each run, idempotently; the generator's marker does not change.
SEGMENTS = {
    "Premium": {"tier": ["premium"]},
    "Gold plan": {"attributes": [{"key": "plan", "in": ["gold"]}]},
    "Premium or business on gold": {"tier": ["premium", "business"], "attributes": [{"key": "plan", "in": ["gold"]}]},
}
_TIER = "CASE WHEN id % 25 = 0 THEN 'premium' WHEN id % 40 = 1 THEN 'business' ELSE 'standard' END"
_PLAN = "jsonb_build_object('plan', CASE WHEN id % 9 = 0 THEN 'gold' ELSE 'basic' END)"


def ensure_segments() -> None:
    """4% of customers premium, 2.5% business, 11% on the gold plan (the others basic), and SEGMENTS."""
    from django.db import connection, transaction

    from listening.models import AttributeDefinition, Segment

    with transaction.atomic(), connection.cursor() as cursor:
        AttributeDefinition.objects.get_or_create(key="plan", defaults={
            "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]})
        cursor.execute(f"UPDATE listening_customer SET tier = {_TIER}, attributes = {_PLAN} "  # noqa: S608 - constants
                       f"WHERE tier IS DISTINCT FROM {_TIER} OR attributes IS DISTINCT FROM {_PLAN}")
        changed = cursor.rowcount
        for name, definition in SEGMENTS.items():
            Segment.objects.update_or_create(name=name, defaults={"definition": definition})
    if changed:
        print(f"  segments: tier and plan set on {changed:,} customers; {len(SEGMENTS)} segments", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE listening_customer")


def build_rollups() -> float:
    from learning import rollups

    started = time.perf_counter()
    print("rollups: learning.rollups.rebuild() over the raw tables (and insight's care rollup)", flush=True)
    result = rollups.rebuild()
    took = time.perf_counter() - started
    print(f"  {result['rows']:,} rollup rows, {result.get('care_rows', 0):,} care rollup rows, "
          f"{result['moods']:,} conversation moods in {took:.1f} s", flush=True)
    return round(took, 1)


def compare_rebuilds() -> dict:
    """The previous rebuild (every classification through Python: learning.rollups._rebuild_in_python)
    and the set-based one (rollups.rebuild: INSERT ... SELECT, with the care rollup), one after
    the other, each in its own transaction; the load average with each."""
    from django.db import transaction

    from learning import rollups

    out = {}
    for name, run in (("row_by_row", lambda: rollups._rebuild_in_python(20_000)), ("set_based", rollups.rebuild)):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        with transaction.atomic():
            run()
        took = time.perf_counter() - started
        out[f"rebuild_{name}_s"] = round(took, 1)
        out[f"rebuild_{name}_load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        print(f"rebuild, {name.replace('_', '-')}: {took:.1f} s (load {load:.2f} -> {os.getloadavg()[0]:.2f})",
              flush=True)
    out["rebuild_speedup_ratio"] = round(out["rebuild_row_by_row_s"] / out["rebuild_set_based_s"], 1)
    print(f"rebuild: set-based {out['rebuild_speedup_ratio']}x faster", flush=True)
    return out


def vacuum_analyze() -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    took = time.perf_counter() - started
    print(f"  VACUUM ANALYZE in {took:.1f} s", flush=True)
    return round(took, 1)


# --- Filter draws -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draw:
    user: str  # "admin" or "manager-<team>"
    params: tuple  # (name, value) pairs, a querystring's

    @property
    def label(self) -> str:
        given = dict(self.params)
        days = (date.fromisoformat(given["to"]) - date.fromisoformat(given["from"])).days + 1
        extra = [f"{k}={v}" for k, v in self.params if k not in ("from", "to", "granularity")]
        return f"{self.user} {days}d/{given['granularity']} {' '.join(extra)}".strip()


def draw_filters(count: int, seed: int, end_day: date) -> list[Draw]:
    """`count` filter sets as the dashboards' users would pick them (seeded, so every run of the
    bench times the same ones). Names refer to the generated world: resolved to ids at run time."""
    rng = random.Random(seed)
    draws = []
    for _ in range(count):
        team = rng.choice([t for t, _ in TEAMS]) if rng.random() < 0.5 else None
        user = f"manager-{team}" if team else "admin"
        mine = [c for c in CONNECTORS if team in (None, c.team)]
        days = rng.choices([7, 30, 90, 180], weights=[3, 4, 2, 1])[0]
        end = end_day if rng.random() < 0.8 or days == DAYS else end_day - timedelta(days=rng.randrange(DAYS - days))
        granularity = (rng.choices(["hour", "day", "week"], weights=[35, 45, 20])[0] if days <= 31
                       else rng.choices(["day", "week"], weights=[60, 40])[0])
        params = [("from", (end - timedelta(days=days - 1)).isoformat()), ("to", end.isoformat()),
                  ("granularity", granularity)]
        for name in rng.sample(["channel", "connector", "team", "lane", "language", "term"],
                               rng.choices([0, 1, 2], weights=[40, 40, 20])[0]):
            if name == "channel":
                params += [("channel", c) for c in sorted(set(rng.sample(sorted({c.channel for c in mine}), 1)))]
            elif name == "connector":
                params += [("connector", c.slug) for c in rng.sample(mine, min(len(mine), rng.choice([1, 2])))]
            elif name == "team":
                params.append(("team", team or rng.choice([t for t, _ in TEAMS])))
            elif name == "lane":
                params += [("lane", v) for v in rng.sample(["issue", "praise", "ambivalence", "noise"],
                                                           rng.choice([1, 2]))]
            elif name == "language":
                params += [("language", v) for v in sorted(set(rng.choices(LANGS, weights=[60, 12, 8, 8, 6, 3, 3],
                                                                           k=rng.choice([1, 2]))))]
            else:
                params.append(("term", rng.choices([n for n, _ in TERMS], weights=[6] + [2] * 7 + [1] * 12)[0]))
        if rng.random() < 0.15:
            params.append(("compare", "0"))
        draws.append(Draw(user, tuple(params)))
    return draws


def resolve(draw: Draw):
    """The draw as insight.parse_filters reads it: names of connectors, teams and terms as ids."""
    from django.contrib.auth import get_user_model
    from django.http import QueryDict

    from insight import dashboards as insight
    from learning.models import Term
    from listening.models import Connector
    from responses.models import Team

    ids = {"connector": dict(Connector.objects.values_list("slug", "id")),
           "team": dict(Team.objects.values_list("slug", "id")), "term": dict(Term.objects.values_list("name", "id"))}
    query = QueryDict(mutable=True)
    for name, value in draw.params:
        query.appendlist(name, str(ids[name][value]) if name in ids else value)
    user = get_user_model().objects.get(username=draw.user)
    return insight.parse_filters(query, user)


# --- Timing -------------------------------------------------------------------------------------
def timed(function, f) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(f)
    return (time.perf_counter() - started) * 1000.0, result


BEFORE_CARE = "care_before"  # the care panel read from raw cases, as before its rollup
BEFORE_FIRST_RESPONSE = "first_response_before"  # first_response_by_channel sorted from raw cases
BASELINES = (BEFORE_CARE, BEFORE_FIRST_RESPONSE)


def run_timings(args: argparse.Namespace, marker: dict) -> dict:
    """Every panel of the registry (insight.panels), timed, against its raw reference."""
    from bench import insight_raw
    from insight.panels import PANELS, care, first_response

    query = {name: panel.query for name, panel in PANELS.items()}
    naive_query = {name: insight_raw.reference(panel) for name, panel in PANELS.items()}
    PANEL_NAMES = list(PANELS)  # noqa: N806 - the registry's panels, in the page's order
    # The care panel as it was before its rollup (exact times sorted from raw cases), timed right
    # after the rollup one on every filter set: the side-by-side baseline. Not a goal row.
    query[BEFORE_CARE] = care._care_raw
    PANEL_NAMES.insert(PANEL_NAMES.index("care") + 1, BEFORE_CARE)
    query[BEFORE_FIRST_RESPONSE] = first_response.first_response_exact
    PANEL_NAMES.insert(PANEL_NAMES.index("first_response_by_channel") + 1, BEFORE_FIRST_RESPONSE)
    draws = draw_filters(args.runs, args.filter_seed, date.fromisoformat(marker["end_day"]))
    print(f"timing {len(PANEL_NAMES)} panels over {len(draws)} filter sets (naive over the first "
          f"{min(args.naive_runs, len(draws))}), after one warm-up pass", flush=True)
    warm = resolve(draws[0])
    for name in PANEL_NAMES:
        query[name](warm)
        if name in naive_query:
            naive_query[name](warm)
    times = {name: [] for name in PANEL_NAMES}
    naive = {name: [] for name in PANEL_NAMES}
    slowest = {name: (0.0, "") for name in PANEL_NAMES}
    mismatches = {name: [] for name in PANEL_NAMES}
    for i, draw in enumerate(draws):
        f = resolve(draw)
        for name in PANEL_NAMES:
            ms, answer = timed(query[name], f)
            times[name].append(ms)
            slowest[name] = max(slowest[name], (ms, draw.label))
            if i < args.naive_runs and name in naive_query:
                naive_ms, expected = timed(naive_query[name], f)
                naive[name].append(naive_ms)
                difference = insight_raw.first_difference(answer, expected)
                if difference:
                    mismatches[name].append(f"{draw.label}: {difference}")
        done = ", ".join(f"{n} {times[n][-1]:.0f}" for n in PANEL_NAMES)
        print(f"  [{i + 1}/{len(draws)}] {draw.label}: {done} ms", flush=True)
    return {"times": times, "naive": naive, "slowest": slowest, "mismatches": mismatches}


def report(args: argparse.Namespace, marker: dict, timings: dict, loads: list[float]) -> dict:
    from learning.models import Rollup

    PANEL_NAMES = list(timings["times"])  # noqa: N806 - the panels run_timings timed

    rows = [("panel", "runs", "p50 ms", "p95 ms", "max ms", "naive runs", "naive p50", "naive p95", "naive/rollup",
             f"p95 <= {GOAL_P95_MS:.0f} ms", "answers equal")]
    panels = {}
    for name in PANEL_NAMES:
        t, n = timings["times"][name], timings["naive"][name]
        p50, p95 = pct(t, 0.5), pct(t, 0.95)
        n50, n95 = (pct(n, 0.5), pct(n, 0.95)) if n else (None, None)
        ok = p95 <= GOAL_P95_MS or name in BASELINES
        wrong = len(timings["mismatches"][name])
        panels[name] = {"runs": len(t), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(max(t), 1),
                        "slowest": timings["slowest"][name][1], "naive_runs": len(n),
                        "naive_p50_ms": round(n50, 1) if n50 is not None else None,
                        "naive_p95_ms": round(n95, 1) if n95 is not None else None,
                        "ratio_p50": round(n50 / p50, 1) if n50 and p50 else None, "pass": ok,
                        "compared": len(n), "mismatches": wrong}
        rows.append((name, str(len(t)), f"{p50:.1f}", f"{p95:.1f}", f"{max(t):.1f}", str(len(n)),
                     f"{n50:.0f}" if n50 is not None else "-", f"{n95:.0f}" if n95 is not None else "-",
                     f"{n50 / p50:.1f}x" if n50 and p50 else "-",
                     "(baseline)" if name in BASELINES else "pass" if ok else "FAIL",
                     f"{len(n) - wrong}/{len(n)}"))
    counts = marker.get("counts", {})
    print_table(f"Insight panels over {marker['messages']:,} inbound messages ({counts.get('message', 0):,} with "
                f"replies, {counts.get('case', 0):,} cases, {Rollup.objects.count():,} rollup rows); "
                f"{os.cpu_count()} cores, load {loads[0]:.2f} -> {loads[1]:.2f}", rows)
    for name in PANEL_NAMES:
        print(f"  slowest {name}: {timings['slowest'][name][0]:.0f} ms, {timings['slowest'][name][1]}")
    for name, found in timings["mismatches"].items():
        for line in found[:3]:
            print(f"  MISMATCH {name}: {line}")
    goal = all(p["pass"] for p in panels.values())
    print(f"goal (every panel p95 <= {GOAL_P95_MS:.0f} ms): {'met' if goal else 'NOT met'}")
    return {"messages": marker["messages"], "counts": counts, "rollup_rows": Rollup.objects.count(),
            "generation_s": marker.get("generation_s"), "rollup_build_s": marker.get("rollup_build_s"),
            "runs": args.runs, "naive_runs": min(args.naive_runs, args.runs), "cores": os.cpu_count(),
            "load_avg": [round(x, 2) for x in loads], "goal_p95_ms": GOAL_P95_MS, "panels": panels,
            "answers_equal": not any(timings["mismatches"].values()), "goal_met": goal}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_time_limit(args.timeout)
    setup_django(args.database_url)
    started = time.perf_counter()
    try:
        marker = ensure_data(args)
        if args.generate_only:
            print("BENCH dashboards " + json.dumps({"marker": marker}))
            return 0
        rebuilds = compare_rebuilds() if args.rebuild_compare else {}
        loads = [os.getloadavg()[0]]
        timings = run_timings(args, marker)
        loads.append(os.getloadavg()[0])
        figures = {**report(args, marker, timings, loads), **rebuilds}
        figures["total_s"] = round(time.perf_counter() - started, 1)
        print("BENCH dashboards " + json.dumps(figures))
        return 0 if figures["answers_equal"] else 1  # a missed goal is a figure; a wrong answer a failure
    except (BenchTimeout, SystemExit) as exc:
        print(f"BENCH FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
