"""Insight: the brand managers' dashboards, as queries. Views render what these return.

Message panels (sentiment, volume, intents, emotions, topics) read `Rollup` rows, never the
messages; care reads `Case` and `Reply` through indexes; recovered customers reads
`ConversationMood`. Every panel takes a `Filters` made by `parse_filters`, which refuses what is
malformed, out of range or not granted with `InvalidFilter` (400) and always bounds the query:
a range of at most MAX_DAYS, hourly series of at most MAX_HOURLY_DAYS, and only the connectors
and teams the user may see (responses.access).
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, connections
from django.db.models import Count, Q, Sum
from django.utils import timezone

from cxm.exceptions import CXMError
from learning import rollups
from learning.models import Classification, ConversationMood, Intent, Lane, Rollup, Sentiment, Term
from listening import times as listening_times
from listening.models import Connector, Direction

MAX_DAYS = 1096
FIRST_DAY = listening_times.EARLIEST.date()
LAST_DAY = date(2199, 12, 31)  # far enough for any plan, far from the calendar's end
MAX_HOURLY_DAYS = 31
DEFAULT_DAYS = 30
GRANULARITIES = ("hour", "day", "week")
SENTIMENTS = ("negative", "neutral", "positive")
LIST_PARAMS = ("channel", "connector", "team", "lane", "language")
TOP_TERMS = 20
RISING_MIN_MENTIONS = 5
DRILL_PAGE = 50
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$|^und$")
_VALUE = re.compile(r"^[a-z0-9_-]{1,60}$")


class InvalidFilter(CXMError):
    status_code = 400
    code = "invalid_filter"


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # inclusive
    granularity: str
    connector_ids: tuple[int, ...]  # what the message panels count: access applied
    team_ids: tuple[int, ...]  # what the care panel counts: access applied
    channels: tuple[str, ...] = ()
    lanes: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    term: int | None = None
    connectors_chosen: bool = False  # the user named connectors (care then narrows cases to them)
    compare: bool = True
    given: tuple = field(default=(), compare=False)
    # One "now" per request: whether an unanswered case's SLA has run out must not depend on
    # which query asked first.
    now: datetime = field(default_factory=timezone.now, compare=False)

    @property
    def start_at(self) -> datetime:
        return rollups.day_start(self.start)

    @property
    def end_at(self) -> datetime:
        return rollups.day_start(self.end + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Filters:
        """The period of the same length just before this one."""
        return replace(self, start=self.start - timedelta(days=self.days), end=self.start - timedelta(days=1))

    def as_query(self) -> str:
        return urlencode(list(self.given))


# --- Access and parsing ----------------------------------------------------------------------


def can_view(user) -> bool:
    from responses.access import role_of
    from responses.models import Role

    return role_of(user) in {Role.SUPERVISOR, Role.BRAND_MANAGER, Role.ADMIN}


def _granted(user) -> tuple[set[int], set[int]]:
    """(team ids, connector ids) the user may read (responses.access decides)."""
    from responses import access

    return access.team_ids(user), access.connector_ids(user)


def known_channels() -> set[str]:
    """Channels a filter may name: those of every registered connector kind and those seen."""
    found = cache.get("insight:channels")
    if found is None:
        from listening.connectors import connector_kinds, get_connector_class

        found = {get_connector_class(kind).channel for kind in connector_kinds()}
        found |= set(Connector.objects.values_list("conversations__channel", flat=True).distinct()) - {None}
        found |= {"messenger", "instagram", "whatsapp"}
        cache.set("insight:channels", found, 60)
    return found


def _date(params, name: str, default: date) -> date:
    raw = params.get(name) or ""
    if not raw:
        return default
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidFilter(f"{name!r} must be a date like 2026-11-24, not {raw[:40]!r}") from None
    _check_day(day, name)
    return day


def _check_day(day: date, name: str) -> None:
    """Dashboards step whole periods back and forth from a date: near year 1 or 9999 that leaves
    the calendar (OverflowError). No message is older than listening.times.EARLIEST."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidFilter(f"{name!r} must be a date from {FIRST_DAY} to {LAST_DAY}, not {day}")


def _instant(raw: str, name: str) -> datetime:
    """An ISO date or time (naive: in the reporting zone) as a UTC instant within the dates a
    filter may name. UTC, so an offset PostgreSQL cannot store (+23:59) never reaches a query."""
    try:
        moment = datetime.fromisoformat(raw.replace(" ", "+") if "T" in raw else raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=rollups.reporting_tz())
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidFilter(f"{name!r} must be an ISO date or time, not {raw[:40]!r}") from None
    _check_day(moment.date(), name)
    return moment


def _ints(values, name: str) -> set[int]:
    try:
        ids = {int(v) for v in values}
    except (TypeError, ValueError):
        raise InvalidFilter(f"{name!r} takes numeric ids") from None
    if any(i <= 0 or i > 2**62 for i in ids):
        raise InvalidFilter(f"{name!r} takes positive ids")
    return ids


def _list(params, name: str) -> list[str]:
    values = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
    values = [values] if isinstance(values, str) else list(values)
    values = [str(v).strip() for v in values if str(v).strip()]
    if len(values) > 50:
        raise InvalidFilter(f"at most 50 values of {name!r}")
    return values


def _range(params) -> tuple[date, date, str]:
    today = timezone.now().astimezone(rollups.reporting_tz()).date()
    end = _date(params, "to", today)
    start = _date(params, "from", end - timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        raise InvalidFilter(f"the range is upside down: 'from' {start} is after 'to' {end}")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise InvalidFilter(f"a range is at most {MAX_DAYS} days; this one is {days}")
    granularity = (params.get("granularity") or "day").strip()
    if granularity not in GRANULARITIES:
        raise InvalidFilter(f"'granularity' is one of {', '.join(GRANULARITIES)}")
    if granularity == "hour" and days > MAX_HOURLY_DAYS:
        raise InvalidFilter(f"an hourly series covers at most {MAX_HOURLY_DAYS} days; this one is {days}; "
                            "use day or week")
    return start, end, granularity


def parse_filters(params, user) -> Filters:
    start, end, granularity = _range(params)
    teams, connectors = _granted(user)
    granted_connectors = set(connectors)
    lists = {name: _list(params, name) for name in LIST_PARAMS}
    chosen_teams = _ints(lists["team"], "team")
    if chosen_teams - teams:
        raise InvalidFilter("unknown team: " + ", ".join(map(str, sorted(chosen_teams - teams))))
    if chosen_teams:
        from responses.teams import team_connectors

        teams = chosen_teams
        connectors &= set().union(*team_connectors(teams).values())
    chosen_connectors = _ints(lists["connector"], "connector")
    if chosen_connectors - granted_connectors:
        raise InvalidFilter("unknown connector: " + ", ".join(map(str, sorted(chosen_connectors - granted_connectors))))
    if chosen_connectors:
        connectors &= chosen_connectors
    _check_channels(lists["channel"])
    _check_lanes(lists["lane"])
    bad_languages = [v for v in lists["language"] if not _LANGUAGE.match(v)]
    if bad_languages:
        raise InvalidFilter(f"not a language code: {bad_languages[0][:40]!r}")
    term = _term(params.get("term"))
    given = [(k, v) for k in ("from", "to", "granularity", "term", "compare") if params.get(k)
             for v in [params.get(k)]] + [(k, v) for k in LIST_PARAMS for v in lists[k]]
    return Filters(
        start=start, end=end, granularity=granularity, connector_ids=tuple(sorted(connectors)),
        team_ids=tuple(sorted(teams)), channels=tuple(sorted(set(lists["channel"]))),
        lanes=tuple(sorted(set(lists["lane"]))), languages=tuple(sorted(set(lists["language"]))), term=term,
        connectors_chosen=bool(chosen_connectors), compare=params.get("compare", "1") not in ("0", "false", "off"),
        given=tuple(given),
    )


def _check_channels(values) -> None:
    unknown = set(values) - known_channels()
    if unknown:
        raise InvalidFilter(f"unknown channel: {', '.join(sorted(v[:40] for v in unknown))}")


def _check_lanes(values) -> None:
    bad_lanes = set(values) - set(Lane.values)
    if bad_lanes:
        raise InvalidFilter(f"unknown lane: {', '.join(sorted(v[:40] for v in bad_lanes))}; "
                            f"lanes are {', '.join(Lane.values)}")


def _term(raw) -> int | None:
    if raw in (None, ""):
        return None
    (term,) = _ints([raw], "term")
    if not Term.objects.filter(pk=term).exists():
        raise InvalidFilter(f"unknown term: {term}")
    return term


def options(user) -> dict:
    """What the filter bar offers this user."""
    from responses.models import Team

    teams, connectors = _granted(user)
    langs = (Rollup.objects.filter(grain=rollups.DAY, dim="sentiment", term_id=rollups.ALL_TERMS,
                                   connector_id__in=connectors).exclude(language="")
             .values_list("language", flat=True).distinct())
    return {
        "channels": sorted(known_channels()),
        "connectors": [{"id": c.pk, "name": c.name, "kind": c.kind}
                       for c in Connector.objects.filter(pk__in=connectors).order_by("name")],
        "teams": [{"id": t.pk, "name": t.name} for t in Team.objects.filter(pk__in=teams).order_by("name")],
        "lanes": list(Lane.values),
        "languages": sorted(set(langs)),
        "terms": [{"id": t.pk, "name": t.name, "kind": t.kind} for t in Term.objects.order_by("kind", "name")],
        "granularities": list(GRANULARITIES),
    }


# --- Buckets -----------------------------------------------------------------------------------


def _buckets(f: Filters) -> tuple[list[datetime], list[str]]:
    """Start instants and labels of the series' buckets, oldest first."""
    tz = rollups.reporting_tz()
    if f.granularity == "hour":
        # Whole UTC hours (the hourly rollups' buckets) overlapping the range: in a zone with a
        # half-hour offset the first and last hours reach 30 minutes past the range's edges.
        starts, at = [], rollups.hour_bucket(f.start_at)
        while at < f.end_at:
            starts.append(at)
            at += timedelta(hours=1)
        return starts, [s.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for s in starts]  # %Z: DST repeats an hour
    days = [f.start + timedelta(days=i) for i in range(f.days)]
    if f.granularity == "week":
        days = sorted({d - timedelta(days=d.weekday()) for d in days})
    return [rollups.day_start(d) for d in days], [d.isoformat() for d in days]


def _bucket_index(f: Filters, starts: list[datetime]):
    """A function from a rollup row's bucket to its position in the series."""
    positions = {s: i for i, s in enumerate(starts)}
    if f.granularity != "week":
        return positions.get
    tz = rollups.reporting_tz()

    def week_of(bucket: datetime):
        day = bucket.astimezone(tz).date()
        return positions.get(rollups.day_start(day - timedelta(days=day.weekday())))

    return week_of


# --- Message panels (rollups) ------------------------------------------------------------------


def _rows(f: Filters, dim: str, *group: str, grain: str = rollups.DAY, terms: str = "one"):
    """Summed rollup counts for the filters, grouped by `group`. `terms`: "one" counts every
    message (or those of the chosen term), "each" the rows of every term."""
    start_at = rollups.hour_bucket(f.start_at) if grain == rollups.HOUR else f.start_at
    rows = Rollup.objects.filter(grain=grain, dim=dim, bucket__gte=start_at, bucket__lt=f.end_at,
                                 connector_id__in=f.connector_ids)
    if terms == "each":
        # A list, not "term_id <> 0": PostgreSQL then probes the index once per term, each a range
        # of buckets, instead of reading every term row of all time.
        ids = [f.term] if f.term else list(Term.objects.values_list("id", flat=True))
        rows = rows.filter(term_id__in=ids)
    else:
        rows = rows.filter(term_id=f.term or rollups.ALL_TERMS)
    for name, values in (("channel", f.channels), ("lane", f.lanes), ("language", f.languages)):
        if values:
            rows = rows.filter(**{f"{name}__in": values})
    # Re-classification can leave rows at 0: a group summing to 0 is no group at all.
    return rows.values(*group).annotate(n=Sum("count")).filter(n__gt=0).order_by()


def _grain(f: Filters) -> str:
    return rollups.HOUR if f.granularity == "hour" else rollups.DAY


def _net(counts: dict) -> float | None:
    total = sum(counts.get(s, 0) for s in SENTIMENTS)
    return round(100.0 * (counts.get("positive", 0) - counts.get("negative", 0)) / total, 1) if total else None


def _sentiment_totals(f: Filters) -> dict:
    counts = {s: 0 for s in SENTIMENTS}
    not_scored = 0
    for row in _rows(f, "sentiment", "value"):
        if row["value"] in counts:
            counts[row["value"]] += row["n"]
        elif row["value"] == "":
            not_scored += row["n"]
    return {**counts, "total": sum(counts.values()), "net": _net(counts), "not_scored": not_scored}


def sentiment(f: Filters) -> dict:
    starts, labels = _buckets(f)
    index = _bucket_index(f, starts)
    series = {s: [0] * len(starts) for s in SENTIMENTS}
    not_scored = [0] * len(starts)  # sentiment "": a language the models do not read
    for row in _rows(f, "sentiment", "bucket", "value", grain=_grain(f)):
        i = index(row["bucket"])
        if i is not None and row["value"] in series:
            series[row["value"]][i] += row["n"]
        elif i is not None and row["value"] == "":
            not_scored[i] += row["n"]
    net = [_net({s: series[s][i] for s in SENTIMENTS}) for i in range(len(starts))]
    totals = {s: sum(series[s]) for s in SENTIMENTS}
    # Shares and the net score are of the scored messages; the others are counted, not guessed.
    totals = {**totals, "total": sum(totals.values()), "net": _net(totals), "not_scored": sum(not_scored)}
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts], "series": series, "net": net,
            "not_scored": not_scored, "totals": totals,
            "previous": _sentiment_totals(f.previous()) if f.compare else None, "ignored": []}


def _volume_totals(f: Filters) -> dict:
    by_channel, by_lane = {}, {}
    for row in _rows(f, "sentiment", "channel", "lane"):
        by_channel[row["channel"]] = by_channel.get(row["channel"], 0) + row["n"]
        by_lane[row["lane"]] = by_lane.get(row["lane"], 0) + row["n"]
    return {"total": sum(by_channel.values()), "by_channel": by_channel, "by_lane": by_lane}


def volume(f: Filters) -> dict:
    starts, labels = _buckets(f)
    index = _bucket_index(f, starts)
    by_channel: dict[str, list[int]] = {}
    by_lane: dict[str, list[int]] = {}
    for row in _rows(f, "sentiment", "bucket", "channel", "lane", grain=_grain(f)):
        i = index(row["bucket"])
        if i is None:
            continue
        by_channel.setdefault(row["channel"], [0] * len(starts))[i] += row["n"]
        by_lane.setdefault(row["lane"], [0] * len(starts))[i] += row["n"]
    totals = {"total": sum(map(sum, by_channel.values())),
              "by_channel": {k: sum(v) for k, v in by_channel.items()},
              "by_lane": {k: sum(v) for k, v in by_lane.items()}}
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts], "by_channel": by_channel,
            "by_lane": by_lane, "totals": totals, "previous": _volume_totals(f.previous()) if f.compare else None,
            "ignored": []}


def _distribution(f: Filters, dim: str, labels: dict, leave_out: frozenset = frozenset()) -> dict:
    now = {row["value"]: row["n"] for row in _rows(f, dim, "value") if row["value"] not in leave_out}
    before = ({row["value"]: row["n"] for row in _rows(f.previous(), dim, "value") if row["value"] not in leave_out}
              if f.compare else {})
    total, previous_total = sum(now.values()), sum(before.values())
    items = []
    for value in sorted(set(now) | set(before), key=lambda v: (-now.get(v, 0), v)):
        share = now.get(value, 0) / total if total else 0.0
        previous_share = before.get(value, 0) / previous_total if previous_total else None
        items.append({
            "value": value, "label": labels.get(value) or value.replace("_", " ").capitalize() or "(none)",
            "count": now.get(value, 0), "share": round(share, 4),
            "previous_count": before.get(value, 0) if f.compare else None,
            "previous_share": round(previous_share, 4) if previous_share is not None else None,
            "change": round(share - previous_share, 4) if previous_share is not None else None,
        })
    return {"items": items, "total": total, "previous_total": previous_total if f.compare else None, "ignored": [],
            "left_out": sorted(labels.get(v, v) for v in leave_out)}


def intents(f: Filters) -> dict:
    """Intents' shares of the messages. Facts about the conversation (a follow-up) are not what the
    customer wants, and are left out (Intent.counts_on_dashboards)."""
    names = dict(Intent.objects.values_list("slug", "name"))
    facts = frozenset(Intent.objects.filter(counts_on_dashboards=False).values_list("slug", flat=True))
    return _distribution(f, "intent", names, facts)


def emotions(f: Filters) -> dict:
    return _distribution(f, "emotion", {})


def topics(f: Filters) -> dict:
    counts: dict[int, dict] = {}
    for row in _rows(f, "sentiment", "term_id", "value", terms="each"):
        counts.setdefault(row["term_id"], {s: 0 for s in SENTIMENTS})[row["value"]] = row["n"]
    before = ({row["term_id"]: row["n"] for row in _rows(f.previous(), "sentiment", "term_id", terms="each")}
              if f.compare else {})
    known = {t.pk: t for t in Term.objects.filter(pk__in=set(counts) | set(before))}
    terms = []
    for term_id, by_sentiment in counts.items():
        if term_id not in known:
            continue  # a deleted term
        mentions = sum(by_sentiment.get(s, 0) for s in SENTIMENTS)
        terms.append({
            "term_id": term_id, "name": known[term_id].name, "kind": known[term_id].kind, "mentions": mentions,
            **{s: by_sentiment.get(s, 0) for s in SENTIMENTS}, "net": _net(by_sentiment),
            "previous_mentions": before.get(term_id, 0) if f.compare else None,
            "change": mentions - before.get(term_id, 0) if f.compare else None,
        })
    terms.sort(key=lambda t: (-t["mentions"], t["name"]))
    voices = [t for t in terms if t["kind"] in (Term.Kind.BRAND, Term.Kind.COMPETITOR)]
    voice_total = sum(t["mentions"] for t in voices)
    rising = [
        {"term_id": t["term_id"], "name": t["name"], "kind": t["kind"], "mentions": t["mentions"],
         "previous_mentions": t["previous_mentions"],
         "growth": round((t["mentions"] - t["previous_mentions"]) / max(t["previous_mentions"], 1), 3)}
        for t in terms if f.compare and t["mentions"] >= RISING_MIN_MENTIONS and t["mentions"] > t["previous_mentions"]
    ]
    rising.sort(key=lambda t: (-t["growth"], -t["mentions"], t["name"]))
    return {
        "terms": terms[:TOP_TERMS],
        "share_of_voice": [{"term_id": t["term_id"], "name": t["name"], "kind": t["kind"], "mentions": t["mentions"],
                            "share": round(t["mentions"] / voice_total, 4)} for t in voices if voice_total],
        "rising": rising[:10], "ignored": [],
    }


# --- Care (cases and replies) -------------------------------------------------------------------


def _cases(f: Filters):
    from responses.models import Case

    return _narrowed(Case.objects.filter(team_id__in=f.team_ids, opened_at__gte=f.start_at, opened_at__lt=f.end_at),
                     f)


def _narrowed(rows, f: Filters, prefix: str = ""):
    """Cases (or rows of cases, through `prefix`) narrowed by the filters that apply to them:
    connector only when the user named one (a team's cases may come from connectors it does not own)."""
    if f.connectors_chosen:
        rows = rows.filter(**{f"{prefix}connector_id__in": f.connector_ids})
    if f.channels:
        rows = rows.filter(**{f"{prefix}channel__in": f.channels})
    if f.lanes:
        rows = rows.filter(**{f"{prefix}lane__in": f.lanes})
    return rows


def _percentile(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    values = sorted(values)
    position = fraction * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


_CARE_SQL = """
SELECT
  count(frs), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY frs),
  count(rs), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY rs),
  count(*) FILTER (WHERE sla_minutes IS NOT NULL AND frs <= sla_minutes * 60),
  count(*) FILTER (WHERE sla_minutes IS NOT NULL AND (frs > sla_minutes * 60 OR (frs IS NULL AND late)))
FROM (
  -- date_part gives float8 (EXTRACT gives numeric, slower to sort); one sort per column for both percentiles
  SELECT date_part('epoch', first_response_at - opened_at) AS frs,
         date_part('epoch', resolved_at - opened_at) AS rs, sla_minutes, late
  FROM ({cases}) AS c
) AS t
"""


def _care_times(f: Filters) -> dict:
    """First-response and resolution times (count, median, p90 in seconds) and SLA compliance of
    the cases opened in the range. An SLA is met when the first response came within the case's
    SLA minutes, breached when it came later or has not come and the SLA has run out."""
    from responses.models import SlaState

    cases = _cases(f).annotate(late=Q(sla_state=SlaState.BREACHED) | Q(sla_due_at__lt=f.now)).values(
        "opened_at", "first_response_at", "resolved_at", "sla_minutes", "late")
    if connection.vendor == "postgresql":
        sql, params = cases.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_CARE_SQL.format(cases=sql), params)
            frn, frt, rn, res, met, breached = cursor.fetchone()
            (frm, frp), (rm, rp) = frt or (None, None), res or (None, None)  # NULL when no case counts
    else:
        rows = list(cases)
        frs = [(r["first_response_at"] - r["opened_at"]).total_seconds() for r in rows if r["first_response_at"]]
        res = [(r["resolved_at"] - r["opened_at"]).total_seconds() for r in rows if r["resolved_at"]]
        frn, frm, frp = len(frs), _percentile(frs, 0.5), _percentile(frs, 0.9)
        rn, rm, rp = len(res), _percentile(res, 0.5), _percentile(res, 0.9)
        timed = [r for r in rows if r["sla_minutes"] is not None]
        seconds = {id(r): (r["first_response_at"] - r["opened_at"]).total_seconds() if r["first_response_at"] else None
                   for r in timed}
        met = sum(1 for r in timed if seconds[id(r)] is not None and seconds[id(r)] <= r["sla_minutes"] * 60)
        breached = sum(1 for r in timed if (seconds[id(r)] is not None and seconds[id(r)] > r["sla_minutes"] * 60)
                       or (seconds[id(r)] is None and r["late"]))

    def rounded(x):
        return round(float(x), 1) if x is not None else None

    return {
        "first_response": {"count": frn, "median_seconds": rounded(frm), "p90_seconds": rounded(frp)},
        "resolution": {"count": rn, "median_seconds": rounded(rm), "p90_seconds": rounded(rp)},
        "sla": {"met": met, "breached": breached,
                "compliance": round(met / (met + breached), 4) if met + breached else None},
    }


def _backlog(f: Filters) -> list[dict]:
    from responses.models import ACTIVE_STATUSES, Case

    cases = _narrowed(Case.objects.filter(team_id__in=f.team_ids, status__in=ACTIVE_STATUSES), f)
    queues: dict = {}
    for row in cases.values("queue_id", "queue__name", "team__name", "status").annotate(n=Count("id")).order_by():
        entry = queues.setdefault(row["queue_id"], {
            "queue_id": row["queue_id"], "queue": row["queue__name"] or "(no queue)", "team": row["team__name"],
            "new": 0, "open": 0, "pending": 0, "total": 0})
        entry[row["status"]] += row["n"]
        entry["total"] += row["n"]
    return sorted(queues.values(), key=lambda q: (-q["total"], q["team"], q["queue"]))


def _volumes(f: Filters) -> tuple[list[dict], list[dict]]:
    """Cases opened in the range and the agents' replies on them, per agent and per team."""
    from responses.models import Reply, Team

    by_agent, by_team, replied, team_replies = Counter(), Counter(), Counter(), Counter()
    for assignee_id, team_id, n in _cases(f).values_list("assignee_id", "team_id").annotate(n=Count("id")).order_by():
        by_team[team_id] += n
        if assignee_id:
            by_agent[assignee_id] += n
    replies = _narrowed(Reply.objects.filter(
        automatic=False, case__team_id__in=f.team_ids, case__opened_at__gte=f.start_at, case__opened_at__lt=f.end_at,
    ), f, prefix="case__")
    for author_id, team_id, n in replies.values_list("author_id", "case__team_id").annotate(n=Count("id")).order_by():
        team_replies[team_id] += n
        if author_id:
            replied[author_id] += n
    users = get_user_model().objects.in_bulk(set(by_agent) | set(replied))
    agents = [{"user_id": uid, "name": _name(users.get(uid)), "cases": by_agent[uid], "replies": replied[uid]}
              for uid in set(by_agent) | set(replied)]
    names = dict(Team.objects.filter(pk__in=f.team_ids).values_list("id", "name"))
    teams = [{"team_id": tid, "name": names.get(tid, ""), "cases": by_team[tid], "replies": team_replies[tid]}
             for tid in set(by_team) | set(team_replies)]
    return (sorted(agents, key=lambda a: (-a["cases"], -a["replies"], a["name"])),
            sorted(teams, key=lambda t: (-t["cases"], t["name"])))


def _name(user) -> str:
    return (user.get_full_name() or user.get_username()) if user else ""


def care(f: Filters) -> dict:
    """Care reads cases, not rollups: its exact medians sort every case in range. The three
    independent reads run side by side on PostgreSQL (each on its own pooled connection), so the
    panel takes about as long as the slowest of them rather than their sum."""
    calls = {"now": (_care_times, f), "volumes": (_volumes, f)}
    if f.compare:
        calls["before"] = (_care_times, f.previous())
    done = _side_by_side(calls)
    agents, teams = done["volumes"]
    return {**done["now"], "backlog": _backlog(f), "agents": agents, "teams": teams,
            "previous": done.get("before"), "ignored": ["language", "term"]}


def _side_by_side(calls: dict) -> dict:
    """Run read-only queries concurrently on PostgreSQL outside a transaction (a transaction's
    uncommitted rows are invisible to other connections, so inside one they run in turn)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block or len(calls) < 2:
        return {name: fn(arg) for name, (fn, arg) in calls.items()}

    def run(fn, arg):
        try:
            return fn(arg)
        finally:
            connections.close_all()  # this thread's connection goes back to the pool

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(run, fn, arg) for name, (fn, arg) in calls.items()}
        return {name: future.result() for name, future in futures.items()}


# --- Recovered customers ------------------------------------------------------------------------


def _recovery(f: Filters) -> dict:
    moods = ConversationMood.objects.filter(first_sentiment="negative", first_at__gte=f.start_at,
                                            first_at__lt=f.end_at, connector_id__in=f.connector_ids)
    if f.channels:
        moods = moods.filter(channel__in=f.channels)
    if f.languages:
        moods = moods.filter(language__in=f.languages)
    followed = Q(inbound_count__gte=2)
    recovered = followed & Q(last_sentiment__in=["neutral", "positive"])
    by_channel = []
    for row in moods.values("channel").annotate(
        began=Count("pk"), followed=Count("pk", filter=followed), recovered=Count("pk", filter=recovered)
    ).order_by("channel"):
        by_channel.append({"channel": row["channel"], "began_negative": row["began"], "followed_up": row["followed"],
                           "recovered": row["recovered"],
                           "share": round(row["recovered"] / row["followed"], 4) if row["followed"] else None})
    began = sum(r["began_negative"] for r in by_channel)
    followed_up = sum(r["followed_up"] for r in by_channel)
    back = sum(r["recovered"] for r in by_channel)
    return {"began_negative": began, "followed_up": followed_up, "recovered": back,
            "still_negative": followed_up - back, "share": round(back / followed_up, 4) if followed_up else None,
            "by_channel": by_channel}


def recovered(f: Filters) -> dict:
    """Conversations whose first customer message (in the range) was negative; of those the
    customer wrote in again, the share whose latest message is neutral or positive."""
    now = _recovery(f)
    previous = _recovery(f.previous()) if f.compare else None
    if previous:
        previous.pop("by_channel")
    return {**now, "previous": previous, "ignored": ["lane", "term"]}


PANELS = {"sentiment": sentiment, "volume": volume, "intents": intents, "emotions": emotions, "topics": topics,
          "care": care, "recovered": recovered}


# --- Drill-down ---------------------------------------------------------------------------------


def _point(f: Filters, params) -> tuple[Filters, dict, datetime, datetime]:
    """Narrow the filters to a clicked point: its bucket and its value."""
    start_at, end_at = f.start_at, f.end_at
    raw_bucket = (params.get("bucket") or "").strip()
    if raw_bucket:
        bucket = _instant(raw_bucket, "bucket")
        size = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[f.granularity]
        start_at, end_at = max(start_at, bucket), min(end_at, bucket + size)
    where = {}
    for name in ("sentiment", "intent", "emotion"):
        value = (params.get(name) or "").strip()
        if value:
            if not _VALUE.match(value) or (name == "sentiment" and value not in Sentiment.values):
                raise InvalidFilter(f"not a valid {name}: {value[:40]!r}")
            where[name] = value
    narrowed = {k: [params.get(k)] for k in ("lane", "channel") if params.get(k)}
    term = _term(params.get("term")) if params.get("term") else f.term
    _check_lanes(narrowed.get("lane", []))
    _check_channels(narrowed.get("channel", []))
    f = replace(f, term=term, lanes=tuple(narrowed.get("lane", f.lanes)),
                channels=tuple(narrowed.get("channel", f.channels)))
    return f, where, start_at, end_at


def _cursor(raw: str):
    try:
        moment, pk = raw.rsplit("|", 1)
        if not pk.isascii() or not pk.isdigit() or len(pk) > 18:
            raise ValueError(pk)
        return _instant(moment, "before"), int(pk)
    except (ValueError, InvalidFilter):
        raise InvalidFilter("'before' is not a cursor this page gave") from None


def drilldown(f: Filters, params, user=None) -> dict:
    """The messages behind a clicked point, newest first, a page at a time."""
    f, where, start_at, end_at = _point(f, params)
    rows = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__connector_id__in=f.connector_ids, message__sent_at__gte=start_at, message__sent_at__lt=end_at,
        **where,
    )
    for name, values in (("channel", f.channels), ("lane", f.lanes), ("language", f.languages)):
        if values:
            key = "message__channel__in" if name == "channel" else f"{name}__in"
            rows = rows.filter(**{key: values})
    if f.term:
        if connection.vendor == "postgresql":
            rows = rows.filter(topics__contains=[{"term_id": f.term}])
        else:  # SQLite has no JSON containment; the topics writer always puts term_id first
            rows = rows.filter(topics__contains=f'"term_id": {f.term},')
    before = (params.get("before") or "").strip()
    if before:
        moment, pk = _cursor(before)
        rows = rows.filter(Q(message__sent_at__lt=moment) | Q(message__sent_at=moment, message_id__lt=pk))
    page = list(rows.select_related("message", "message__author", "message__connector")
                .order_by("-message__sent_at", "-message_id")[:DRILL_PAGE + 1])
    more = len(page) > DRILL_PAGE
    page = page[:DRILL_PAGE]
    cases = _visible_cases(user, [c.message.conversation_id for c in page])
    messages = [{
        "id": c.message_id, "sent_at": c.message.sent_at.isoformat(), "channel": c.message.channel,
        "connector": c.message.connector.name,
        "author": (c.message.author.display_name or c.message.author.handle) if c.message.author else "",
        "text": c.message.text, "sentiment": c.sentiment, "intent": c.intent, "emotion": c.emotion, "lane": c.lane,
        "language": c.language, "conversation_id": c.message.conversation_id,
        "case_id": cases.get(c.message.conversation_id),
        # For display: "not scored" instead of a sentiment, and the lane's reason behind a "why".
        "not_scored": "not_scored" in (c.flags or []),
        "lane_reason": str((c.priority_factors or {}).get("lane_reason", "")),
    } for c in page]
    last = page[-1] if page else None
    return {"messages": messages,
            "next": f"{last.message.sent_at.isoformat()}|{last.message_id}" if more and last else None}


def _visible_cases(user, conversation_ids) -> dict[int, int]:
    if user is None or not conversation_ids:
        return {}
    from responses.access import visible_cases

    return dict(visible_cases(user).filter(conversation_id__in=conversation_ids)
                .values_list("conversation_id", "id"))
