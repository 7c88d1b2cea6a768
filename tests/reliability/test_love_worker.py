"""The whole flow in real Celery workers on Redis: a webhook message is classified (learning
queue), routed into a case for the connector's team and assigned; the agent's reply is delivered
by the worker through the connector, retried after a 503 honouring Retry-After, and sent once."""

from __future__ import annotations

import threading

import pytest

from listening.models import Direction, Message
from responses.models import AgentProfile, Case, ConsoleEvent, Presence, Reply, Role, Team
from responses.replies import send_reply
from responses.teams import ensure_default_queues
from tests.fakes.http import Reply as FakeReply
from tests.listening.helpers import signed_webhook_post
from tests.reliability.conftest import wait_for


@pytest.fixture(autouse=True)
def default_intents(transactional_db):
    from learning.default_intents import install
    from learning.models import Intent, IntentExample, PriorityWeights

    install(Intent, IntentExample, PriorityWeights)


def test_webhook_to_case_to_reply_to_provider_in_real_workers(celery_worker, client, make_connector, fake_provider,
                                                               django_user_model):
    answers = [FakeReply(503, "busy", {"Retry-After": "1"})]
    lock = threading.Lock()

    @fake_provider.route("POST", "/replies")
    def receive(request):
        with lock:
            return answers.pop(0) if answers else FakeReply(200, {"id": "sent-1"})

    team = Team.objects.create(name="Care A", slug="care-a")
    ensure_default_queues(team)
    agent = django_user_model.objects.create_user("dana", password="x-very-long-password")
    AgentProfile.objects.create(user=agent, role=Role.AGENT, presence=Presence.AVAILABLE)
    team.members.add(agent)
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"},
                               config={"callback_url": f"{fake_provider.url}/replies"})
    team.connectors.add(connector)

    body = {"id": "w1", "text": "My order never arrived and support ignores me. Refund now!",
            "author": {"id": "cust-1", "name": "Casey"}}
    assert signed_webhook_post(client, connector, body).status_code == 200
    case = wait_for(lambda: Case.objects.filter(team=team).first(), timeout=180)
    assert case, celery_worker.poll()
    assert case.lane == "issue" and case.queue.slug == "care" and case.assignee == agent
    assert ConsoleEvent.objects.filter(case=case, type="case.created").exists()

    reply = send_reply(agent, case.pk, "So sorry Casey, sending a new one today.", idempotency_key="worker-1")
    delivered = wait_for(lambda: Reply.objects.filter(pk=reply.pk, status="delivered").exists(), timeout=60)
    reply.refresh_from_db()
    assert delivered, (reply.status, reply.last_error, reply.attempts)
    calls = fake_provider.calls("/replies")
    assert [c.headers["idempotency-key"] for c in calls] == ["worker-1", "worker-1"]  # the 503, then the send
    assert reply.attempts == 2 and reply.external_id == "sent-1"
    assert Message.objects.filter(direction=Direction.OUTBOUND, conversation=case.conversation).count() == 1
    redelivered = wait_for(lambda: len(fake_provider.calls("/replies")) > 2, timeout=3)
    assert not redelivered  # acks_late and the lease: nothing more is sent
