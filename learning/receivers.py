"""Signal receivers: classification is enqueued when messages are stored, and the intent head is
refitted when admins change intents. Receivers only enqueue; workers do the work."""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from learning.models import Intent, IntentExample
from listening.signals import messages_ingested


@receiver(messages_ingested, dispatch_uid="learning.classify_ingested")
def classify_ingested(sender, message_ids, **kwargs):
    from learning.tasks import enqueue

    if settings.CXM_CLASSIFY_ON_INGEST:
        enqueue(message_ids)


@receiver(post_save, sender=Intent, dispatch_uid="learning.intent_saved")
@receiver(post_delete, sender=Intent, dispatch_uid="learning.intent_deleted")
@receiver(post_save, sender=IntentExample, dispatch_uid="learning.example_saved")
@receiver(post_delete, sender=IntentExample, dispatch_uid="learning.example_deleted")
def intents_changed(sender, **kwargs):
    from learning.tasks import retrain_intents

    # After commit, so the worker sees the change; a refit of an unchanged set reuses its row.
    transaction.on_commit(retrain_intents.delay)
