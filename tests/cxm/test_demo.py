from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cxm.demo import DemoTraffic
from learning.default_intents import EXAMPLES_DIR
from learning.models import Classification, Rollup
from listening.models import Connector, Conversation, Message
from responses import replies
from responses.models import CannedResponse, Case, CaseStatus, Reply, Team
from tests.listening.helpers import signed_webhook_post


def test_demo_traffic_is_varied():
    traffic = DemoTraffic(seed=7)
    sample = [traffic.next() for _ in range(400)]
    kinds = {m.lane_hint for m in sample}
    # What customers write to care: the taxonomy's intents (learning/intent_examples), and follow-ups.
    intents = {path.stem for path in EXAMPLES_DIR.glob("*.txt")}
    assert len(intents) == 17 and intents <= kinds | {"follow_up"} and "mixed" in kinds
    assert len({m.language for m in sample}) >= 7
    texts = [m.payload["text"] for m in sample]
    assert any(len(t) > 400 for t in texts)  # long messages
    assert any(re.search("[\U0001F300-\U0001FAFF]", t) for t in texts)  # emoji
    assert len({m.payload["id"] for m in sample}) == 400


def test_demo_messages_are_accepted_by_the_generic_webhook(client, make_connector):
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"})
    traffic = DemoTraffic(seed=3)
    payloads = [traffic.next().payload for _ in range(60)]
    response = signed_webhook_post(client, connector, {"messages": payloads})
    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 60
    follow_ups = Message.objects.exclude(parent_external_id="")
    assert follow_ups.exists()
    assert all(m.parent is not None and m.conversation_id == m.parent.conversation_id for m in follow_ups)
    assert Conversation.objects.count() < 60


@pytest.mark.django_db(transaction=True)
def test_demo_traffic_command_posts_to_a_running_server(live_server):
    call_command("setup_demo", password="demo-pass-123", history_days=0)
    call_command("demo_traffic", url=live_server.url, count=5, rate=50, seed=1, wait=10)
    assert Message.objects.filter(connector__slug="demo-web").count() == 5


def test_setup_demo_is_rerunnable_and_keeps_the_secret(db, django_user_model):
    call_command("setup_demo", password="first-pass-1", history_days=0)
    secret = Connector.objects.get(slug="demo-web").credentials["signing_secret"]
    call_command("setup_demo", password="second-pass-2", history_days=0)
    assert Connector.objects.get(slug="demo-web").credentials["signing_secret"] == secret
    agent = django_user_model.objects.get(username="agent")
    assert agent.check_password("second-pass-2") and not agent.is_superuser
    assert not agent.is_staff and agent.cxm_profile.role == "agent"  # the console, not the Django admin
    team = Team.objects.get(connectors__slug="demo-web")
    assert set(team.members.values_list("username", flat=True)) == {"agent", "sam", "lead", "manager"}


@pytest.mark.django_db(transaction=True)  # commits as the real command does: the classifier must not hear of it
def test_setup_demo_names_its_people_and_seeds_an_answered_history(django_user_model, settings):
    settings.CXM_BRAND_NAME = "Northwind Group"
    call_command("setup_demo", password="demo-pass-123")

    maria = django_user_model.objects.get(username="agent")
    assert maria.get_full_name() == "Maria Santos"
    history = Message.objects.filter(connector__slug="demo-web", external_id__startswith="demo-hist-")
    assert history.count() >= 300
    assert history.filter(sent_at__lt=timezone.now() - timedelta(days=2)).exists()  # days, not minutes
    assert Rollup.objects.exists() and Classification.objects.filter(is_current=True).count() == history.count()
    assert len(set(Classification.objects.values_list("intent", flat=True))) >= 15
    assert not Classification.objects.exclude(model_name="cxm-demo-history").exists()  # no worker redid them
    cases = Case.objects.filter(conversation__connector__slug="demo-web")
    resolved = cases.filter(status=CaseStatus.RESOLVED)
    assert resolved.count() > 0.9 * cases.count()
    assert not resolved.filter(first_response_at__isnull=True).exists()
    assert Reply.objects.filter(case__in=resolved, status=Reply.Status.DELIVERED).count() == resolved.count()
    # The agents start with a queue they can work, not hundreds on hold.
    waiting = cases.exclude(status__in=[CaseStatus.RESOLVED, CaseStatus.CLOSED])
    assert 0 < waiting.count() <= 15 and not waiting.filter(awaiting_assignment=True).exists()

    canned = CannedResponse.objects.get(shortcut="sorry")
    text = replies.render_canned(canned.text, waiting.first(), maria)
    assert "I'm Maria from Northwind Group" in text

    call_command("setup_demo", password="demo-pass-123")  # again: no second history
    assert Message.objects.filter(connector__slug="demo-web", external_id__startswith="demo-hist-").count() == \
        history.count()
