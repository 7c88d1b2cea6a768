"""Timed rules: fire once per wait, counted in business time, audited on the case; bad rules are
refused with a reason."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from listening.actions import ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.models import Direction, Message
from responses import replies, timed_rules
from responses.models import BusinessCalendar, CannedResponse, Case, CaseActivity, CaseStatus, Reply, TimedRule
from responses.routing import route_messages
from tests.listening.helpers import run_concurrently
from tests.responses.conftest import classify
from tests.responses.test_replies import provider_answers

PARIS = ZoneInfo("Europe/Paris")
JSON = "application/json"


def _calendar(team):
    BusinessCalendar.objects.create(team=team, time_zone="Europe/Paris", hours=[[["09:00", "17:00"]]] * 5 + [[], []])


def _pending_case(connector, since: datetime) -> Case:
    from tests.responses.conftest import open_case

    case = open_case(connector)
    Case.objects.filter(pk=case.pk).update(status=CaseStatus.PENDING, pending_since=since, waiting_since=None)
    return Case.objects.get(pk=case.pk)


def test_timed_rules_close_pending_after_business_hours_once(team_a, connector_a, fake_provider,
                                                             django_capture_on_commit_callbacks):
    _calendar(team_a)
    canned = CannedResponse.objects.create(team=team_a, title="Closing", text="Closing this, {customer_name}.")
    rule = TimedRule.objects.create(team=team_a, name="Quiet cases", trigger="pending", after_minutes=8 * 60,
                                    action="close", canned=canned)
    friday = datetime(2026, 3, 6, 15, 0, tzinfo=PARIS)
    case = _pending_case(connector_a, friday)
    # Monday 14:59: 2 + 5:59 business hours, not yet; Monday 15:00: 8 hours (the weekend did not count).
    assert timed_rules.run_due_rules(now=datetime(2026, 3, 9, 14, 59, tzinfo=PARIS)) == 0
    with django_capture_on_commit_callbacks(execute=False):
        assert timed_rules.run_due_rules(now=datetime(2026, 3, 9, 15, 0, tzinfo=PARIS)) == 1
        assert timed_rules.run_due_rules(now=datetime(2026, 3, 9, 16, 0, tzinfo=PARIS)) == 0
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED and case.pending_since is None
    reply = Reply.objects.get(case=case)
    assert reply.automatic and reply.text.startswith("Closing this,")
    activity = CaseActivity.objects.get(case=case)
    assert "Quiet cases" in activity.text and "8 business hours" in activity.text
    assert rule.runs.count() == 1


def test_timed_rules_escalate_waiting_once_per_wait(team_a, connector_a):
    rule = TimedRule.objects.create(team=team_a, name="Escalate", trigger="waiting", after_minutes=60,
                                    action="escalate", priority_boost=0.25)
    from tests.responses.conftest import open_case

    case = open_case(connector_a, priority=0.4)
    later = case.waiting_since + timedelta(minutes=61)
    assert timed_rules.run_due_rules(now=later) == 1
    assert timed_rules.run_due_rules(now=later + timedelta(hours=5)) == 0  # same wait: once
    case.refresh_from_db()
    assert abs(case.priority - 0.65) < 1e-9
    # A new wait (the agent answered, the customer wrote again) may fire again.
    new_wait = case.waiting_since + timedelta(hours=6)
    Case.objects.filter(pk=case.pk).update(waiting_since=new_wait)
    assert timed_rules.run_due_rules(now=new_wait + timedelta(minutes=61)) == 1
    assert rule.runs.count() == 2


def test_timed_rules_leave_snoozed_and_other_teams_alone(team_a, team_b, connector_a, connector_b):
    from tests.responses.conftest import open_case

    TimedRule.objects.create(team=team_a, name="Escalate", trigger="waiting", after_minutes=60, action="escalate")
    snoozed = open_case(connector_a, author="snoozy")
    Case.objects.filter(pk=snoozed.pk).update(snoozed=True)
    other = open_case(connector_b, author="team-b")
    assert timed_rules.run_due_rules(now=other.waiting_since + timedelta(days=2)) == 0


def test_timed_rules_reassign_and_notify(team_a, connector_a, supervisor_a):
    from responses.models import ConsoleEvent, Queue
    from tests.responses.conftest import open_case

    recover = Queue.objects.get(team=team_a, slug="recover")
    TimedRule.objects.create(team=team_a, name="Move", trigger="waiting", after_minutes=30, action="reassign",
                             queue=recover)
    TimedRule.objects.create(team=team_a, name="Tell", trigger="waiting", after_minutes=30, action="notify")
    case = open_case(connector_a)
    assert timed_rules.run_due_rules(now=case.waiting_since + timedelta(minutes=31)) == 2
    case.refresh_from_db()
    assert case.queue_id == recover.pk and case.assignee_id is None
    assert ConsoleEvent.objects.filter(type="mention", user=supervisor_a, case=case).exists()


def test_timed_rules_due_query_is_one_indexed_query_per_rule(team_a, connector_a, django_assert_max_num_queries):
    TimedRule.objects.create(team=team_a, name="Escalate", trigger="waiting", after_minutes=60, action="escalate")
    rule = TimedRule.objects.get()
    with django_assert_max_num_queries(1):
        assert list(timed_rules.due_cases(rule, None, datetime(2026, 3, 9, tzinfo=PARIS))) == []


def test_timed_rules_console_refuses_bad_rules_with_a_reason(client, team_a, team_b, supervisor_a):
    from responses.models import Queue

    client.force_login(supervisor_a)
    url = reverse("console:timed-rule-new")
    base = {"name": "R", "team": team_a.pk, "trigger": "pending", "after_hours": 48, "action": "close",
            "priority_boost": 0.3, "enabled": True}
    cases = [
        ({"trigger": "waiting"}, "only a case waiting on the customer"),
        ({"action": "reassign"}, "choose the queue"),
        ({"action": "reassign", "queue": Queue.objects.filter(team=team_b).first().pk}, "queue"),
        ({"after_hours": 0}, "after_hours"),
        ({"team": team_b.pk}, "team"),
        ({"action": "escalate", "priority_boost": 3}, "between 0 and 1"),
    ]
    for change, reason in cases:
        response = client.post(url, data=json.dumps({**base, **change}), content_type=JSON, HTTP_ACCEPT=JSON)
        assert response.status_code == 400, change
        assert reason in response.json()["reason"], (change, response.json())
    assert not TimedRule.objects.exists()
    response = client.post(url, data=json.dumps(base), content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 200
    assert "48 business hours" in response.json()["description"]
    assert "48 business hours" in client.get(reverse("console:timed-rules")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_timed_rules_close_message_is_delivered_through_the_connector_once(team_a, connector_a, fake_provider):
    """The closing message takes an agent's reply path: stored, enqueued on commit, sent by the
    delivery task to the provider (the local fake), stored as the outbound message. Two beats at
    once, and later beats, send nothing more; the delivery does not reopen the closed case."""
    provider_answers(fake_provider)
    _calendar(team_a)
    canned = CannedResponse.objects.create(team=team_a, title="Closing", text="Closing this, {customer_name}.")
    TimedRule.objects.create(team=team_a, name="Quiet cases", trigger="pending", after_minutes=8 * 60,
                             action="close", canned=canned)
    case = _pending_case(connector_a, datetime(2026, 3, 6, 15, 0, tzinfo=PARIS))
    due = datetime(2026, 3, 9, 15, 0, tzinfo=PARIS)
    fired = run_concurrently(lambda: timed_rules.run_due_rules(now=due), 2)
    assert sum(fired) == 1, fired
    assert timed_rules.run_due_rules(now=due + timedelta(hours=3)) == 0
    calls = fake_provider.calls("/replies")
    assert len(calls) == 1
    sent = calls[0].json()
    assert sent["text"] == "Closing this, Casey Customer." and sent["recipient_id"] == "cust-1"
    reply = Reply.objects.get(case=case)
    assert calls[0].headers["idempotency-key"] == reply.idempotency_key
    assert reply.status == Reply.Status.DELIVERED and reply.attempts == 1 and reply.automatic
    outbound = Message.objects.get(pk=reply.message_id)
    assert outbound.direction == Direction.OUTBOUND and outbound.conversation_id == case.conversation_id
    assert replies.pending_replies_to_resend(lost_after_seconds=0) == []  # nothing left for the sweep
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED


@pytest.mark.django_db(transaction=True)
def test_timed_rules_close_without_the_message_when_the_channel_window_closed(team_a, make_connector, fake_provider):
    """WhatsApp carries free text only within 24 hours of the customer's last message: a rule that
    closes after 48 hours closes without sending, and says why on the timeline."""
    connector = make_connector("meta", slug="wa-a", credentials={"app_secret": "s", "access_token": "t"})
    team_a.connectors.add(connector)
    canned = CannedResponse.objects.create(team=team_a, title="Closing", text="Closing this.")
    TimedRule.objects.create(team=team_a, name="Quiet cases", trigger="pending", after_minutes=48 * 60,
                             action="close", canned=canned)
    result = ingest_messages(connector, [InboundMessage(
        external_id="wa-1", text="Where is my parcel?", channel="whatsapp", sent_at=timezone.now(),
        thread_id="wa-t", author=InboundAuthor(external_id="+33600000000", display_name="Dana Doe"))])
    message = Message.objects.get(pk=result.created_ids[0])
    classify(message)
    route_messages([message.pk])
    case = Case.objects.get(conversation=message.conversation)
    Case.objects.filter(pk=case.pk).update(status=CaseStatus.PENDING, pending_since=timezone.now(), waiting_since=None)
    assert timed_rules.run_due_rules(now=timezone.now() + timedelta(hours=49)) == 1
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    assert not Reply.objects.filter(case=case).exists() and fake_provider.calls("/replies") == []
    activity = CaseActivity.objects.get(case=case, kind="timed_rule")
    assert "not sent" in activity.text and "24-hour reply window" in activity.text


def test_timed_rules_and_business_hours_are_in_the_navigation_of_supervisors_only(client, agent_a, supervisor_a):
    client.force_login(supervisor_a)
    page = client.get(reverse("console:inbox")).content.decode()
    assert 'id="hours-link"' in page and 'id="timed-rules-link"' in page
    client.force_login(agent_a)
    response = client.get(reverse("console:inbox"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="hours-link"' not in page and 'id="timed-rules-link"' not in page
    assert client.get(reverse("console:timed-rules")).status_code in (403, 404)
