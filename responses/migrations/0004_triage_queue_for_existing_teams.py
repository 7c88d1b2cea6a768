"""Every existing team gets the Triage queue (lane "triage": what the models cannot place), as
responses.teams.DEFAULT_QUEUES gives new teams. Frozen here: later changes to the defaults must
not rewrite history."""

from django.db import migrations
from django.db.models import Max

SLUG, NAME, LANE, SLA_MINUTES = "triage", "Triage", "triage", 120


def add_triage_queue(apps, schema_editor):
    Team = apps.get_model("responses", "Team")
    Queue = apps.get_model("responses", "Queue")
    for team in Team.objects.all().iterator():
        if Queue.objects.filter(team=team, slug=SLUG).exists():
            continue
        last = Queue.objects.filter(team=team).aggregate(last=Max("position"))["last"]
        Queue.objects.create(team=team, slug=SLUG, name=NAME, lane=LANE, sla_minutes=SLA_MINUTES,
                             position=0 if last is None else last + 1)


def remove_triage_queue(apps, schema_editor):
    """Going back removes only empty Triage queues: a case in one keeps its queue."""
    Queue = apps.get_model("responses", "Queue")
    Queue.objects.filter(slug=SLUG, lane=LANE, cases__isnull=True).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("responses", "0003_case_source_and_insight_indexes"),
    ]

    operations = [
        migrations.RunPython(add_triage_queue, remove_triage_queue),
    ]
