"""Cases that were running before business calendars: their near-breach instant (the wall-clock
rule they were made under: the last fifth of the SLA, at least 5 minutes) and, for pending ones,
when they went pending (their last update is the best record there is)."""

from datetime import timedelta

from django.db import migrations
from django.db.models import F


def fill(apps, schema_editor):
    Case = apps.get_model("responses", "Case")
    running = Case.objects.filter(status__in=["new", "open", "pending"], sla_due_at__isnull=False,
                                  sla_near_at__isnull=True)
    batch = []
    for case in running.only("id", "sla_due_at", "sla_minutes").iterator(chunk_size=2000):
        window = timedelta(minutes=max((case.sla_minutes or 0) * 0.2, 5))
        case.sla_near_at = case.sla_due_at - window
        batch.append(case)
        if len(batch) >= 2000:
            Case.objects.bulk_update(batch, ["sla_near_at"])
            batch = []
    Case.objects.bulk_update(batch, ["sla_near_at"])
    Case.objects.filter(status="pending", pending_since__isnull=True).update(pending_since=F("updated_at"))


class Migration(migrations.Migration):

    dependencies = [("responses", "0009_business_calendars_timed_rules")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
