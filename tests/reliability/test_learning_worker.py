"""Every ingested message is classified by a real Celery worker on Redis, on the learning queue,
with the bundled model loaded offline; a killed task's messages are swept up."""

from __future__ import annotations

import pytest

from learning.models import Classification
from learning.tasks import sweep_unclassified
from listening.models import Message
from tests.listening.helpers import signed_webhook_post
from tests.reliability.conftest import wait_for


def _deliveries(n):
    return {"messages": [
        {"id": f"w{i}", "text": text, "author": {"id": f"cust{i % 3}", "name": f"Customer {i % 3}"}}
        for i, text in enumerate([
            "My order never arrived and support ignores me. Refund now!",
            "Love the new app update, thank you!!",
            "Does the premium plan include offline mode?",
            "I'm done, switching to your competitor next month",
        ][:n])
    ]}


@pytest.fixture(autouse=True)
def default_intents(transactional_db):
    """Transactional tests flush the tables, data-migration rows included: put the intents back."""
    from learning.default_intents import install
    from learning.models import Intent, IntentExample, PriorityWeights

    install(Intent, IntentExample, PriorityWeights)


def test_webhook_messages_are_classified_in_a_real_worker(celery_worker, client, make_connector):
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"})
    response = signed_webhook_post(client, connector, _deliveries(4))
    assert response.status_code == 200, response.content
    done = wait_for(lambda: Classification.objects.filter(status="ok").count() == 4, timeout=180)
    assert done, (Classification.objects.count(), celery_worker.poll())
    rows = Classification.objects.select_related("message")
    assert {r.message.external_id for r in rows} == {"w0", "w1", "w2", "w3"}
    for row in rows:
        assert row.model_version and row.lane and row.sentiment and row.language
        assert row.models_used["intent"].startswith("intents ")
    by_id = {r.message.external_id: r for r in rows}
    assert by_id["w0"].sentiment == "negative" and by_id["w1"].sentiment == "positive"


def test_sweep_classifies_messages_whose_task_was_lost(celery_worker, make_connector):
    from datetime import timedelta

    from django.utils import timezone

    from learning.receivers import classify_ingested
    from listening.actions import ingest_messages
    from listening.signals import messages_ingested
    from tests.listening.helpers import inbound

    # Stored while nothing enqueues classification: as if the task had been lost with its worker.
    messages_ingested.disconnect(dispatch_uid="learning.classify_ingested")
    try:
        ingest_messages(make_connector("webhook"), [inbound("lost", "where is my refund")])
    finally:
        messages_ingested.connect(classify_ingested, dispatch_uid="learning.classify_ingested")
    Message.objects.update(received_at=timezone.now() - timedelta(minutes=10))
    assert not Classification.objects.exists()
    sweep_unclassified.delay()
    assert wait_for(lambda: Classification.objects.filter(message__external_id="lost", status="ok").exists(),
                    timeout=180)
