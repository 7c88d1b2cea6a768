"""Replies go back out through the connector: once, with retries that honour the provider, and a
clear reason when they cannot go."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from listening.models import Direction, Message
from responses import replies
from responses.exceptions import Conflict, InvalidRequest, NotAllowed
from responses.models import CaseStatus, ConsoleEvent, Reply
from tests.fakes.http import Reply as FakeReply
from tests.listening.helpers import run_concurrently
from tests.responses.conftest import open_case

pytestmark = pytest.mark.django_db(transaction=True)


def provider_answers(fake_provider, *answers):
    """The fake customer endpoint answers with `answers` in turn, then 200 with an id."""
    queue = list(answers)
    lock = threading.Lock()

    @fake_provider.route("POST", "/replies")
    def receive(request):
        with lock:
            answer = queue.pop(0) if queue else None
        return answer or FakeReply(200, {"id": f"out-{request.json()['id']}"})

    return receive


def test_send_reply_delivers_once_and_stores_the_outbound_message(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider)
    case = open_case(connector_a)
    reply = replies.send_reply(agent_a, case.pk, "Sorry about that, Casey! Checking now.", idempotency_key="k-1")
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.attempts == 1
    calls = fake_provider.calls("/replies")
    assert len(calls) == 1
    sent = calls[0].json()
    assert sent["text"] == "Sorry about that, Casey! Checking now." and calls[0].headers["idempotency-key"] == "k-1"
    assert sent["recipient_id"] == "cust-1"
    out = Message.objects.get(pk=reply.message_id)
    assert out.direction == Direction.OUTBOUND and out.conversation_id == case.conversation_id
    assert out.external_id == "out-k-1" and out.parent == case.last_message
    case.refresh_from_db()
    assert case.status == CaseStatus.PENDING and case.first_response_at is not None and case.sla_due_at is None
    types = list(ConsoleEvent.objects.filter(case=case).values_list("type", flat=True))
    assert "reply.created" in types and "reply.updated" in types


def test_send_reply_with_the_same_key_twice_sends_once(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider)
    case = open_case(connector_a)
    first = replies.send_reply(agent_a, case.pk, "On it", idempotency_key="double-click")
    second = replies.send_reply(agent_a, case.pk, "On it", idempotency_key="double-click")
    assert first.pk == second.pk and Reply.objects.count() == 1
    assert len(fake_provider.calls("/replies")) == 1
    other = open_case(connector_a, author="someone-else")
    with pytest.raises(Conflict):
        replies.send_reply(agent_a, other.pk, "On it", idempotency_key="double-click")


def test_delivery_retries_429_and_5xx_honouring_retry_after_then_delivers_once(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider, FakeReply(429, {"error": "slow down"}, {"Retry-After": "7"}),
                     FakeReply(503, "busy"))
    case = open_case(connector_a)
    reply = replies.send_reply(agent_a, case.pk, "Thanks for waiting")  # eager: first attempt runs now
    reply.refresh_from_db()
    assert reply.status == Reply.Status.PENDING and "429" in reply.last_error
    assert 6 <= (reply.next_attempt_at - timezone.now()).total_seconds() <= 7.5  # Retry-After: 7
    outcome, delay = replies.deliver(reply.pk)  # what the retry does
    reply.refresh_from_db()
    assert outcome == replies.Outcome.RETRY and 1 <= delay <= 4 and "503" in reply.last_error
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE  # a redelivered task: nothing more
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.attempts == 3
    assert [c.headers["idempotency-key"] for c in fake_provider.calls("/replies")] == [reply.idempotency_key] * 3
    assert Message.objects.filter(direction=Direction.OUTBOUND).count() == 1


def test_delivery_fails_for_good_on_a_permanent_error_with_its_reason(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider, FakeReply(400, {"error": "the 24 hour reply window has closed"}))
    case = open_case(connector_a)
    reply = replies.send_reply(agent_a, case.pk, "Hello again")
    reply.refresh_from_db()
    assert reply.status == Reply.Status.FAILED and "reply window has closed" in reply.last_error
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE and len(fake_provider.calls("/replies")) == 1
    retried = replies.retry_reply(agent_a, reply.pk)  # the agent retries (eager: sent at once)
    retried.refresh_from_db()
    assert retried.status == Reply.Status.DELIVERED and len(fake_provider.calls("/replies")) == 2


def test_delivery_gives_up_after_the_last_attempt(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider, *[FakeReply(500, "down")] * replies.MAX_ATTEMPTS)
    case = open_case(connector_a)
    reply = replies.send_reply(agent_a, case.pk, "Hello")
    for _ in range(replies.MAX_ATTEMPTS - 1):
        replies.deliver(reply.pk)
    reply.refresh_from_db()
    assert reply.status == Reply.Status.FAILED and reply.last_error.startswith("gave up after 6 attempts")
    assert len(fake_provider.calls("/replies")) == replies.MAX_ATTEMPTS


def test_concurrent_deliveries_of_one_reply_call_the_provider_once(transactional_db, connector_a, agent_a,
                                                                   fake_provider, settings):
    release = threading.Event()

    @fake_provider.route("POST", "/replies")
    def slow(request):
        release.wait(5)
        return FakeReply(200, {"id": "out-1"})

    case = open_case(connector_a)
    settings.CELERY_TASK_ALWAYS_EAGER = False  # enqueueing goes nowhere: the test delivers by hand
    from cxm.celery import app

    app.conf.task_always_eager = False
    try:
        reply = replies._create(case, "Once only", "once-key", author=agent_a)
    finally:
        app.conf.task_always_eager = True
    timer = threading.Timer(1.0, release.set)
    timer.start()
    outcomes = run_concurrently(lambda: replies.deliver(reply.pk)[0], 4)
    assert sorted(outcomes).count(replies.Outcome.DONE) >= 1 and len(fake_provider.calls("/replies")) == 1
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.attempts == 1


def test_a_send_interrupted_mid_call_is_not_repeated_on_a_channel_without_idempotency(connector_a, agent_a,
                                                                                      fake_provider, make_connector):
    """A worker died during the provider call (the lease expired with no outcome). The generic
    webhook dedupes by key, so it may resend; a channel that cannot dedupe fails visibly instead."""
    provider_answers(fake_provider)
    case = open_case(connector_a)
    reply = Reply.objects.create(case=case, text="maybe sent", idempotency_key="lost-1", status=Reply.Status.PENDING,
                                 sending_until=timezone.now() - timezone.timedelta(seconds=1), attempts=1)
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED  # webhook connector: idempotent_sends

    telegram = make_connector("telegram", credentials={"bot_token": "123:abc"})
    connector_a.teams.first().connectors.add(telegram)
    tcase = open_case(telegram, author="tg-user")
    stuck = Reply.objects.create(case=tcase, text="maybe sent", idempotency_key="lost-2",
                                 sending_until=timezone.now() - timezone.timedelta(seconds=1), attempts=1)
    assert replies.deliver(stuck.pk)[0] == replies.Outcome.DONE
    stuck.refresh_from_db()
    assert stuck.status == Reply.Status.FAILED and "outcome unknown" in stuck.last_error


def test_replies_refuse_bad_input_and_other_roles(connector_a, agent_a, manager_a, agent_b):
    case = open_case(connector_a)
    for text in ("", "   ", "x" * (replies.MAX_REPLY_CHARS + 1)):
        with pytest.raises(InvalidRequest):
            replies.send_reply(agent_a, case.pk, text)
    with pytest.raises(InvalidRequest):
        replies.send_reply(agent_a, case.pk, "hi", idempotency_key="bad key with spaces")
    with pytest.raises(NotAllowed):
        replies.send_reply(manager_a, case.pk, "hi")
    from responses.exceptions import CaseNotFound

    with pytest.raises(CaseNotFound):
        replies.send_reply(agent_b, case.pk, "hi")
    assert Reply.objects.count() == 0


def test_send_and_resolve_resolves_when_delivered(connector_a, agent_a, fake_provider):
    provider_answers(fake_provider)
    case = open_case(connector_a)
    replies.send_reply(agent_a, case.pk, "All sorted, enjoy!", resolve=True)
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and case.resolved_at is not None


def test_canned_placeholders_are_filled(connector_a, agent_a, settings):
    settings.CXM_BRAND_NAME = "Acme"
    case = open_case(connector_a, name="Casey Jones")
    text = replies.render_canned("Hi {customer_first_name}, {agent_first_name} from {brand} here. {unknown}", case,
                                 agent_a)
    assert text == "Hi Casey, Agent from Acme here. {unknown}"
