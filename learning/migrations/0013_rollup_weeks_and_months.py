"""Weekly and monthly sentiment rollup rows (learning.rollups: grains "w" and "m"), summed from the
daily sentiment rows already kept, so the dashboards read a few rows per month over long ranges.
Run before the new workers start: they add to these rows as they classify."""

from collections import Counter
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations

KEY = ("term_id", "bucket", "connector_id", "channel", "lane", "language", "value")


def _starts(bucket: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    day = bucket.astimezone(tz).date()
    week, month = day - timedelta(days=day.weekday()), day.replace(day=1)
    return tuple(datetime.combine(d, time.min, tzinfo=tz).astimezone(ZoneInfo("UTC")) for d in (week, month))


def forwards(apps, schema_editor):
    Rollup = apps.get_model("learning", "Rollup")
    tz = ZoneInfo(getattr(settings, "CXM_REPORT_TIME_ZONE", "") or settings.TIME_ZONE)
    Rollup.objects.filter(grain__in=["w", "m"]).delete()
    sums: Counter = Counter()
    for term_id, bucket, connector_id, channel, lane, language, value, count in (
            Rollup.objects.filter(grain="d", dim="sentiment").values_list(*KEY, "count").iterator(chunk_size=20_000)):
        week, month = _starts(bucket, tz)
        sums[("w", term_id, week, connector_id, channel, lane, language, value)] += count
        sums[("m", term_id, month, connector_id, channel, lane, language, value)] += count
    Rollup.objects.bulk_create(
        [Rollup(grain=grain, dim="sentiment", term_id=term_id, bucket=bucket, connector_id=connector_id,
                channel=channel, lane=lane, language=language, value=value, count=n)
         for (grain, term_id, bucket, connector_id, channel, lane, language, value), n in sums.items() if n],
        batch_size=5_000)


def backwards(apps, schema_editor):
    apps.get_model("learning", "Rollup").objects.filter(grain__in=["w", "m"]).delete()


class Migration(migrations.Migration):
    dependencies = [("learning", "0012_alerts_move_to_insight")]

    operations = [migrations.RunPython(forwards, backwards)]
