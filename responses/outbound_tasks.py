"""Outbound webhooks' Celery tasks and the receivers that feed them. Receivers only enqueue (on
commit): the request or worker that caused an event never waits for a subscriber."""

from __future__ import annotations

import threading
import time

from celery import shared_task
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from learning.models import Classification
from learning.signals import messages_classified
from listening.models import Message
from listening.signals import connector_failing, messages_ingested
from responses import outbound, signals
from responses.models import ConsoleEvent, WebhookSubscription

RESOLVED = {"resolved", "closed"}


# Whether any subscription is enabled, asked after every delivery, classified batch and case
# event: one query each time, for an answer that rarely changes (most deployments subscribe
# nothing). Kept per process for LISTENING_TTL_S seconds and forgotten when this process saves or
# deletes a subscription. Another process (a second web host, a worker) sees a new subscription
# within LISTENING_TTL_S: the events of those first seconds are not sent to it. A stale "yes" only
# costs a fan-out that finds no subscriber.
LISTENING_TTL_S = 2.0
_listening: list = [0.0, False, 0]  # [monotonic time it holds until, the answer, generation]
_listening_lock = threading.Lock()


def _anyone_listening() -> bool:
    held_until, answer, generation = _listening
    now = time.monotonic()
    if now < held_until:
        return answer
    answer = WebhookSubscription.objects.filter(enabled=True).exists()
    with _listening_lock:
        if _listening[2] == generation:  # no save or delete while we asked: keep the answer
            _listening[:2] = [now + LISTENING_TTL_S, answer]
    return answer


@receiver(post_save, sender=WebhookSubscription, dispatch_uid="responses.outbound.subscription_saved")
@receiver(post_delete, sender=WebhookSubscription, dispatch_uid="responses.outbound.subscription_deleted")
def _subscriptions_changed(sender, **kwargs) -> None:
    with _listening_lock:
        _listening[:] = [0.0, False, _listening[2] + 1]


@shared_task(name="responses.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: int, **kwargs) -> None:
    from django.conf import settings

    retry_in = outbound.deliver(delivery_id)
    if retry_in is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        deliver_webhook.apply_async((delivery_id,), countdown=retry_in)
    # Eager (the trial, tests): no sleeping retries in the caller; the sweep sends what is due.


@receiver(signals.webhook_deliveries_due, dispatch_uid="responses.enqueue_webhook_deliveries")
def enqueue_webhook_deliveries(sender, delivery_ids: list[int], **kwargs) -> None:
    for delivery_id in delivery_ids:
        deliver_webhook.delay(delivery_id)


@shared_task(name="responses.send_due_webhooks", ignore_result=True)
def send_due_webhooks(**kwargs) -> int:
    return outbound.send_due()


@shared_task(name="responses.fan_out_messages", ignore_result=True)
def fan_out_messages(event_type: str, message_ids: list[int], **kwargs) -> None:
    messages = (Message.objects.filter(pk__in=message_ids).select_related("author")
                .order_by("conversation_id", "sent_at", "id"))
    current = {}
    if event_type == "message.classified":
        current = {c.message_id: c for c in Classification.objects.filter(message_id__in=message_ids, is_current=True)}
    with transaction.atomic():
        for message in messages:
            payload = {"message": {
                "id": message.pk, "conversation": message.conversation_id, "connector": message.connector_id,
                "channel": message.channel, "direction": message.direction, "text": message.text,
                "author": (message.author.display_name or message.author.handle) if message.author else "",
                "sent_at": message.sent_at.isoformat()}}
            found = current.get(message.pk)
            if found is not None:
                payload["classification"] = {"sentiment": found.sentiment, "intent": found.intent,
                                             "emotion": found.emotion, "language": found.language,
                                             "lane": found.lane, "priority": found.priority}
            outbound.fan_out(event_type, payload, order_key=message.conversation_id)


@shared_task(name="responses.fan_out_event", ignore_result=True)
def fan_out_event(event_type: str, payload: dict, order_key: int = 0, **kwargs) -> None:
    with transaction.atomic():
        outbound.fan_out(event_type, payload, order_key=order_key)


def _later(event_type: str, payload: dict, order_key: int = 0) -> None:
    transaction.on_commit(lambda: fan_out_event.delay(event_type, payload, order_key))


@receiver(messages_ingested, dispatch_uid="responses.outbound.ingested")
def on_ingested(sender, message_ids, **kwargs):
    if _anyone_listening():
        fan_out_messages.delay("message.received", list(message_ids))


@receiver(messages_classified, dispatch_uid="responses.outbound.classified")
def on_classified(sender, message_ids, **kwargs):
    if _anyone_listening():
        fan_out_messages.delay("message.classified", list(message_ids))


@receiver(connector_failing, dispatch_uid="responses.outbound.connector_failing")
def on_connector_failing(sender, connector_id, reason, **kwargs):
    if _anyone_listening():
        fan_out_event.delay("connector.failing", {"connector": {"id": connector_id}, "reason": reason[:300]})


@receiver(post_save, sender=ConsoleEvent, dispatch_uid="responses.outbound.console_event")
def on_console_event(sender, instance, created, **kwargs):
    """Cases' and replies' events, as the consoles get them (connector.failing comes from its
    signal instead: its console events are one per admin)."""
    if not created or instance.type not in ("case.created", "case.updated", "reply.updated"):
        return
    if not _anyone_listening():
        return
    payload = instance.payload
    if instance.type == "reply.updated":
        status = (payload.get("reply") or {}).get("status")
        if status not in ("delivered", "failed"):
            return
        event_type = f"reply.{status}"
    elif instance.type == "case.updated" and (payload.get("case") or {}).get("status") in RESOLVED:
        event_type = "case.resolved"
    else:
        event_type = instance.type
    case_id = instance.case_id or 0
    conversation = _conversation_of(case_id)
    _later(event_type, {**payload, "case_id": case_id}, order_key=conversation)


def _conversation_of(case_id: int) -> int:
    from responses.models import Case

    return Case.objects.filter(pk=case_id).values_list("conversation_id", flat=True).first() or 0
