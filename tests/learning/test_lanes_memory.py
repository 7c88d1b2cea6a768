"""An agent's "not spam: open a case" teaches the lane decision (learning.lane_memory): a later message
that says the same thing, worded a little differently, is not set aside again; other spam still is."""

import pytest

from learning import actions
from learning.models import Classification, Correction
from listening.actions import ingest_messages
from listening.models import Message
from responses.models import Role, Team
from responses.noise import open_case_for_message
from responses.teams import ensure_default_queues
from tests.listening.helpers import inbound
from tests.responses.conftest import make_user

pytestmark = pytest.mark.django_db

# What the models set aside as spam (tests/learning/test_multilingual.py asserts it does).
LOOKS_LIKE_SPAM = "🔥 FREE followers!! Follow4follow, click bit.ly/xx now to win an iPhone 🔥 crypto giveaway"


def _lane(connector, external_id: str, text: str, author: str) -> Classification:
    ingest_messages(connector, [inbound(external_id, text, author=author, thread_id=external_id)])
    message = Message.objects.get(external_id=external_id)
    actions.classify_messages([message.pk])
    return Classification.objects.get(message=message, is_current=True)


def test_not_spam_from_the_console_changes_the_lane_of_a_similar_later_message(loaded, make_connector,
                                                                                django_user_model, monkeypatch):
    monkeypatch.setattr("learning.lane_memory.CHECK_SECONDS", 0.0)  # workers look every few seconds
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    connector = make_connector("webhook")
    team.connectors.add(connector)
    agent = make_user(django_user_model, "agent_care", Role.AGENT, [team])

    first = _lane(connector, "n1", LOOKS_LIKE_SPAM, "u1")
    assert first.lane == "noise"
    open_case_for_message(agent, first.message_id, lane="issue", reason="a customer asking about the giveaway")
    assert Correction.objects.filter(message_id=first.message_id, field="lane", value="issue").exists()

    similar = _lane(connector, "n2", LOOKS_LIKE_SPAM.replace("bit.ly/xx now", "bit.ly/xx now!!"), "u2")
    assert similar.lane == "issue"
    assert similar.priority_factors["lane_reason"].startswith("an agent put this in Issue")
    other_spam = _lane(connector, "n3", "Crypto signals 1000% guaranteed profit DM me 💰💰💰 #deal #win", "u3")
    assert other_spam.lane != "issue" or "agent" not in other_spam.priority_factors["lane_reason"]
