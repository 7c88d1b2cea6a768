"""Insight's filters: what a dashboard request may ask for, parsed, bounded and narrowed to what
the user may see, and the series' buckets.

Every panel takes a `Filters` made by `parse_filters`, which refuses what is malformed, out of
range or not granted with `InvalidFilter` (400) and always bounds the query: a range of at most
MAX_DAYS, hourly series of at most MAX_HOURLY_DAYS, and only the connectors and teams the user may
see (responses.access). The panels themselves are in insight.panels (one registry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.core.cache import cache
from django.db.models import Max, Min
from django.utils import timezone

from cxm.exceptions import CXMError
from learning import rollups
from learning.models import Lane, Rollup, Term
from listening import times as listening_times
from listening.connectors import connector_kinds, get_connector_class
from listening.models import Connector
from responses import access
from responses.access import role_of
from responses.models import Role, Team
from responses.teams import team_connectors

MAX_DAYS = 1096
FIRST_DAY = listening_times.EARLIEST.date()
LAST_DAY = date(2199, 12, 31)  # far enough for any plan, far from the calendar's end
MAX_HOURLY_DAYS = 31
DEFAULT_DAYS = 30
DATA_MAX_DAYS = 366  # a default range that follows old data shows at most its last year
WEEKLY_FROM_DAYS = 92  # ...by week when longer than a quarter
GRANULARITIES = ("hour", "day", "week")
SENTIMENTS = ("negative", "neutral", "positive")
LIST_PARAMS = ("channel", "connector", "team", "lane", "language")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$|^und$")


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
    followed_data: bool = field(default=False, compare=False)  # no messages in the default range: moved to them
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
    return role_of(user) in {Role.SUPERVISOR, Role.BRAND_MANAGER, Role.ADMIN}


def _granted(user) -> tuple[set[int], set[int]]:
    """(team ids, connector ids) the user may read (responses.access decides)."""
    return access.team_ids(user), access.connector_ids(user)


def known_channels() -> set[str]:
    """Channels a filter may name: those of every registered connector kind and those seen."""
    found = cache.get("insight:channels")
    if found is None:
        found = set()
        for kind in connector_kinds():  # what each connector class says it serves
            declared = get_connector_class(kind)
            found |= {declared.channel, *(channel.key for channel in getattr(declared, "channels", ()))}
        found |= set(Connector.objects.values_list("conversations__channel", flat=True).distinct()) - {None}
        cache.set("insight:channels", found, 60)
    return found


def channel_labels() -> dict[str, str]:
    """Channels as people name them, from the connector classes: a class's own channels, else
    its label for its default channel."""
    labels: dict[str, str] = {}
    for kind in connector_kinds():
        declared = get_connector_class(kind)
        labels.setdefault(declared.channel, declared.label)
        labels.update({channel.key: channel.label for channel in getattr(declared, "channels", ())})
    return labels


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


def instant(raw: str, name: str) -> datetime:
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


def _range(params, connector_ids: set[int]) -> tuple[date, date, str, bool]:
    """(start, end, granularity, whether the range followed the data)."""
    today = timezone.now().astimezone(rollups.reporting_tz()).date()
    end = _date(params, "to", today)
    start = _date(params, "from", end - timedelta(days=DEFAULT_DAYS - 1))
    followed = False
    if not params.get("from") and not params.get("to"):
        found = data_range(connector_ids, start, end)
        if found:
            (start, end), followed = found, True
    if start > end:
        raise InvalidFilter(f"the range is upside down: 'from' {start} is after 'to' {end}")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise InvalidFilter(f"a range is at most {MAX_DAYS} days; this one is {days}")
    default_granularity = "week" if followed and days > WEEKLY_FROM_DAYS else "day"
    granularity = (params.get("granularity") or default_granularity).strip()
    if followed and granularity == "hour" and days > MAX_HOURLY_DAYS:  # asked for hours, not for this range
        start, days = end - timedelta(days=MAX_HOURLY_DAYS - 1), MAX_HOURLY_DAYS
    if granularity not in GRANULARITIES:
        raise InvalidFilter(f"'granularity' is one of {', '.join(GRANULARITIES)}")
    if granularity == "hour" and days > MAX_HOURLY_DAYS:
        raise InvalidFilter(f"an hourly series covers at most {MAX_HOURLY_DAYS} days; this one is {days}; "
                            "use day or week")
    return start, end, granularity, followed


def data_range(connector_ids: set[int], start: date, end: date) -> tuple[date, date] | None:
    """Where the default range goes when the last DEFAULT_DAYS hold no message of these
    connectors but other days do (an import of last year's messages, a trial left for months):
    the DEFAULT_DAYS ending on the last day with messages, or back to the first such day,
    at most DATA_MAX_DAYS. None: keep the default (it has data, or there is none anywhere)."""
    days = Rollup.objects.filter(grain=rollups.DAY, dim="sentiment", term_id=rollups.ALL_TERMS,
                                 connector_id__in=connector_ids)
    if not connector_ids or days.filter(bucket__gte=rollups.day_start(start),
                                        bucket__lt=rollups.day_start(end + timedelta(days=1))).exists():
        return None
    first, last = days.aggregate(first=Min("bucket"), last=Max("bucket")).values()
    if last is None:
        return None
    tz = rollups.reporting_tz()
    first_day, last_day = first.astimezone(tz).date(), min(last.astimezone(tz).date(), LAST_DAY)
    first_day = max(min(first_day, last_day - timedelta(days=DEFAULT_DAYS - 1)),
                    last_day - timedelta(days=DATA_MAX_DAYS - 1), FIRST_DAY)
    return first_day, last_day


def parse_filters(params, user) -> Filters:
    teams, connectors = _granted(user)
    start, end, granularity, followed = _range(params, connectors)
    granted_connectors = set(connectors)
    lists = {name: _list(params, name) for name in LIST_PARAMS}
    chosen_teams = _ints(lists["team"], "team")
    if chosen_teams - teams:
        raise InvalidFilter("unknown team: " + ", ".join(map(str, sorted(chosen_teams - teams))))
    if chosen_teams:
        teams = chosen_teams
        connectors &= set().union(*team_connectors(teams).values())
    chosen_connectors = _ints(lists["connector"], "connector")
    if chosen_connectors - granted_connectors:
        raise InvalidFilter("unknown connector: " + ", ".join(map(str, sorted(chosen_connectors - granted_connectors))))
    if chosen_connectors:
        connectors &= chosen_connectors
    check_channels(lists["channel"])
    check_lanes(lists["lane"])
    bad_languages = [v for v in lists["language"] if not _LANGUAGE.match(v)]
    if bad_languages:
        raise InvalidFilter(f"not a language code: {bad_languages[0][:40]!r}")
    term = parse_term(params.get("term"))
    given = [(k, v) for k in ("from", "to", "granularity", "term", "compare") if params.get(k)
             for v in [params.get(k)]] + [(k, v) for k in LIST_PARAMS for v in lists[k]]
    if followed:  # the panels, links and exports ask for the same days, whatever comes in meanwhile
        given = [("from", start.isoformat()), ("to", end.isoformat()),
                 *([] if params.get("granularity") else [("granularity", granularity)]), *given]
    return Filters(
        start=start, end=end, granularity=granularity, connector_ids=tuple(sorted(connectors)),
        team_ids=tuple(sorted(teams)), channels=tuple(sorted(set(lists["channel"]))),
        lanes=tuple(sorted(set(lists["lane"]))), languages=tuple(sorted(set(lists["language"]))), term=term,
        connectors_chosen=bool(chosen_connectors), compare=params.get("compare", "1") not in ("0", "false", "off"),
        given=tuple(given), followed_data=followed,
    )


def check_channels(values) -> None:
    unknown = set(values) - known_channels()
    if unknown:
        raise InvalidFilter(f"unknown channel: {', '.join(sorted(v[:40] for v in unknown))}")


def check_lanes(values) -> None:
    bad_lanes = set(values) - set(Lane.values)
    if bad_lanes:
        raise InvalidFilter(f"unknown lane: {', '.join(sorted(v[:40] for v in bad_lanes))}; "
                            f"lanes are {', '.join(Lane.values)}")


def parse_term(raw) -> int | None:
    if raw in (None, ""):
        return None
    (term,) = _ints([raw], "term")
    if not Term.objects.filter(pk=term).exists():
        raise InvalidFilter(f"unknown term: {term}")
    return term


def options(user) -> dict:
    """What the filter bar offers this user."""
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


def buckets(f: Filters) -> tuple[list[datetime], list[str]]:
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


def bucket_index(f: Filters, starts: list[datetime]):
    """A function from a rollup row's bucket to its position in the series."""
    positions = {s: i for i, s in enumerate(starts)}
    if f.granularity != "week":
        return positions.get
    tz = rollups.reporting_tz()

    def week_of(bucket: datetime):
        day = bucket.astimezone(tz).date()
        return positions.get(rollups.day_start(day - timedelta(days=day.weekday())))

    return week_of
