"""The dashboards' panels computed straight from the raw tables, without rollups.

Same names, same `insight.filters.Filters` and the same answers as the panels of the registry
(insight.panels, whose `raw` names the function here), but every figure
is a plain aggregate over Message joined to its current Classification, over Case, or over Reply:
no Rollup, no ConversationMood, no cache. It is the reference the panels are checked against
(tests, bench/dashboards.py) and the naive baseline the bench times them against, so it is
written to be obviously right, not fast.

A message panel counts the inbound messages sent in [start_at, end_at) on the filters' connectors
whose current classification succeeded, narrowed by channel, lane, language and term (the topics
JSON names the term). Buckets: whole hours from the range's start, or days and weeks (Monday
first) of the reporting time zone. Care counts the cases opened in the range (their replies whatever their
date), recovered the conversations whose first classified inbound message is in the range.
Care times are business time for the cases of teams with a calendar (responses.business_time,
asked one case at a time), wall-clock time otherwise.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Func, IntegerField, Q, Value
from django.db.models.functions import TruncDay, TruncWeek

from insight import care_rollup
from insight.panels.messages import distribution_items
from learning.models import Classification, Intent, Term
from learning.rollups import day_start, reporting_tz
from listening.models import Direction
from responses.business_time import add_business_minutes, business_minutes_between, schedule_for
from responses.models import ACTIVE_STATUSES, BusinessCalendar, Case, Reply, SlaState, Team

SENTIMENTS = ("negative", "neutral", "positive")
TOP_TERMS, RISING_MIN_MENTIONS, RISING_TOP = 20, 5, 10
UTC = ZoneInfo("UTC")


def current(f):
    """Current, successful classifications of the inbound messages the filters select."""
    rows = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__sent_at__gte=f.start_at, message__sent_at__lt=f.end_at, message__connector_id__in=f.connector_ids,
    )
    if f.channels:
        rows = rows.filter(message__channel__in=f.channels)
    if f.lanes:
        rows = rows.filter(lane__in=f.lanes)
    if f.languages:
        rows = rows.filter(language__in=f.languages)
    if f.term:
        rows = rows.filter(topics__contains=[{"term_id": f.term}])
    return rows


def _counts(rows, *fields) -> Counter:
    """Number of rows per value (or tuple of values) of `fields`."""
    out: Counter = Counter()
    for row in rows.values_list(*fields).annotate(n=Count("id")).order_by():
        out[row[0] if len(fields) == 1 else row[:-1]] = row[-1]
    return out


# --- Buckets ----------------------------------------------------------------------------------
def buckets(f) -> tuple[list, list[str]]:
    """Start instants (UTC) and labels of every bucket of the range, empty ones included."""
    if f.granularity == "hour":
        starts, at = [], f.start_at
        while at < f.end_at:
            starts.append(at)
            at += timedelta(hours=1)
        return starts, [s.astimezone(reporting_tz()).strftime("%Y-%m-%d %H:00 %Z") for s in starts]
    days = [f.start + timedelta(days=i) for i in range((f.end - f.start).days + 1)]
    if f.granularity == "week":
        days = sorted({d - timedelta(days=d.weekday()) for d in days})
    return [day_start(d) for d in days], [d.isoformat() for d in days]


def _with_bucket(f, rows):
    """rows annotated with `bucket`: the number of whole hours since the range's start, or the
    start of the local day or week."""
    if f.granularity == "hour":
        since = ExpressionWrapper(F("message__sent_at") - Value(f.start_at), output_field=DurationField())
        return rows.annotate(bucket=Func(since, template="floor(date_part('epoch', %(expressions)s) / 3600)",
                                         output_field=IntegerField()))
    trunc = TruncWeek if f.granularity == "week" else TruncDay
    return rows.annotate(bucket=trunc("message__sent_at", tzinfo=reporting_tz()))


def _series(f, rows, field: str) -> dict[str, list[int]]:
    """Per value of `field`, its count in every bucket."""
    starts, _ = buckets(f)
    position = {s: i for i, s in enumerate(starts)}
    series: dict[str, list[int]] = {}
    for (bucket, value), n in _counts(_with_bucket(f, rows), "bucket", field).items():
        index = int(bucket) if f.granularity == "hour" else position[bucket.astimezone(UTC)]
        series.setdefault(value, [0] * len(starts))[index] += n
    return series


def _net(counts) -> float | None:
    total = sum(counts.get(s, 0) for s in SENTIMENTS)
    return round(100.0 * (counts.get("positive", 0) - counts.get("negative", 0)) / total, 1) if total else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# --- Message panels ---------------------------------------------------------------------------
def _sentiment_totals(f) -> dict:
    counts = _counts(current(f), "sentiment")
    out = {s: counts.get(s, 0) for s in SENTIMENTS}
    return {**out, "total": sum(out.values()), "net": _net(out), "not_scored": counts.get("", 0)}


def sentiment(f) -> dict:
    starts, labels = buckets(f)
    found = _series(f, current(f), "sentiment")
    series = {s: found.get(s, [0] * len(starts)) for s in SENTIMENTS}
    net = [_net({s: series[s][i] for s in SENTIMENTS}) for i in range(len(starts))]
    # Sentiment "": a language the models do not read (or no text): counted apart, not guessed.
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts], "series": series, "net": net,
            "not_scored": found.get("", [0] * len(starts)), "totals": _sentiment_totals(f),
            "previous": _sentiment_totals(f.previous()) if f.compare else None, "ignored": []}


def _volume_totals(f) -> dict:
    rows = current(f)
    by_channel, by_lane = _counts(rows, "message__channel"), _counts(rows, "lane")
    return {"total": sum(by_channel.values()), "by_channel": dict(by_channel), "by_lane": dict(by_lane)}


def volume(f) -> dict:
    starts, labels = buckets(f)
    rows = current(f)
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts],
            "by_channel": _series(f, rows, "message__channel"), "by_lane": _series(f, rows, "lane"),
            "totals": _volume_totals(f), "previous": _volume_totals(f.previous()) if f.compare else None,
            "ignored": []}


def _distribution(f, field: str, labels: dict, leave_out: frozenset = frozenset()) -> dict:
    now = Counter({k: v for k, v in _counts(current(f), field).items() if k not in leave_out})
    before = (Counter({k: v for k, v in _counts(current(f.previous()), field).items() if k not in leave_out})
              if f.compare else Counter())
    return distribution_items(now, before, labels, leave_out, compare=f.compare)


def intents(f) -> dict:
    """Intents' shares of the messages. Facts about the conversation (a follow-up) are not what the
    customer wants, and are left out (Intent.counts_on_dashboards)."""
    names = dict(Intent.objects.values_list("slug", "name"))
    facts = frozenset(Intent.objects.filter(counts_on_dashboards=False).values_list("slug", flat=True))
    return _distribution(f, "intent", names, facts)


def emotions(f) -> dict:
    return _distribution(f, "emotion", {})


_MENTIONS_SQL = """
SELECT t.term_id, r.sentiment, count(*)
FROM ({rows}) AS r, LATERAL (
    SELECT DISTINCT (e->>'term_id')::bigint AS term_id
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.topics) = 'array' THEN r.topics ELSE '[]' END) AS e
    WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e->'term_id') = 'number'
) AS t
WHERE t.term_id > 0
GROUP BY 1, 2
"""


def _mentions(f) -> dict[int, Counter]:
    """Per term, the messages that mention it, by sentiment (a message counts once per term).
    With a term filter, that term only."""
    sql, params = current(f).values("sentiment", "topics").query.sql_with_params()
    found: dict[int, Counter] = defaultdict(Counter)
    with connection.cursor() as cursor:
        cursor.execute(_MENTIONS_SQL.format(rows=sql), params)
        for term_id, value, n in cursor.fetchall():
            if not f.term or term_id == f.term:
                found[term_id][value] += n
    return found


def topics(f) -> dict:
    now = _mentions(f)
    before = {t: sum(c.values()) for t, c in _mentions(f.previous()).items()} if f.compare else {}
    known = {t.pk: t for t in Term.objects.filter(pk__in=set(now) | set(before))}
    terms = []
    for term_id, counts in now.items():
        if term_id not in known:
            continue
        mentions = sum(counts.get(s, 0) for s in SENTIMENTS)
        terms.append({
            "term_id": term_id, "name": known[term_id].name, "kind": known[term_id].kind, "mentions": mentions,
            **{s: counts.get(s, 0) for s in SENTIMENTS}, "net": _net(counts),
            "previous_mentions": before.get(term_id, 0) if f.compare else None,
            "change": mentions - before.get(term_id, 0) if f.compare else None,
        })
    terms.sort(key=lambda t: (-t["mentions"], t["name"]))
    voices = [t for t in terms if t["kind"] in (Term.Kind.BRAND, Term.Kind.COMPETITOR)]
    voice_total = sum(t["mentions"] for t in voices)
    rising = [{**{k: t[k] for k in ("term_id", "name", "kind", "mentions", "previous_mentions")},
               # Against no mentions a growth has no meaning: the term is new.
               "growth": (round((t["mentions"] - t["previous_mentions"]) / t["previous_mentions"], 3)
                          if t["previous_mentions"] else None),
               "new": t["previous_mentions"] == 0}
              for t in terms if f.compare and t["mentions"] >= RISING_MIN_MENTIONS
              and t["mentions"] > t["previous_mentions"]]
    rising.sort(key=lambda t: (not t["new"], -(t["growth"] or 0), -t["mentions"], t["name"]))
    return {"terms": terms[:TOP_TERMS],
            "share_of_voice": [{**{k: t[k] for k in ("term_id", "name", "kind", "mentions")},
                                "share": _share(t["mentions"], voice_total)} for t in voices],
            "rising": rising[:RISING_TOP], "ignored": []}


# --- Care: cases and replies ------------------------------------------------------------------
def _narrowed(f, cases):
    if f.connectors_chosen:
        cases = cases.filter(connector_id__in=f.connector_ids)
    if f.channels:
        cases = cases.filter(channel__in=f.channels)
    if f.lanes:
        cases = cases.filter(lane__in=f.lanes)
    return cases


def _cases(f):
    return _narrowed(f, Case.objects.filter(team_id__in=f.team_ids, opened_at__gte=f.start_at, opened_at__lt=f.end_at))


_DURATION_SQL = """
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.9) WITHIN GROUP (ORDER BY s)
FROM (SELECT EXTRACT(EPOCH FROM r.until - r.opened_at) AS s FROM ({cases}) AS r) AS d
"""


def _with_calendar(cases) -> bool:
    """Whether any of these cases' teams has a calendar: then their times are business time."""
    return BusinessCalendar.objects.filter(team_id__in=cases.values("team_id")).exists()


def _business_seconds(team_id, start, end) -> float:
    """Open seconds of the team between two instants, one case at a time (responses.business_time)."""
    return round(business_minutes_between(team_id, start, end) * 60, 6)


def _interpolated(values: list[float], fraction: float) -> float | None:
    """percentile_cont: the value at rank fraction * (n - 1), linear between neighbours."""
    if not values:
        return None
    values = sorted(values)
    rank = fraction * (len(values) - 1)
    below, above = values[math.floor(rank)], values[math.ceil(rank)]
    return below + (above - below) * (rank - math.floor(rank))


def _duration(cases, field: str) -> dict:
    """How long after opening `field` came: count, median and 90th percentile (interpolated);
    business time for the cases of teams with a calendar."""
    if _with_calendar(cases):
        seconds = [_business_seconds(team_id, opened, until) for team_id, opened, until in
                   cases.filter(**{f"{field}__isnull": False}).values_list("team_id", "opened_at", field)]
        count, median, p90 = len(seconds), _interpolated(seconds, 0.5), _interpolated(seconds, 0.9)
    else:
        sql, params = (cases.filter(**{f"{field}__isnull": False}).annotate(until=F(field))
                       .values("opened_at", "until").query.sql_with_params())
        with connection.cursor() as cursor:
            cursor.execute(_DURATION_SQL.format(cases=sql), params)
            count, median, p90 = cursor.fetchone()

    def rounded(x):
        return round(float(x), 1) if x is not None else None

    return {"count": count, "median_seconds": rounded(median), "p90_seconds": rounded(p90)}


def _sla(cases, now) -> dict:
    """Met: first response within the SLA (business minutes under a calendar). Breached: later,
    or none yet and the SLA ran out."""
    timed = cases.filter(sla_minutes__isnull=False)
    ran_out = Q(sla_state=SlaState.BREACHED) | Q(sla_due_at__lt=now)
    if _with_calendar(cases):
        answered = timed.filter(first_response_at__isnull=False).values_list(
            "team_id", "opened_at", "first_response_at", "sla_minutes")
        due = [first <= add_business_minutes(schedule_for(team_id), opened, minutes)
               for team_id, opened, first, minutes in answered]
        met, late = sum(due), len(due) - sum(due)
        breached = late + timed.filter(first_response_at__isnull=True).filter(ran_out).count()
        return {"met": met, "breached": breached, "compliance": _share(met, met + breached)}
    due = F("opened_at") + F("sla_minutes") * timedelta(minutes=1)
    met = timed.filter(first_response_at__lte=due).count()
    breached = timed.filter(Q(first_response_at__gt=due) | (Q(first_response_at__isnull=True) & ran_out)).count()
    return {"met": met, "breached": breached, "compliance": _share(met, met + breached)}


def _care_times(f) -> dict:
    cases = _cases(f)
    return {"first_response": _duration(cases, "first_response_at"), "resolution": _duration(cases, "resolved_at"),
            "sla": _sla(cases, f.now)}


def _backlog(f) -> list[dict]:
    active = _narrowed(f, Case.objects.filter(team_id__in=f.team_ids, status__in=ACTIVE_STATUSES))
    queues: dict = {}
    for (queue_id, queue, team, status), n in _counts(active, "queue_id", "queue__name", "team__name",
                                                        "status").items():
        entry = queues.setdefault(queue_id, {"queue_id": queue_id, "queue": queue or "(no queue)", "team": team,
                                             "new": 0, "open": 0, "pending": 0, "total": 0})
        entry[status] += n
        entry["total"] += n
    return sorted(queues.values(), key=lambda q: (-q["total"], q["team"], q["queue"]))


def _people(f) -> tuple[list[dict], list[dict]]:
    """Cases assigned and replies written (not automatic) per agent and per team."""
    cases = _cases(f)
    replies = Reply.objects.filter(case__in=cases, automatic=False)
    by_agent = _counts(cases.exclude(assignee=None), "assignee_id")
    replied = _counts(replies.exclude(author=None), "author_id")
    users = get_user_model().objects.in_bulk(set(by_agent) | set(replied))
    agents = [{"user_id": uid, "name": users[uid].get_full_name() or users[uid].get_username(),
               "cases": by_agent.get(uid, 0), "replies": replied.get(uid, 0)} for uid in users]
    by_team, team_replies = _counts(cases, "team_id"), _counts(replies, "case__team_id")
    names = dict(Team.objects.filter(pk__in=f.team_ids).values_list("id", "name"))
    teams = [{"team_id": tid, "name": names.get(tid, ""), "cases": by_team.get(tid, 0),
              "replies": team_replies.get(tid, 0)} for tid in set(by_team) | set(team_replies)]
    return (sorted(agents, key=lambda a: (-a["cases"], -a["replies"], a["name"])),
            sorted(teams, key=lambda t: (-t["cases"], t["name"])))


def care(f) -> dict:
    agents, teams = _people(f)
    return {**_care_times(f), "backlog": _backlog(f), "agents": agents, "teams": teams,
            "previous": _care_times(f.previous()) if f.compare else None, "ignored": ["language", "term"]}


# --- Recovered customers ----------------------------------------------------------------------
_RECOVERED_SQL = """
SELECT channel, count(*), count(*) FILTER (WHERE n >= 2),
       count(*) FILTER (WHERE n >= 2 AND last_sentiment IN ('neutral', 'positive'))
FROM (
    SELECT m.conversation_id, count(*) AS n, min(m.sent_at) AS first_at,
           (array_agg(c.sentiment ORDER BY m.sent_at, m.id))[1] AS first_sentiment,
           (array_agg(c.sentiment ORDER BY m.sent_at DESC, m.id))[1] AS last_sentiment,
           (array_agg(m.channel ORDER BY m.sent_at, m.id))[1] AS channel,
           (array_agg(c.language ORDER BY m.sent_at, m.id))[1] AS language
    FROM learning_classification c JOIN listening_message m ON m.id = c.message_id
    WHERE c.is_current AND c.status = 'ok' AND m.direction = 'in' AND m.connector_id = ANY(%(connectors)s)
    GROUP BY m.conversation_id
) AS conversations
WHERE first_sentiment = 'negative' AND first_at >= %(start)s AND first_at < %(end)s
  AND (cardinality(%(channels)s::text[]) = 0 OR channel = ANY(%(channels)s))
  AND (cardinality(%(languages)s::text[]) = 0 OR language = ANY(%(languages)s))
GROUP BY channel ORDER BY channel
"""


def _recovery(f) -> dict:
    """A conversation began negative when its first inbound message with a current classification
    did, in the range; it was followed up when it has a second, and recovered when the latest is
    neutral or positive. Of two messages sent at the same instant, the lower id counts."""
    with connection.cursor() as cursor:
        cursor.execute(_RECOVERED_SQL, {"connectors": list(f.connector_ids), "start": f.start_at, "end": f.end_at,
                                        "channels": list(f.channels), "languages": list(f.languages)})
        rows = cursor.fetchall()
    by_channel = [{"channel": channel, "began_negative": began, "followed_up": followed, "recovered": back,
                   "share": _share(back, followed)} for channel, began, followed, back in rows]
    began, followed, back = (sum(r[k] for r in by_channel) for k in ("began_negative", "followed_up", "recovered"))
    return {"began_negative": began, "followed_up": followed, "recovered": back, "still_negative": followed - back,
            "share": _share(back, followed), "by_channel": by_channel}


def recovered(f) -> dict:
    previous = _recovery(f.previous()) if f.compare else None
    if previous:
        previous.pop("by_channel")
    return {**_recovery(f), "previous": previous, "ignored": ["lane", "term"]}


def reference(panel):
    """The raw reference of a declared panel (insight.panels.registry.Panel.raw_name)."""
    return globals()[panel.raw_name]


# Answers whose times are read from histograms (insight.care_rollup) say `"approximate": true`:
# their medians and p90s must lie within one histogram bin of the exact raw figure.
# first_response_by_channel's rows carry their median as "value", and may order two channels
# within one bin of each other unlike the exact answer: its rows are compared by key.
_APPROXIMATE_FIELDS = ("median_seconds", "p90_seconds", "value")


def first_difference(a, b, path: str = "", approximate: bool = False) -> str:
    """Where two panel answers differ ("" if nowhere); floats to 1e-9, dicts whatever their order.
    Under an answer marked approximate, medians and p90s to within one bin (care_rollup.tolerance)."""
    if isinstance(a, dict) and isinstance(b, dict):
        approximate = approximate or a.get("approximate") is True
        for key in sorted(set(a) | set(b), key=str):
            if key == "approximate" and key not in b:
                continue  # the raw reference is exact: only the panel says how it counted
            if key == "value_label" and approximate:
                continue  # an approximate answer says so in its label
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'rollup' if key in a else 'raw'}"
            found = first_difference(a[key], b[key], f"{path}.{key}", approximate)
            if found:
                return found
        return ""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items against {len(b)}"
        if approximate and all(isinstance(x, dict) and "key" in x for x in [*a, *b]):
            a, b = sorted(a, key=lambda x: str(x["key"])), sorted(b, key=lambda x: str(x["key"]))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]", approximate)
            if found:
                return found
        return ""
    if approximate and path.rsplit(".", 1)[-1] in _APPROXIMATE_FIELDS and a is not None and b is not None:
        off = abs(float(a) - float(b))
        return "" if off <= care_rollup.tolerance(b) else f"{path}: {a!r} against {b!r} (more than one bin off)"
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return "" if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else f"{path}: {a!r} against {b!r}"
    return "" if a == b else f"{path}: {a!r} against {b!r}"


def first_response_by_channel(f) -> dict:
    """Per channel, the median wait for a first response of the cases opened in the range."""
    cases = _cases(f).filter(first_response_at__isnull=False)
    from insight.filters import channel_labels  # names as people read them: presentation, not a figure

    labels, rows = channel_labels(), []
    for channel in sorted(set(cases.values_list("channel", flat=True))):
        timing = _duration(cases.filter(channel=channel), "first_response_at")
        rows.append({"key": channel, "label": labels.get(channel) or channel or "(none)", "count": timing["count"],
                     "value": timing["median_seconds"]})
    rows.sort(key=lambda r: (-r["value"], r["label"]))
    return {"rows": rows, "unit": "seconds", "value_label": "Median first response", "ignored": ["language", "term"]}


def segment_sentiment(f) -> dict:
    """Everyone's and each segment's net sentiment, with segment membership decided in Python from
    each customer's tier, attributes, tags and signal times (not responses.segments' query)."""
    from listening.models import Customer, CustomerTag, Segment, Signal

    by_customer: dict = defaultdict(Counter)
    everyone: Counter = Counter()
    for value, customer_id in current(f).values_list("sentiment", "message__author__customer_id"):
        if value in SENTIMENTS:
            everyone[value] += 1
            if customer_id is not None:
                by_customer[customer_id][value] += 1
    customers = Customer.objects.in_bulk(list(by_customer))
    tags = defaultdict(set)
    for customer_id, name in CustomerTag.objects.filter(customer_id__in=list(by_customer)).values_list(
            "customer_id", "name"):
        tags[customer_id].add(name)
    signal_times = defaultdict(list)
    for customer_id, kind, at in Signal.objects.filter(customer_id__in=list(by_customer)).values_list(
            "customer_id", "type", "occurred_at"):
        signal_times[(customer_id, kind)].append(at)

    def attribute_holds(test, attributes) -> bool:
        actual = attributes.get(test["key"])
        if "set" in test and (actual is not None) != test["set"]:
            return False
        if "in" in test and actual not in test["in"]:
            return False
        for bound in ("gte", "lte"):
            if bound in test and (actual is None or (actual < test[bound] if bound == "gte" else actual > test[bound])):
                return False
        return True

    def member(customer, definition) -> bool:
        if definition.get("tier") and customer.tier not in definition["tier"]:
            return False
        if not all(attribute_holds(t, customer.attributes or {}) for t in definition.get("attributes", [])):
            return False
        for test in definition.get("signals", []):
            since = f.now - timedelta(days=test["days"])
            if sum(1 for at in signal_times[(customer.pk, test["type"])] if at > since) < test["count"]:
                return False
        return set(definition.get("tags", [])) <= tags[customer.pk]

    def row(key, label, counts):
        total = sum(counts[s] for s in SENTIMENTS)
        if not total:
            return None
        return {"key": key, "label": label, "count": total, **{s: counts[s] for s in SENTIMENTS},
                "value": round(100.0 * (counts["positive"] - counts["negative"]) / total, 1)}

    rows = [row("everyone", "Everyone", everyone)]
    for segment in Segment.objects.order_by("name")[:12]:
        counts: Counter = Counter()
        for customer_id, customer in customers.items():
            if member(customer, segment.definition):
                counts.update(by_customer[customer_id])
        rows.append(row(str(segment.pk), segment.name, counts))
    return {"rows": [r for r in rows if r], "unit": "%", "value_label": "Net sentiment (positive − negative)",
            "row_label": "Segment", "count_label": "messages", "kpis": False, "drill": False, "ignored": []}
