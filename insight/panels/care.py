"""Care performance: response and resolution times, SLA, backlog and workload.

On PostgreSQL the counts and times come from the care rollup (insight.care_rollup, kept by
triggers on cases and replies): counts of cases, replies and SLAs met or late are exact; medians
and p90s are read from histograms of log-spaced bins, so they are approximate (within one bin,
5%), and the answer says so (`approximate`). What depends on the moment asked (unanswered cases
whose SLA ran out, the backlog) is counted from the cases themselves, through small indexes. When
the rollup is not kept for the reporting time zone (SQLite, or the zone changed since the last
`rebuild_rollups`) the panel reads raw cases and its times are exact.

Times are business time for a team with a calendar (responses.business_time: its open hours,
holidays off), so a case opened on Friday evening and answered on Monday at opening took
minutes, not a weekend; a team without one is open around the clock, and its times are
wall-clock time. Business minutes depend on each case's calendar, so when any counted team has
one the figures are computed here, case by case; otherwise PostgreSQL sorts the durations itself."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.db.models import Count, Q

from insight import care_rollup
from insight.filters import Filters
from insight.panels.registry import Panel, register
from responses import business_time
from responses.business_time import Schedule
from responses.models import ACTIVE_STATUSES, Case, Reply, SlaState, Team

# --- Care (cases and replies) -------------------------------------------------------------------


def _cases(f: Filters):
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


def calendars(f: Filters) -> dict[int, Schedule]:
    """The counted teams that have a calendar, with their schedules (two queries)."""
    return {team_id: s for team_id, s in business_time.schedules_for(f.team_ids).items() if s is not None}


def waited(schedules: dict[int, Schedule], row: dict, field: str) -> float | None:
    """Seconds from the case's opening to `field`: business seconds under its team's calendar."""
    until = row[field]
    if until is None:
        return None
    schedule = schedules.get(row["team_id"])
    if schedule is None:
        return (until - row["opened_at"]).total_seconds()
    # Rounded to the microsecond: minutes * 60 must not turn an exact 120.0 into 120.00000000000001.
    return round(business_time.minutes_between(schedule, row["opened_at"], until) * 60, 6)


def _care_times(f: Filters) -> dict:
    """First-response and resolution times (count, median, p90 in seconds) and SLA compliance of
    the cases opened in the range. An SLA is met when the first response came within the case's
    SLA minutes, breached when it came later or has not come and the SLA has run out."""
    cases = _cases(f).annotate(late=Q(sla_state=SlaState.BREACHED) | Q(sla_due_at__lt=f.now)).values(
        "team_id", "opened_at", "first_response_at", "resolved_at", "sla_minutes", "late")
    schedules = calendars(f)
    if connection.vendor == "postgresql" and not schedules:
        sql, params = cases.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_CARE_SQL.format(cases=sql), params)
            frn, frt, rn, res, met, breached = cursor.fetchone()
            (frm, frp), (rm, rp) = frt or (None, None), res or (None, None)  # NULL when no case counts
    else:
        rows = list(cases)
        frs = [s for s in (waited(schedules, r, "first_response_at") for r in rows) if s is not None]
        res = [s for s in (waited(schedules, r, "resolved_at") for r in rows) if s is not None]
        frn, frm, frp = len(frs), _percentile(frs, 0.5), _percentile(frs, 0.9)
        rn, rm, rp = len(res), _percentile(res, 0.5), _percentile(res, 0.9)
        timed = [r for r in rows if r["sla_minutes"] is not None]
        seconds = {id(r): waited(schedules, r, "first_response_at") for r in timed}
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
    return _shaped(f, by_agent, by_team, replied, team_replies)


def _shaped(f: Filters, by_agent: Counter, by_team: Counter, replied: Counter, team_replies: Counter):
    by_agent, by_team = +by_agent, +by_team  # no rows for counts that fell to zero
    replied, team_replies = +replied, +team_replies
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
    """From the care rollup where it is kept (approximate times), else from raw cases (exact)."""
    if care_rollup.kept():
        return _care_from_rollup(f)
    return _care_raw(f)


def _care_raw(f: Filters) -> dict:
    """Care from cases and replies: its exact medians sort every case in range. The three
    independent reads run side by side on PostgreSQL (each on its own pooled connection), so the
    panel takes about as long as the slowest of them rather than their sum."""
    calls = {"now": (_care_times, f), "volumes": (_volumes, f)}
    if f.compare:
        calls["before"] = (_care_times, f.previous())
    done = _side_by_side(calls)
    agents, teams = done["volumes"]
    return {**done["now"], "backlog": _backlog(f), "agents": agents, "teams": teams,
            "previous": done.get("before"), "ignored": ["language", "term"], "approximate": False}


def _periods(f: Filters) -> list[Filters]:
    return [f, f.previous()] if f.compare else [f]


def _rollup_where(f: Filters, periods: list[Filters], detail: bool | None = None) -> tuple[str, list]:
    """The WHERE clause of the rollup rows counted for these periods, with a CASE giving each
    row's period (0 the first). `detail`: read the rows per connector, channel and lane (by
    default only when the filters narrow by one of them)."""
    params: list = []
    ranges, labels = [], []
    for index, period in enumerate(periods):
        for grain, since, until in care_rollup.slots(period.start, period.end):
            ranges.append("(grain = %s AND bucket >= %s AND bucket < %s)")
            params += [grain, since, until]
        labels.append(index)
    if detail is None:
        detail = bool(f.connectors_chosen or f.channels or f.lanes)
    where = ["detail = %s", "team_id = ANY(%s)", "(" + " OR ".join(ranges) + ")"]
    params = [detail, list(f.team_ids), *params]
    if f.connectors_chosen:
        where.append("connector_id = ANY(%s)")
        params.append(list(f.connector_ids))
    if f.channels:
        where.append("channel = ANY(%s)")
        params.append(list(f.channels))
    if f.lanes:
        where.append("lane = ANY(%s)")
        params.append(list(f.lanes))
    return " AND ".join(where), params


def _rollup_sums(f: Filters) -> list[Counter]:
    """Per period (f, then f.previous() when compared): (metric, team, user, bin) -> count,
    summed over the period's rows."""
    periods = _periods(f)
    where, params = _rollup_where(f, periods)
    period_of = " ".join(f"WHEN bucket >= %s THEN {i}" for i in range(len(periods) - 1))
    # Periods follow one another backwards in time: a row at or after a period's start is in it.
    case = f"CASE {period_of} ELSE {len(periods) - 1} END" if len(periods) > 1 else "0"
    starts = [p.start_at for p in periods[:-1]]
    sql = (f"SELECT {case} AS period, metric, team_id, user_id, bin, sum(n) FROM insight_carerollup "  # noqa: S608
           f"WHERE {where} GROUP BY 1, 2, 3, 4, 5")
    out = [Counter() for _ in periods]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*starts, *params])
        for period, metric, team_id, user_id, bin_, n in cursor.fetchall():
            if n:
                out[period][(metric, team_id, user_id, bin_)] += n
    return out


def _ran_out(f: Filters) -> list[int]:
    """Per period: cases not answered yet whose SLA ran out by `f.now` (from the cases: it
    depends on the moment; the partial index insight_care_unanswered_idx holds them)."""
    periods = _periods(f)
    late = Q(sla_state=SlaState.BREACHED) | Q(sla_due_at__lt=f.now)
    counts = {}
    for index, period in enumerate(periods):
        counts[f"p{index}"] = Count("id", filter=Q(opened_at__gte=period.start_at, opened_at__lt=period.end_at))
    rows = _narrowed(Case.objects.filter(
        team_id__in=f.team_ids, opened_at__gte=periods[-1].start_at, opened_at__lt=f.end_at,
        first_response_at__isnull=True, sla_minutes__isnull=False).filter(late), f)
    found = rows.aggregate(**counts)
    return [found[f"p{index}"] for index in range(len(periods))]


def _times_from(sums: Counter, ran_out: int) -> dict:
    """First-response and resolution times and SLA compliance from one period's rollup sums."""
    histograms: dict[str, Counter] = {"frs": Counter(), "rs": Counter()}
    met = late = 0
    for (metric, _team, _user, bin_), n in sums.items():
        if metric in histograms:
            histograms[metric][bin_] += n
        elif metric == "met":
            met += n
        elif metric == "late":
            late += n

    def times(metric):
        hist = histograms[metric]
        median, p90 = care_rollup.percentile(hist, 0.5), care_rollup.percentile(hist, 0.9)
        return {"count": sum(hist.values()), "median_seconds": round(median, 1) if median is not None else None,
                "p90_seconds": round(p90, 1) if p90 is not None else None}

    breached = late + ran_out
    return {"first_response": times("frs"), "resolution": times("rs"),
            "sla": {"met": met, "breached": breached,
                    "compliance": round(met / (met + breached), 4) if met + breached else None}}


def _care_from_rollup(f: Filters) -> dict:
    """The rollup's sums, the unanswered cases whose SLA ran out and the backlog: three reads,
    side by side on PostgreSQL outside a transaction (see _side_by_side)."""
    schedules = calendars(f)
    calls = {"sums": (_rollup_sums, f), "backlog": (_backlog, f)}
    if schedules:
        # Business time is the team calendar's, case by case: those times come from the cases.
        calls["now"] = (_care_times, f)
        if f.compare:
            calls["before"] = (_care_times, f.previous())
    else:
        calls["ran_out"] = (_ran_out, f)
    done = _side_by_side(calls)
    sums = done["sums"]
    if schedules:
        now, before = done["now"], done.get("before")
    else:
        now = _times_from(sums[0], done["ran_out"][0])
        before = _times_from(sums[1], done["ran_out"][1]) if f.compare else None
    agents, teams = _volumes_from(f, sums[0])
    return {**now, "backlog": done["backlog"], "agents": agents, "teams": teams, "previous": before,
            "ignored": ["language", "term"], "approximate": not schedules}


def _volumes_from(f: Filters, sums: Counter) -> tuple[list[dict], list[dict]]:
    """Cases opened in the range and the agents' replies on them, per agent and per team, from
    the rollup (exact counts)."""
    by_agent, by_team, replied, team_replies = Counter(), Counter(), Counter(), Counter()
    for (metric, team_id, user_id, _bin), n in sums.items():
        if metric == "cases":
            by_team[team_id] += n
            if user_id:
                by_agent[user_id] += n
        elif metric == "replies":
            team_replies[team_id] += n
            if user_id:
                replied[user_id] += n
    return _shaped(f, by_agent, by_team, replied, team_replies)


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

    # At most 4 at once: each holds a connection, and a dozen segments must not take a dozen.
    with ThreadPoolExecutor(max_workers=min(len(calls), 4)) as pool:
        futures = {name: pool.submit(run, fn, arg) for name, (fn, arg) in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def _care_rows(data: dict):
    header = ["section", "id", "name", "metric", "value"]
    rows = []
    for section in ("first_response", "resolution"):
        for metric in ("count", "median_seconds", "p90_seconds"):
            rows.append([section, "", "", metric, data[section][metric]])
    for metric in ("met", "breached", "compliance"):
        rows.append(["sla", "", "", metric, data["sla"][metric]])
    for queue in data["backlog"]:
        for metric in ("new", "open", "pending", "total"):
            rows.append(["backlog", queue["queue_id"], f"{queue['team']} / {queue['queue']}", metric, queue[metric]])
    for section, key in (("agents", "user_id"), ("teams", "team_id")):
        for item in data[section]:
            for metric in ("cases", "replies"):
                rows.append([section, item[key], item["name"], metric, item[metric]])
    return header, rows


register(Panel(
    name="care", title="Care performance",
    about="Response and resolution times, SLA, backlog and workload",
    query=care, csv=_care_rows, renderer="care", order=70,
))
