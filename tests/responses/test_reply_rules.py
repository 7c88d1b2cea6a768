"""Channel reply rules: each connector declares them, the case page shows them (with the window's
live countdown), and a reply that breaks one is refused with the reason before it is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from listening.models import Contact, Conversation, Direction, Message
from responses.exceptions import InvalidRequest
from responses.models import Case, Reply
from responses.replies import channel_rules, send_reply
from tests.responses.test_views import post_json


def _case(make_connector, team, kind: str, channel: str, hours_ago: float) -> Case:
    connector = make_connector(kind, slug=f"{kind}-{channel}")
    team.connectors.add(connector)
    sent = timezone.now() - timedelta(hours=hours_ago)
    contact = Contact.objects.create(channel=channel, external_id=f"{channel}-customer")
    conversation = Conversation.objects.create(connector=connector, channel=channel, external_id=f"{channel}-thread",
                                               contact=contact, started_at=sent, last_message_at=sent)
    Message.objects.create(connector=connector, external_id=f"{channel}-m1", channel=channel, author=contact,
                           conversation=conversation, text="Hello?", sent_at=sent, direction=Direction.INBOUND)
    return Case.objects.create(conversation=conversation, connector=connector, channel=channel, team=team)


def test_whatsapp_refuses_a_reply_after_its_24_hour_window_with_what_to_do(make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "meta", "whatsapp", hours_ago=26)
    with pytest.raises(InvalidRequest) as refused:
        send_reply(agent_a, case.pk, "Sorry for the wait!")
    assert "24-hour reply window on whatsapp closed 2 h" in refused.value.reason
    assert "template" in refused.value.reason
    assert not Reply.objects.exists()


def test_whatsapp_accepts_a_reply_inside_the_window(make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "meta", "whatsapp", hours_ago=23)
    assert send_reply(agent_a, case.pk, "On it!").case_id == case.pk


def test_messenger_refuses_a_reply_longer_than_it_carries(make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "meta", "messenger", hours_ago=1)
    with pytest.raises(InvalidRequest, match="messenger replies are at most 2000 characters; this one is 2001"):
        send_reply(agent_a, case.pk, "x" * 2001)
    assert send_reply(agent_a, case.pk, "x" * 2000)


def test_a_listen_only_source_refuses_replies(make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "rss", "feed", hours_ago=1)
    with pytest.raises(InvalidRequest, match="only listens"):
        send_reply(agent_a, case.pk, "Thanks for the mention")


def test_the_case_page_shows_the_rules_and_the_window_countdown(client, make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "meta", "whatsapp", hours_ago=20)
    client.force_login(agent_a)
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    ends = channel_rules(case).window_ends
    assert abs((ends - (timezone.now() + timedelta(hours=4))).total_seconds()) < 60
    assert f'datetime="{ends.isoformat()}" data-relative="window"' in page
    assert "WhatsApp replies: up to 4096 characters" in page and 'maxlength="4096"' in page
    assert "approved WhatsApp template" in page


def test_the_reply_endpoint_answers_400_with_the_reason(client, make_connector, team_a, agent_a):
    case = _case(make_connector, team_a, "meta", "instagram", hours_ago=30)
    client.force_login(agent_a)
    response = post_json(client, reverse("console:case-reply", kwargs={"case_id": case.pk}),
                         {"text": "Hi!", "idempotency_key": "k-1"})
    assert response.status_code == 400
    assert "24-hour reply window on instagram closed" in response.json()["reason"]
