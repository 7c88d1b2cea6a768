"""Celery tasks of the responses app (default queue). They take ids, are acknowledged when done
and are idempotent: delivering a reply twice sends it once (see responses.replies)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.dispatch import receiver

from responses import assignment, cases, replies, routing, signals, snooze

log = logging.getLogger(__name__)
SWEEP_TASK_SIZE = 100


@shared_task(name="responses.route_messages", acks_late=True, max_retries=5, bind=True)
def route_messages(self, message_ids, **kwargs):
    try:
        return len(routing.route_messages(message_ids))
    except Exception as exc:
        if self.request.is_eager or self.request.retries >= self.max_retries:
            raise
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc


@shared_task(name="responses.sweep_unrouted", acks_late=True)
def sweep_unrouted(**kwargs):
    """Beat: route messages classified a while ago whose routing task was lost with a killed
    worker (the broker would hand it back only after CXM_BROKER_VISIBILITY_TIMEOUT). Routing
    claims each classification once, so a task that does come back later routes nothing twice."""
    grace = timedelta(seconds=settings.CXM_ROUTING_SWEEP_GRACE_SECONDS)
    ids = routing.unrouted_messages(grace)
    for start in range(0, len(ids), SWEEP_TASK_SIZE):
        route_messages.delay(ids[start:start + SWEEP_TASK_SIZE])
    if ids:
        log.info("routing sweep: %d classified messages not routed, re-enqueued", len(ids))
    return len(ids)


@shared_task(name="responses.deliver_reply", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def deliver_reply(self, reply_id, **kwargs):
    outcome, delay = replies.deliver(reply_id)
    if outcome == replies.Outcome.DONE or self.request.is_eager:
        # In eager mode (the trial) a retry would run at once; the sweep sends it when it is due.
        return outcome
    countdown = delay if outcome == replies.Outcome.RETRY else 30
    raise self.retry(countdown=countdown)


@receiver(signals.reply_due, dispatch_uid="responses.enqueue_delivery")
def enqueue_delivery(sender, reply_id: int, countdown: float = 0, **kwargs) -> None:
    deliver_reply.apply_async((reply_id,), countdown=countdown)


@shared_task(name="responses.resend_pending_replies", acks_late=True)
def resend_pending_replies(**kwargs):
    """Beat: replies due another attempt, or whose delivery task was lost."""
    ids = replies.pending_replies_to_resend()
    for reply_id in ids:
        deliver_reply.delay(reply_id)
    return len(ids)


@shared_task(name="responses.check_slas", acks_late=True)
def check_slas(**kwargs):
    """Beat: near-breach and breach of SLAs raise priority and show in the console."""
    return cases.check_slas()


@shared_task(name="responses.drain_hold_queues", acks_late=True)
def drain_hold_queues(**kwargs):
    """Beat: assign held cases where an agent has room (a backstop for the drains on each change)."""
    team_ids = assignment.teams_with_room()
    return assignment.drain_hold_queue(team_ids) if team_ids else 0


@shared_task(name="responses.prune_console_events", acks_late=True)
def prune_console_events(**kwargs):
    """Beat (daily): drop console events older than CXM_CONSOLE_EVENT_DAYS."""
    return cases.prune_console_events(settings.CXM_CONSOLE_EVENT_DAYS)


@shared_task(name="responses.wake_snoozed_cases", acks_late=True)
def wake_snoozed_cases(**kwargs):
    """Beat: snoozed cases whose time has come go back to the queues (responses.snooze)."""
    return snooze.wake_due()


@shared_task(name="responses.run_timed_rules", acks_late=True)
def run_timed_rules(**kwargs):
    """Beat: timed rules (close what waits on the customer, escalate what waits on an agent)."""
    from responses import timed_rules

    return timed_rules.run_due_rules()
