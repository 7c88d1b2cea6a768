"""Median first-response time by channel: how long customers waited for a first answer on each
channel, over the cases opened in the range (the care panel's cases and narrowing; business time
for teams with a calendar, as there).

Where the care rollup is kept (PostgreSQL) and no counted team has a calendar, the medians are
read from its first-response histograms per channel (the "detail" rows): counts exact, medians
within one bin (5%), so the answer says `"approximate": true` as care's does. Otherwise they are
sorted from the cases (exact)."""

from __future__ import annotations

from django.db import connection

from insight import care_rollup
from insight.filters import Filters, channel_labels
from insight.panels.care import _cases, _percentile, _rollup_where, calendars, waited
from insight.panels.registry import Panel, register

_MEDIANS_SQL = """
SELECT channel, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY date_part('epoch', first_response_at - opened_at))
FROM ({cases}) AS c GROUP BY channel
"""


def _from_rollup(f: Filters) -> dict[str, tuple[int, float]]:
    """channel -> (cases answered, approximate median seconds), from the care rollup's histograms."""
    where, params = _rollup_where(f, [f], detail=True)
    histograms: dict[str, dict[int, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT channel, bin, sum(n) FROM insight_carerollup WHERE metric = 'frs' AND {where} "  # noqa: S608
                       "GROUP BY 1, 2", params)
        for channel, bin_, n in cursor.fetchall():
            if n:
                histograms.setdefault(channel, {})[bin_] = n
    return {channel: (sum(hist.values()), care_rollup.percentile(hist, 0.5))
            for channel, hist in histograms.items() if sum(hist.values())}


def first_response_by_channel(f: Filters) -> dict:
    return _answer(f, rollup=True)


def first_response_exact(f: Filters) -> dict:
    """The panel sorted from raw cases (exact medians), as where the rollup is not kept: the
    dashboards bench times it beside the panel."""
    return _answer(f, rollup=False)


def _answer(f: Filters, rollup: bool) -> dict:
    cases = (_cases(f).filter(first_response_at__isnull=False)
             .values("channel", "team_id", "opened_at", "first_response_at"))
    schedules = calendars(f)
    approximate = rollup and not schedules and care_rollup.kept()
    if approximate:
        found = _from_rollup(f)
    elif connection.vendor == "postgresql" and not schedules:
        sql, params = cases.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_MEDIANS_SQL.format(cases=sql), params)
            found = {channel: (n, median) for channel, n, median in cursor.fetchall()}
    else:
        waits: dict[str, list[float]] = {}
        for row in cases:
            waits.setdefault(row["channel"], []).append(waited(schedules, row, "first_response_at"))
        found = {channel: (len(values), _percentile(values, 0.5)) for channel, values in waits.items()}
    labels = channel_labels()
    rows = [{"key": channel, "label": labels.get(channel) or channel or "(none)", "count": n,
             "value": round(float(median), 1)} for channel, (n, median) in found.items()]
    rows.sort(key=lambda r: (-r["value"], r["label"]))
    # The page shows value_label as the axis title (with " (minutes)") and the column head: "approx."
    # is read there, in words short enough for a phone's axis.
    label = "Approx. median" if approximate else "Median first response"
    return {"rows": rows, "unit": "seconds", "value_label": label, "ignored": ["language", "term"],
            "approximate": approximate}


def _csv(data: dict):
    return ["channel", "label", "cases_answered", "median_seconds"], [
        [r["key"], r["label"], r["count"], r["value"]] for r in data["rows"]]


register(Panel(
    name="first_response_by_channel", title="First response by channel",
    about="Median time to the first answer, per channel, for the cases opened in the period",
    query=first_response_by_channel, csv=_csv, renderer="bars", order=75,
))
