"""No customer goes unheard: what routing set aside as spam is listed for the agents of its teams
and can be opened as a case (a lane correction, a note, the usual events); the triage lane has
its queue; a language the models do not score is shown as "Not scored", never as neutral."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps
from django.urls import reverse

from learning import rollups
from learning.models import Classification, Correction
from listening.models import Direction, Message
from responses.models import Case, CaseStatus, ConsoleEvent, Note, Queue, Team
from responses.noise import open_case_for_message, set_aside
from responses.routing import route_messages
from tests.responses.conftest import classify, open_case, store_message

JSON = "application/json"


def noise_message(connector, text: str, **kwargs) -> Message:
    """A message the models read as spam, routed: it opens no case."""
    message = store_message(connector, text, **kwargs)
    classify(message, lane="noise", sentiment="neutral", intent="spam", emotion="neutral")
    route_messages([message.pk])
    return message


def open_url(message: Message) -> str:
    return reverse("console:message-open-case", kwargs={"message_id": message.pk})


def state() -> dict:
    """What opening a case may change: compared before and after a refusal."""
    return {"cases": list(Case.objects.order_by("id").values_list("id", "status", "lane", "queue_id", "team_id")),
            "corrections": Correction.objects.count(), "notes": Note.objects.count(),
            "events": ConsoleEvent.objects.count()}


# --- Routing and the action ------------------------------------------------------------------


def test_open_case_for_noise_message_opens_it_in_the_chosen_queue_with_a_correction_and_events(
        connector_a, team_a, agent_a, django_capture_on_commit_callbacks):
    message = noise_message(connector_a, "quick question: how do I change the email on my account?")
    assert not Case.objects.filter(conversation=message.conversation).exists()
    first_event = ConsoleEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        case = open_case_for_message(agent_a, message.pk, "issue", "asks about their account")

    assert callbacks, "the consoles' doorbell rings on commit"
    case.refresh_from_db()
    assert case.conversation_id == message.conversation_id and case.team_id == team_a.pk
    assert case.lane == "issue" and case.queue.slug == "care" and case.is_active
    assert case.last_message_id == message.pk and case.sla_due_at is not None
    correction = Correction.objects.get(message=message)
    assert (correction.field, correction.value, correction.previous, correction.user_id) == (
        "lane", "issue", "noise", agent_a.pk)
    note = Note.objects.get(case=case)
    assert note.author_id == agent_a.pk and "from Spam as Issue" in note.text
    assert "asks about their account" in note.text
    events = list(ConsoleEvent.objects.filter(id__gt=first_event).order_by("id"))
    assert {e.type for e in events} >= {"message.created", "note.created", "case.created"}
    assert all(e.case_id == case.pk for e in events) and {e.team_id for e in events if e.team_id} == {team_a.pk}
    created = next(e for e in events if e.type == "case.created")
    assert created.payload["case"]["lane"] == "issue" and created.payload["case"]["queue"]["name"] == "Care"


@pytest.mark.parametrize(("lane", "queue"), [("triage", "triage"), ("praise", "amplify"),
                                             ("ambivalence", "recover")])
def test_open_case_for_noise_message_goes_to_the_lanes_queue(connector_a, agent_a, lane, queue):
    message = noise_message(connector_a, "Lumen Mobile: roaming funktioniert seit gestern nicht mehr.")
    case = open_case_for_message(agent_a, message.pk, lane)
    assert (case.lane, case.queue.slug) == (lane, queue)
    assert Correction.objects.get(message=message).value == lane


def test_open_case_reopens_the_conversations_closed_case(connector_a, agent_a):
    case = open_case(connector_a, "My parcel is late", author="late-1", thread="t-late")
    case.status = CaseStatus.RESOLVED
    case.save()
    Case.objects.filter(pk=case.pk).update(resolved_at=case.updated_at)
    later = noise_message(connector_a, "hello??", author="late-1", thread="t-late")
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED, "routing does not reopen a case for noise"
    assert later.pk in set(set_aside(agent_a).values_list("message_id", flat=True))

    reopened = open_case_for_message(agent_a, later.pk)
    assert reopened.pk == case.pk and reopened.status == CaseStatus.OPEN and reopened.lane == "issue"
    assert reopened.resolved_at is None and reopened.last_message_id == later.pk
    assert later.pk not in set(set_aside(agent_a).values_list("message_id", flat=True))


def test_triage_lifts_a_praise_case_but_leaves_an_issue_case_in_its_queue(connector_a):
    praise = open_case(connector_a, "Love the new app", author="p-1", lane="praise", sentiment="positive")
    issue = open_case(connector_a, "Card declined twice", author="i-1")
    for case, author in ((praise, "p-1"), (issue, "i-1")):
        message = store_message(connector_a, "??", author=author)
        classify(message, lane="triage", sentiment="neutral", intent="")
        route_messages([message.pk])
    praise.refresh_from_db()
    issue.refresh_from_db()
    assert (praise.lane, praise.queue.slug) == ("triage", "triage")
    assert (issue.lane, issue.queue.slug) == ("issue", "care")


def test_triage_message_opens_a_case_in_the_triage_queue(connector_a):
    case = open_case(connector_a, "hi, anyone there?", lane="triage", sentiment="neutral", intent="")
    assert (case.lane, case.queue.slug, case.queue.name) == ("triage", "triage", "Triage")


def test_triage_queue_migration_adds_it_to_existing_teams_once(db):
    team = Team.objects.create(name="Old team", slug="old-team")
    Queue.objects.create(team=team, slug="care", name="Care", lane="issue", position=4)
    migration = importlib.import_module("responses.migrations.0004_triage_queue_for_existing_teams")
    migration.add_triage_queue(apps, None)
    migration.add_triage_queue(apps, None)
    triage = Queue.objects.get(team=team, slug="triage")
    assert (triage.lane, triage.sla_minutes, triage.position, triage.name) == ("triage", 120, 5, "Triage")
    assert Queue.objects.filter(team=team).count() == 2


# --- Over HTTP: the button, refusals and the isolation rule --------------------------------------


def test_open_case_view_lands_the_agent_on_the_case(client, connector_a, agent_a):
    message = noise_message(connector_a, "@Acme wann wird meine Rückerstattung überwiesen?")
    client.force_login(agent_a)
    response = client.post(open_url(message), {"lane": "issue"})
    case = Case.objects.get(conversation=message.conversation)
    assert response.status_code == 302 and response["Location"] == reverse("console:case", kwargs={"case_id": case.pk})
    page = client.get(response["Location"]).content.decode()
    assert "Rückerstattung" in page and "from Spam as Issue" in page


def test_open_case_view_refuses_an_active_case_with_a_link_to_it(client, connector_a, agent_a):
    case = open_case(connector_a, "My order never arrived", author="dup-1", thread="t-dup")
    also_noise = noise_message(connector_a, "follow me for free followers", author="dup-1", thread="t-dup")
    client.force_login(agent_a)
    before = state()
    response = client.post(open_url(also_noise), data=json.dumps({"lane": "issue"}), content_type=JSON,
                           HTTP_ACCEPT=JSON)
    assert response.status_code == 409
    body = response.json()
    assert "already has an active case" in body["reason"] and body["case_id"] == case.pk
    assert body["url"] == reverse("console:case", kwargs={"case_id": case.pk})
    page = client.post(open_url(also_noise), {"lane": "issue"})
    assert page.status_code == 409
    html = page.content.decode()
    assert "already has an active case" in html and reverse("console:case", kwargs={"case_id": case.pk}) in html
    assert state() == before


@pytest.mark.parametrize("lane", ["noise", "urgent", "<b>x</b>"])
def test_open_case_view_refuses_a_lane_that_is_not_a_case_lane(client, connector_a, agent_a, lane):
    message = noise_message(connector_a, "buy followers cheap")
    client.force_login(agent_a)
    before = state()
    response = client.post(open_url(message), data=json.dumps({"lane": lane}), content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 400 and "lane must be one of" in response.json()["reason"]
    assert state() == before


def test_open_case_view_refuses_our_own_outbound_message(client, connector_a, agent_a):
    message = noise_message(connector_a, "spam spam")
    ours = Message.objects.create(connector=connector_a, conversation=message.conversation, external_id="out-1",
                                  direction=Direction.OUTBOUND, text="We are here", channel="web",
                                  sent_at=message.sent_at, received_at=message.received_at)
    client.force_login(agent_a)
    before = state()
    response = client.post(open_url(ours), data=json.dumps({}), content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 400 and "one we sent" in response.json()["reason"]
    assert state() == before


def test_outsider_cannot_open_or_see_another_teams_set_aside_message(client, connector_a, agent_b):
    message = noise_message(connector_a, "TEAM-A-NOISE my card was charged twice")
    client.force_login(agent_b)
    before = state()
    for data in ({"lane": "issue"}, {"lane": "noise"}, {}):
        response = client.post(open_url(message), data=json.dumps(data), content_type=JSON, HTTP_ACCEPT=JSON)
        assert response.status_code == 404 and response.json()["reason"] == "no such message"
    assert client.post(open_url(message), {"lane": "issue"}).status_code == 404
    assert state() == before
    listing = client.get(reverse("console:noise")).content.decode()
    assert "TEAM-A-NOISE" not in listing and open_url(message) not in listing
    assert client.get(reverse("console:counts"), HTTP_ACCEPT=JSON).json()["noise"] == 0


def test_brand_manager_may_not_open_a_case(client, connector_a, manager_a):
    message = noise_message(connector_a, "is the store open tomorrow?")
    client.force_login(manager_a)
    before = state()
    response = client.post(open_url(message), data=json.dumps({}), content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 403 and "cannot reply" in response.json()["reason"]
    assert state() == before


# --- The spam view and the sidebar ---------------------------------------------------------------


def test_spam_view_lists_only_the_users_teams_noise_newest_first(client, connector_a, connector_b, agent_a):
    older = noise_message(connector_a, "TEAM-A older promo", author="n-1", minutes_ago=30)
    newer = noise_message(connector_a, "TEAM-A newer question", author="n-2", minutes_ago=5)
    noise_message(connector_b, "TEAM-B-ONLY noise", author="n-3")
    open_case(connector_a, "TEAM-A real complaint", author="n-4")
    client.force_login(agent_a)
    html = client.get(reverse("console:noise")).content.decode()
    assert "TEAM-B-ONLY" not in html and "TEAM-A real complaint" not in html
    assert html.index("TEAM-A newer question") < html.index("TEAM-A older promo")
    assert "Not spam — open a case" in html and open_url(newer) in html and open_url(older) in html
    assert ">Needs a look</option>" in html
    assert client.get(reverse("console:counts"), HTTP_ACCEPT=JSON).json()["noise"] == 2
    inbox = client.get(reverse("console:inbox")).content.decode()
    assert reverse("console:noise") in inbox and "Set aside as spam" in inbox
    assert 'data-count="noise">2<' in inbox


def test_spam_view_pages(client, connector_a, agent_a, monkeypatch):
    from responses.views import noise as noise_views

    monkeypatch.setattr(noise_views, "PAGE_SIZE", 2)
    for n in range(3):
        noise_message(connector_a, f"promo number {n}", author=f"pg-{n}", minutes_ago=n)
    client.force_login(agent_a)
    first = client.get(reverse("console:noise")).content.decode()
    second = client.get(reverse("console:noise"), {"page": 2}).content.decode()
    assert "promo number 0" in first and "promo number 1" in first and "promo number 2" not in first
    assert "promo number 2" in second and "Page 2 of 2" in second


# --- The drill-down ------------------------------------------------------------------------------


def test_drill_down_offers_open_as_a_case_for_a_noise_row(client, connector_a, supervisor_a, manager_a):
    message = noise_message(connector_a, "o aplicativo trava toda vez que abro")
    rollups.rebuild()
    url = reverse("console:insight-messages")
    client.force_login(supervisor_a)
    html = client.get(url, {"lane": "noise"}).content.decode()
    assert "Open as a case" in html and f'action="{open_url(message)}"' in html
    assert "No case you can open" not in html
    assert client.post(open_url(message), {"lane": "issue"}).status_code == 302
    case = Case.objects.get(conversation=message.conversation)
    assert reverse("console:case", kwargs={"case_id": case.pk}) in client.get(url).content.decode()

    other = noise_message(connector_a, "win a free phone", author="spammer")
    client.force_login(manager_a)  # reads dashboards, does not handle cases
    html = client.get(url, {"lane": "noise"}).content.decode()
    assert open_url(other) not in html and "Set aside as spam" in html


# --- Not scored, and lanes as words --------------------------------------------------------------


def not_scored(message: Message, language: str = "de") -> Classification:
    return Classification.objects.create(
        message=message, lane="triage", sentiment="", sentiment_scores={}, intent="", emotion="", language=language,
        flags=["not_scored"], priority=0.3, priority_factors={"lane_reason": "sent to the brand; language not scored"},
        model_name="test", model_version="t1",
    )


def test_not_scored_message_shows_as_not_scored_in_the_console(client, connector_a, agent_a):
    message = store_message(connector_a, "Mein Paket ist nicht angekommen", author="de-1")
    not_scored(message)
    route_messages([message.pk])
    case = Case.objects.get(conversation=message.conversation)
    assert (case.lane, case.queue.slug) == ("triage", "triage")
    client.force_login(agent_a)
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    assert "Not scored (German)" in page and "sentiment-neutral" not in page
    assert ">Needs a look</span>" in page and "language not scored" in page and ">why</summary>" in page
    inbox = client.get(reverse("console:inbox")).content.decode()
    assert "Not scored (German)" in inbox and ">Needs a look</span>" in inbox


def test_not_scored_messages_are_counted_apart_on_the_dashboards(client, connector_a, supervisor_a):
    open_case(connector_a, "Thanks a lot", author="en-1", lane="praise", sentiment="positive")
    message = store_message(connector_a, "Il mio ordine non è arrivato", author="it-1")
    not_scored(message, "it")
    rollups.rebuild()
    client.force_login(supervisor_a)
    body = client.get(reverse("console:insight-panel", kwargs={"name": "sentiment"}), HTTP_ACCEPT=JSON).json()
    assert body["totals"]["not_scored"] == 1 and sum(body["not_scored"]) == 1
    assert body["totals"]["neutral"] == 0 and body["totals"]["total"] == 1 and body["totals"]["net"] == 100.0
    html = client.get(reverse("console:insight-messages")).content.decode()
    assert "Not scored (Italian)" in html and "Il mio ordine" in html


def test_dashboards_name_lanes_in_words(client, connector_a, supervisor_a):
    message = noise_message(connector_a, "free crypto giveaway")
    rollups.rebuild()
    client.force_login(supervisor_a)
    dashboard = client.get(reverse("console:insight")).content.decode()
    assert 'name="lane" value="triage"> Needs a look' in dashboard and 'value="noise"> Spam' in dashboard
    drill = client.get(reverse("console:insight-messages"), {"lane": "noise"}).content.decode()
    assert "lane: Spam" in drill and "lanes: Spam" in drill and message.text in drill
