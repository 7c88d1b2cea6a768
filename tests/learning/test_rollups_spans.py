"""Weekly and monthly sentiment rows (learning.rollups, grains "w" and "m"): `spans` covers a
range of days exactly, with whole months and weeks inside it, and the rows of each grain hold the
same counts as the day rows they sum."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from learning import rollups
from tests.insight.test_panels import world  # noqa: F401 - the generated world


@pytest.mark.parametrize("start, end", [
    (date(2026, 6, 7), date(2026, 12, 3)),  # 180 days: months, weeks and days
    (date(2026, 11, 4), date(2026, 12, 3)),  # 30 days: weeks and days, no whole month
    (date(2026, 11, 1), date(2026, 11, 30)),  # exactly one month
    (date(2026, 12, 1), date(2026, 12, 3)),  # a few days
    (date(2026, 11, 30), date(2026, 11, 30)),  # one Monday
])
@pytest.mark.parametrize("months", [True, False])
def test_spans_cover_the_days_once_with_the_coarsest_rows(settings, start, end, months):
    settings.CXM_REPORT_TIME_ZONE = "America/New_York"
    spans = rollups.spans(start, end, months=months)
    covered = []
    for grain, since, until in spans:
        first, after = rollups.local_day(since), rollups.local_day(until)
        if grain == rollups.MONTH:
            assert months and first.day == 1 and after.day == 1
        if grain == rollups.WEEK:
            assert first.weekday() == 0 and after.weekday() == 0
        covered += [first + timedelta(days=i) for i in range((after - first).days)]
    assert covered == [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if not months:
        assert all(grain != rollups.MONTH for grain, _, _ in spans)


def test_week_and_month_rows_sum_the_day_rows(world, settings):  # noqa: F811 - the generated world
    from learning.models import Rollup

    settings.CXM_REPORT_TIME_ZONE = "Asia/Kolkata"  # local midnight is not an UTC hour
    rollups.rebuild()
    tz = rollups.reporting_tz()
    expected: dict[str, Counter] = {rollups.WEEK: Counter(), rollups.MONTH: Counter()}
    for row in Rollup.objects.filter(grain=rollups.DAY, dim="sentiment").values():
        day = row["bucket"].astimezone(tz).date()
        rest = (row["term_id"], row["connector_id"], row["channel"], row["lane"], row["language"], row["value"])
        expected[rollups.WEEK][(rollups.day_start(rollups.week_start(day)), *rest)] += row["count"]
        expected[rollups.MONTH][(rollups.day_start(day.replace(day=1)), *rest)] += row["count"]
    for grain, sums in expected.items():
        stored = Counter({(r["bucket"], r["term_id"], r["connector_id"], r["channel"], r["lane"], r["language"],
                           r["value"]): r["count"] for r in Rollup.objects.filter(grain=grain).values()})
        assert stored and stored == +sums, grain
    assert not Rollup.objects.filter(grain__in=[rollups.WEEK, rollups.MONTH]).exclude(dim="sentiment").exists()
