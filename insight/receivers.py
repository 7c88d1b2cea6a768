"""Insight's signal receivers: a new alert feeds the outbound webhooks (responses.outbound), as
the consoles' events do. Receivers only enqueue on commit (responses.outbound_tasks)."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from insight.models import Alert
from responses import outbound_tasks


@receiver(post_save, sender=Alert, dispatch_uid="insight.outbound.alert")
def on_alert(sender, instance, created, **kwargs):
    if created and outbound_tasks._anyone_listening():
        outbound_tasks._later("alert.raised", {"alert": {
            "id": instance.pk, "team": instance.team_id, "kind": instance.kind, "label": instance.label,
            "observed": instance.observed, "expected": instance.expected, "score": instance.score}})
