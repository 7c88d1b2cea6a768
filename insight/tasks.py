"""Insight's Celery tasks: thin shells over insight.alerts."""

from celery import shared_task

from insight import alerts


@shared_task(name="insight.detect_spikes", acks_late=True)
def detect_spikes(**kwargs):
    """Beat (every 5 minutes): volume and negative-share spikes per team (see insight.alerts).
    Routed to the default queue: a few queries, and it must not wait behind classification."""
    return len(alerts.detect_spikes())
