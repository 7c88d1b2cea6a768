"""Personas and builders for Love: an agent, a supervisor and a brand manager on team A, an
outsider agent on team B who must see nothing of team A, and an admin."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from learning.models import Classification
from listening.actions import ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from responses.models import AgentProfile, Presence, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues

PASSWORD = "correct horse battery staple"
_ids = itertools.count(1)


def make_user(django_user_model, username: str, role: str, teams=(), *, presence=Presence.AVAILABLE, **profile):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD,
                                                 first_name=username.split("_")[0].title())
    AgentProfile.objects.create(user=user, role=role, presence=presence, **profile)
    for team in teams:
        team.members.add(user)
    return user


@pytest.fixture(autouse=True)
def settings_no_classify(settings):
    """Store messages without running the model: tests set the classification they need."""
    settings.CXM_CLASSIFY_ON_INGEST = False
    return settings


@pytest.fixture
def team_a(db, make_connector):
    team = Team.objects.create(name="Team A", slug="team-a")
    ensure_default_queues(team)
    return team


@pytest.fixture
def team_b(db):
    team = Team.objects.create(name="Team B", slug="team-b")
    ensure_default_queues(team)
    return team


@pytest.fixture
def connector_a(team_a, make_connector, fake_provider):
    """A generic webhook connector owned by team A whose replies go to the local fake provider."""
    connector = make_connector("webhook", slug="brand-a", config={"callback_url": f"{fake_provider.url}/replies"},
                               credentials={"signing_secret": "s3cret"})
    team_a.connectors.add(connector)
    return connector


@pytest.fixture
def connector_b(team_b, make_connector):
    connector = make_connector("webhook", slug="brand-b", credentials={"signing_secret": "s3cret-b"})
    team_b.connectors.add(connector)
    return connector


@pytest.fixture
def agent_a(django_user_model, team_a):
    return make_user(django_user_model, "agent_a", Role.AGENT, [team_a])


@pytest.fixture
def agent_a2(django_user_model, team_a):
    return make_user(django_user_model, "agent_a2", Role.AGENT, [team_a])


@pytest.fixture
def supervisor_a(django_user_model, team_a):
    return make_user(django_user_model, "supervisor_a", Role.SUPERVISOR, [team_a], presence=Presence.AWAY)


@pytest.fixture
def manager_a(django_user_model, team_a):
    return make_user(django_user_model, "manager_a", Role.BRAND_MANAGER, [team_a], presence=Presence.OFFLINE)


@pytest.fixture
def agent_b(django_user_model, team_b):
    return make_user(django_user_model, "agent_b", Role.AGENT, [team_b])


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="admin", password=PASSWORD, email="a@example.com")


def store_message(connector, text: str, *, author: str = "cust-1", thread: str = "", minutes_ago: float = 0,
                  **author_fields):
    """Store one inbound message through the real ingestion action; returns the Message."""
    from listening.models import Message

    n = next(_ids)
    sent = timezone.now() - timedelta(minutes=minutes_ago)
    message = InboundMessage(
        external_id=f"m-{n}", text=text, channel="web", sent_at=sent, thread_id=thread or f"t-{author}",
        author=InboundAuthor(external_id=author, display_name=author_fields.pop("name", "Casey Customer"),
                             **author_fields),
    )
    result = ingest_messages(connector, [message])
    return Message.objects.get(pk=result.created_ids[0])


def classify(message, *, lane="issue", sentiment="negative", intent="complaint", emotion="anger",
             priority=0.5, language="en", topics=()):
    """A stored classification as the Learn workers would write it."""
    return Classification.objects.create(
        message=message, lane=lane, sentiment=sentiment, intent=intent, emotion=emotion, priority=priority,
        language=language, sentiment_scores={sentiment: 0.9}, intent_scores={intent: 0.8},
        emotion_scores={emotion: 0.7}, topics=[{"name": t} for t in topics], model_name="test", model_version="t1",
    )


def open_case(connector, text: str = "My order never arrived and nobody answers!", **kwargs):
    """Store, classify and route one message; returns its Case."""
    from responses.models import Case

    route_kwargs = {k: kwargs.pop(k) for k in ("lane", "sentiment", "intent", "emotion", "priority", "language",
                                               "topics") if k in kwargs}
    message = store_message(connector, text, **kwargs)
    classify(message, **route_kwargs)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)
