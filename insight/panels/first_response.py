"""Median first-response time by channel: how long customers waited for a first answer on each
channel, over the cases opened in the range (the care panel's cases and narrowing; business time
for teams with a calendar, as there)."""

from __future__ import annotations

from django.db import connection

from insight.filters import Filters, channel_labels
from insight.panels.care import _cases, _percentile, calendars, waited
from insight.panels.registry import Panel, register

_MEDIANS_SQL = """
SELECT channel, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY date_part('epoch', first_response_at - opened_at))
FROM ({cases}) AS c GROUP BY channel
"""


def first_response_by_channel(f: Filters) -> dict:
    cases = (_cases(f).filter(first_response_at__isnull=False)
             .values("channel", "team_id", "opened_at", "first_response_at"))
    schedules = calendars(f)
    if connection.vendor == "postgresql" and not schedules:
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
    return {"rows": rows, "unit": "seconds", "value_label": "Median first response", "ignored": ["language", "term"]}


def _csv(data: dict):
    return ["channel", "label", "cases_answered", "median_seconds"], [
        [r["key"], r["label"], r["count"], r["value"]] for r in data["rows"]]


register(Panel(
    name="first_response_by_channel", title="First response by channel",
    about="Median time to the first answer, per channel, for the cases opened in the period",
    query=first_response_by_channel, csv=_csv, renderer="bars", order=75,
))
