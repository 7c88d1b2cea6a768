"""The server-rendered console: pages, actions by form and by fetch, and bad input."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from learning.models import Correction, Intent
from responses.models import AgentProfile, CannedResponse, Case, CaseStatus, ConsoleEvent, Note, Presence, Reply
from tests.fakes.http import Reply as FakeReply
from tests.responses.conftest import PASSWORD, open_case

JSON = "application/json"


def post_json(client, url: str, data, **extra):
    payload = data if isinstance(data, str) else json.dumps(data)
    return client.post(url, data=payload, content_type=JSON, HTTP_ACCEPT=JSON, **extra)


def everyone_offline():
    """Nobody available: new cases wait unassigned in the hold queue."""
    AgentProfile.objects.update(presence=Presence.OFFLINE)


def provider_ok(fake_provider):
    @fake_provider.route("POST", "/replies")
    def replies(request):
        return FakeReply(200, {"id": f"ext-{len(fake_provider.calls('/replies'))}"})


# --- Inbox -----------------------------------------------------------------------------------
def test_inbox_lists_team_cases_with_chips_and_counts(client, agent_a, connector_a):
    everyone_offline()
    case = open_case(connector_a, "Where is my parcel?", author="cust-9", name="Dana Doe")
    client.force_login(agent_a)

    response = client.get("/console/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="case-{case.pk}"' in html
    assert "Dana Doe" in html and "Where is my parcel?" in html
    # Names on the chips; the scores only behind the "why" disclosure.
    assert 'title="sentiment">Negative<' in html and '"chip emotion">Anger<' in html
    assert '"chip intent">Complaint about service<' in html  # the intent's name, not its slug
    why = html[html.index('<details class="why">'):html.index("</details>", html.index('<details class="why">'))]
    assert "negative (0.90)" in why and "(complaint, 0.80)" in why and "anger (0.70)" in why
    assert "negative 0.90" not in html
    assert 'class="chip lane lane-issue"' in html
    assert 'data-count="active">1<' in html and 'data-count="held">1<' in html
    assert f'data-count-queue="{case.queue_id}">1<' in html
    assert response["Content-Security-Policy"].startswith("default-src 'self'")
    body_tag = html[html.index("<body"):html.index(">", html.index("<body"))]
    assert f'data-last-event-id="{ConsoleEvent.objects.order_by("-id").first().pk}"' in body_tag


def test_inbox_queries_do_not_grow_with_cases(client, agent_a, connector_a):
    everyone_offline()
    open_case(connector_a, "one", author="c-1")
    client.force_login(agent_a)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/console/").status_code == 200
    for n in range(2, 8):
        open_case(connector_a, f"case {n}", author=f"c-{n}")
    with CaptureQueriesContext(connection) as many:
        assert client.get("/console/").status_code == 200
    assert len(many) == len(few)


def test_inbox_sorts_breached_then_priority(client, agent_a, connector_a):
    everyone_offline()
    low = open_case(connector_a, "low", author="c-low", priority=0.1)
    high = open_case(connector_a, "high", author="c-high", priority=0.9)
    breached = open_case(connector_a, "late", author="c-late", priority=0.05)
    Case.objects.filter(pk=breached.pk).update(sla_state="breached")
    client.force_login(agent_a)

    html = client.get("/console/").content.decode()

    positions = [html.index(f'id="case-{c.pk}"') for c in (breached, high, low)]
    assert positions == sorted(positions)


def test_inbox_queue_filters(client, agent_a, connector_a):
    everyone_offline()
    mine = open_case(connector_a, "mine please", author="c-1")
    held = open_case(connector_a, "still waiting", author="c-2")
    done = open_case(connector_a, "all good now", author="c-3")
    client.force_login(agent_a)
    assert post_json(client, f"/console/cases/{mine.pk}/assign/", {"assignee": "me"}).status_code == 200
    assert post_json(client, f"/console/cases/{done.pk}/status/", {"status": "resolved"}).status_code == 200

    def shown(query: str) -> set[int]:
        html = client.get(f"/console/?queue={query}").content.decode()
        return {c.pk for c in (mine, held, done) if f'id="case-{c.pk}"' in html}

    assert shown("") == {mine.pk, held.pk}
    assert shown("mine") == {mine.pk}
    assert shown("unassigned") == {held.pk}
    assert shown("held") == {held.pk}
    assert shown("resolved") == {done.pk}
    assert shown(str(held.queue_id)) == {mine.pk, held.pk}
    assert client.get("/console/?queue=nope").status_code == 400


def test_case_row_partial_is_one_row(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)

    response = client.get(f"/console/cases/{case.pk}/row/")

    html = response.content.decode().strip()
    assert response.status_code == 200
    assert html.startswith("<tr") and html.endswith("</tr>") and html.count("<tr") == 1
    assert 'title="sentiment">Negative<' in html and "negative (0.90)" in html


def test_counts_json(client, agent_a, connector_a):
    everyone_offline()
    case = open_case(connector_a)
    client.force_login(agent_a)

    counts = client.get("/console/counts/").json()

    assert counts["active"] == 1 and counts["held"] == 1 and counts["unassigned"] == 1 and counts["mine"] == 0
    assert counts["queues"] == {str(case.queue_id): 1}


def test_presence_selector_sets_presence(client, agent_a):
    client.force_login(agent_a)

    response = client.post("/console/presence/", {"presence": "away"})

    assert response.status_code == 302
    assert AgentProfile.objects.get(user=agent_a).presence == "away"
    assert post_json(client, "/console/presence/", {"presence": "asleep"}).status_code == 400


def test_next_case_follows_inbox_order(client, agent_a, connector_a):
    everyone_offline()
    first = open_case(connector_a, "first", author="c-1", priority=0.9)
    second = open_case(connector_a, "second", author="c-2", priority=0.5)
    client.force_login(agent_a)

    assert client.get("/console/next/")["Location"] == f"/console/cases/{first.pk}/"
    assert client.get(f"/console/next/?after={first.pk}")["Location"] == f"/console/cases/{second.pk}/"
    assert client.get(f"/console/next/?after={second.pk}")["Location"] == f"/console/cases/{first.pk}/"
    Case.objects.update(status=CaseStatus.RESOLVED)
    assert client.get("/console/next/")["Location"] == "/console/"


# --- Conversation ----------------------------------------------------------------------------
def test_case_page_shows_thread_chips_and_model_version(client, agent_a, connector_a):
    case = open_case(connector_a, "Broken again", topics=["router"])
    Note.objects.create(case=case, author=agent_a, text="Known issue, see ticket 12")
    client.force_login(agent_a)

    response = client.get(f"/console/cases/{case.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Broken again" in html and "Known issue, see ticket 12" in html
    # Scores and the model behind the message's "why" disclosure, not on the message itself.
    signals = html[html.index('class="msg-signals"'):html.index("</details>", html.index('class="msg-signals"'))]
    assert "Model test t1" in signals and "negative (0.90)" in signals and "router" in html
    assert 'title="sentiment">Negative<' in html
    assert 'name="field" value="sentiment"' in html and 'name="field" value="lane"' in html
    assert 'id="collision"' in html and f'data-case-id="{case.pk}"' in html
    assert "Casey Customer" in html
    assert '<svg class="spark"' in html


def test_customer_profile_lists_other_conversations(client, agent_a, connector_a):
    first = open_case(connector_a, "first thread", author="cust-1", thread="t-1")
    second = open_case(connector_a, "second thread", author="cust-1", thread="t-2")
    client.force_login(agent_a)

    html = client.get(f"/console/cases/{second.pk}/").content.decode()

    assert f'href="/console/cases/{first.pk}/"' in html


def test_correction_records_it_and_moves_the_case_lane(client, agent_a, connector_a):
    case = open_case(connector_a, "Love it, thanks!")
    Intent.objects.create(slug="praise_product", name="Praise")
    client.force_login(agent_a)
    url = f"/console/cases/{case.pk}/correct/"

    assert client.post(url, {"message": case.last_message_id, "field": "lane", "value": "praise"}).status_code == 302
    assert post_json(client, url, {"message": case.last_message_id, "field": "sentiment",
                                   "value": "positive"}).status_code == 200
    assert post_json(client, url, {"message": case.last_message_id, "field": "intent",
                                   "value": "praise_product"}).status_code == 200

    assert set(Correction.objects.values_list("field", "value")) == {
        ("lane", "praise"), ("sentiment", "positive"), ("intent", "praise_product")}
    case.refresh_from_db()
    assert case.lane == "praise"
    assert post_json(client, url, {"message": case.last_message_id, "field": "lane", "value": "meh"}).status_code == 400


def test_reply_same_idempotency_key_sends_once(client, agent_a, connector_a, fake_provider,
                                               django_capture_on_commit_callbacks):
    provider_ok(fake_provider)
    case = open_case(connector_a)
    client.force_login(agent_a)
    url = f"/console/cases/{case.pk}/reply/"

    with django_capture_on_commit_callbacks(execute=True):
        first = post_json(client, url, {"text": "Sorry! On its way.", "idempotency_key": "k-123"})
    with django_capture_on_commit_callbacks(execute=True):
        second = post_json(client, url, {"text": "Sorry! On its way.", "idempotency_key": "k-123"})

    assert first.status_code == second.status_code == 200
    assert first.json()["reply"]["id"] == second.json()["reply"]["id"]
    reply = Reply.objects.get()
    assert reply.idempotency_key == "k-123" and reply.status == Reply.Status.DELIVERED
    assert len(fake_provider.calls("/replies")) == 1
    assert fake_provider.calls("/replies")[0].json()["text"] == "Sorry! On its way."


def test_reply_by_plain_form_redirects_to_the_case(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)

    response = client.post(f"/console/cases/{case.pk}/reply/", {"text": "Hello", "idempotency_key": "form-1"})

    assert response.status_code == 302 and response["Location"] == f"/console/cases/{case.pk}/"
    assert Reply.objects.get().text == "Hello"


def test_send_and_resolve(client, agent_a, connector_a, fake_provider, django_capture_on_commit_callbacks):
    provider_ok(fake_provider)
    case = open_case(connector_a)
    client.force_login(agent_a)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, f"/console/cases/{case.pk}/reply/",
                             {"text": "Fixed, thanks!", "idempotency_key": "k-res", "resolve": True})

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED
    assert Reply.objects.get().resolve_on_delivery


def test_failed_reply_shows_reason_and_retries(client, agent_a, connector_a, fake_provider,
                                               django_capture_on_commit_callbacks):
    answers = [FakeReply(400, {"error": "recipient blocked us"}), FakeReply(200, {"id": "ext-ok"})]

    @fake_provider.route("POST", "/replies")
    def replies(request):
        return answers.pop(0)

    case = open_case(connector_a)
    client.force_login(agent_a)
    with django_capture_on_commit_callbacks(execute=True):
        post_json(client, f"/console/cases/{case.pk}/reply/", {"text": "Hi", "idempotency_key": "k-f"})
    reply = Reply.objects.get()
    assert reply.status == Reply.Status.FAILED

    html = client.get(f"/console/cases/{case.pk}/").content.decode()
    assert f'id="reply-{reply.pk}"' in html and "Retry" in html and reply.last_error[:20] in html

    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, f"/console/replies/{reply.pk}/retry/", {})
    assert response.status_code == 200
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED


def test_note_mention_notifies_the_mentioned_agent(client, agent_a, agent_a2, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)

    response = post_json(client, f"/console/cases/{case.pk}/notes/", {"text": "@agent_a2 can you take this?"})

    assert response.status_code == 200
    note = Note.objects.get()
    assert list(note.mentions.all()) == [agent_a2]
    event = ConsoleEvent.objects.get(type="mention")
    assert event.user_id == agent_a2.pk and event.payload["case_id"] == case.pk


def test_assign_to_me(client, agent_a, connector_a):
    everyone_offline()
    case = open_case(connector_a)
    client.force_login(agent_a)

    response = client.post(f"/console/cases/{case.pk}/assign/", {"assignee": "me"})

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.assignee == agent_a


def test_supervisor_reassigns_but_agent_cannot(client, agent_a, agent_a2, supervisor_a, connector_a):
    everyone_offline()
    case = open_case(connector_a)
    url = f"/console/cases/{case.pk}/assign/"

    client.force_login(agent_a)
    assert post_json(client, url, {"assignee": agent_a2.pk}).status_code == 403
    case.refresh_from_db()
    assert case.assignee is None

    client.force_login(supervisor_a)
    assert post_json(client, url, {"assignee": str(agent_a2.pk)}).status_code == 200
    case.refresh_from_db()
    assert case.assignee == agent_a2
    assert post_json(client, url, {"assignee": "none"}).status_code == 200


def test_brand_manager_reads_but_cannot_reply(client, manager_a, connector_a):
    case = open_case(connector_a)
    client.force_login(manager_a)

    page = client.get(f"/console/cases/{case.pk}/")
    reply = post_json(client, f"/console/cases/{case.pk}/reply/", {"text": "hi", "idempotency_key": "m-1"})
    note = post_json(client, f"/console/cases/{case.pk}/notes/", {"text": "hi"})
    status = post_json(client, f"/console/cases/{case.pk}/status/", {"status": "resolved"})

    assert page.status_code == 200 and 'id="reply-form"' not in page.content.decode()
    assert reply.status_code == note.status_code == status.status_code == 403
    assert not Reply.objects.exists() and not Note.objects.exists()
    assert Case.objects.get(pk=case.pk).status != CaseStatus.RESOLVED


def test_status_and_tags(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)

    assert post_json(client, f"/console/cases/{case.pk}/status/", {"status": "pending"}).status_code == 200
    assert client.post(f"/console/cases/{case.pk}/tags/", {"tags": "refund, vip"}).status_code == 302

    case.refresh_from_db()
    assert case.status == "pending" and case.tags == ["refund", "vip"]


# --- Bulk ------------------------------------------------------------------------------------
def test_bulk_assign_tag_and_resolve(client, agent_a, agent_a2, supervisor_a, connector_a):
    everyone_offline()
    cases = [open_case(connector_a, f"case {n}", author=f"c-{n}") for n in range(3)]
    ids = [c.pk for c in cases]
    client.force_login(agent_a)

    assert post_json(client, "/console/bulk/", {"action": "assign", "ids": ids, "assignee": "me"}).json()["count"] == 3
    assert client.post("/console/bulk/", {"action": "tag", "ids": ids[:2], "tags": "refund"}).status_code == 302
    assert post_json(client, "/console/bulk/", {"action": "assign", "ids": ids,
                                                "assignee": agent_a2.pk}).status_code == 403
    client.force_login(supervisor_a)
    assert post_json(client, "/console/bulk/", {"action": "assign", "ids": ids[:1],
                                                "assignee": agent_a2.pk}).status_code == 200
    assert post_json(client, "/console/bulk/", {"action": "resolve", "ids": ids[1:]}).status_code == 200

    rows = {c.pk: c for c in Case.objects.filter(pk__in=ids)}
    assert rows[ids[0]].assignee == agent_a2 and rows[ids[0]].tags == ["refund"]
    assert rows[ids[1]].status == rows[ids[2]].status == CaseStatus.RESOLVED
    assert rows[ids[2]].assignee == agent_a and rows[ids[2]].tags == []


# --- Canned responses ------------------------------------------------------------------------
def test_canned_responses_render_placeholders(client, agent_a, connector_a, team_a, team_b):
    case = open_case(connector_a, author="c-1", name="Casey Jones")
    CannedResponse.objects.create(team=team_a, title="Sorry", shortcut="sorry",
                                  text="Hi {customer_first_name}, {agent_first_name} from {brand} here. {unknown}")
    CannedResponse.objects.create(team=None, title="Global", text="Thanks {customer_name}!")
    CannedResponse.objects.create(team=team_b, title="Team B only", text="secret")
    client.force_login(agent_a)

    items = client.get(f"/console/cases/{case.pk}/canned/").json()["canned"]

    assert {i["title"]: i["text"] for i in items} == {
        "Sorry": "Hi Casey, Agent from our team here. {unknown}", "Global": "Thanks Casey Jones!"}


def test_supervisor_edits_canned_and_agent_gets_403(client, agent_a, supervisor_a, team_a):
    client.force_login(supervisor_a)
    assert client.get("/console/canned/new/").status_code == 200
    response = client.post("/console/canned/new/", {"title": "Hello", "shortcut": "hello", "team": team_a.pk,
                                                    "text": "Hi {customer_first_name}"})
    assert response.status_code == 302
    canned = CannedResponse.objects.get()
    assert client.post(f"/console/canned/{canned.pk}/", {"title": "Hello!", "shortcut": "hello", "team": team_a.pk,
                                                          "text": "Hey"}).status_code == 302
    canned.refresh_from_db()
    assert canned.title == "Hello!" and canned.team == team_a  # global ones are admins' (test_isolation_http)
    listing = client.get("/console/canned/").content.decode()
    assert "Hello!" in listing and "{customer_first_name}" in listing

    client.force_login(agent_a)
    assert client.get("/console/canned/").status_code == 200
    assert client.get("/console/canned/new/").status_code == 403
    assert client.post(f"/console/canned/{canned.pk}/", {"title": "x", "text": "y"}).status_code == 403
    assert client.post(f"/console/canned/{canned.pk}/delete/").status_code == 403
    canned.refresh_from_db()
    assert canned.title == "Hello!"

    client.force_login(supervisor_a)
    assert client.post(f"/console/canned/{canned.pk}/delete/").status_code == 302
    assert not CannedResponse.objects.exists()


# --- Login -----------------------------------------------------------------------------------
def test_login_page_signs_in_and_logout_is_a_post(client, agent_a):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and 'name="password"' in page.content.decode()
    assert "script-src 'self'" in page["Content-Security-Policy"]

    response = client.post("/accounts/login/", {"username": "agent_a", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/console/"
    inbox = client.get("/console/").content.decode()
    assert 'action="/accounts/logout/"' in inbox

    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/console/").status_code == 302


def test_login_locks_out_after_five_failures(client, agent_a):
    statuses = [client.post("/accounts/login/", {"username": "agent_a", "password": f"wrong-{n}"}).status_code
                for n in range(6)]

    assert statuses[:4] == [200] * 4  # wrong password: the form again
    assert statuses[4:] == [429, 429]  # the fifth failure locks the username on this address
    locked = client.post("/accounts/login/", {"username": "agent_a", "password": PASSWORD})
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()


def test_root_redirects_to_the_console(client):
    assert client.get("/")["Location"] == "/console/"


# --- Bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "url", "payload", "status"), [
    ("get", "/console/cases/abc/", None, 404),
    ("get", "/console/cases/99999999999999999999999/", None, 404),
    ("get", "/console/cases/-1/row/", None, 404),
    ("post", "/console/cases/abc/reply/", {"text": "hi"}, 404),
    ("post", "/console/replies/x1/retry/", {}, 404),
    ("post", "/console/replies/424242/retry/", {}, 404),
    ("get", "/console/canned/zz/", None, 404),
    ("post", "CASE/reply/", {"text": ""}, 400),
    ("post", "CASE/reply/", {"text": "x" * 5000}, 400),
    ("post", "CASE/reply/", {"text": 42}, 400),
    ("post", "CASE/reply/", {"text": "hi", "idempotency_key": "<bad key>"}, 400),
    ("post", "CASE/reply/", "{not json", 400),
    ("post", "CASE/reply/", "[1, 2]", 400),
    ("post", "CASE/status/", {"status": "exploded"}, 400),
    ("post", "CASE/status/", {}, 400),
    ("post", "CASE/notes/", {"text": ""}, 400),
    ("post", "CASE/notes/", {"text": "n" * 5000}, 400),
    ("post", "CASE/tags/", {"tags": {"a": 1}}, 400),
    ("post", "CASE/tags/", {"tags": "<script>"}, 400),
    ("post", "CASE/assign/", {"assignee": "nobody-here"}, 400),
    ("post", "CASE/correct/", {"message": "x", "field": "lane", "value": "issue"}, 400),
    ("post", "CASE/correct/", {"message": "LAST", "field": "colour", "value": "red"}, 400),
    ("post", "CASE/correct/", {"message": ["x"], "field": "lane", "value": "issue"}, 400),
    ("post", "/console/bulk/", {"action": "explode", "ids": ["CASEID"]}, 400),
    ("post", "/console/bulk/", {"action": "resolve", "ids": []}, 400),
    ("post", "/console/bulk/", {"action": "resolve", "ids": ["abc"]}, 400),
    ("post", "/console/bulk/", {"action": "resolve", "ids": {"a": 1}}, 400),
    ("post", "/console/presence/", {}, 400),
    ("get", "CASE/reply/", None, 405),
])
def test_bad_input_is_a_4xx_with_a_reason(client, supervisor_a, connector_a, method, url, payload, status):
    case = open_case(connector_a)
    client.force_login(supervisor_a)
    url = url.replace("CASE", f"/console/cases/{case.pk}")
    if isinstance(payload, dict):
        payload = json.loads(json.dumps(payload).replace('"CASEID"', str(case.pk))
                             .replace('"LAST"', str(case.last_message_id)))

    response = client.get(url, HTTP_ACCEPT=JSON) if method == "get" else post_json(client, url, payload)

    assert response.status_code == status, response.content[:300]
    assert response.json()["reason"]
    assert not Reply.objects.exists()


def test_bad_form_posts_are_4xx_too(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)

    assert client.post(f"/console/cases/{case.pk}/reply/", {"text": "   "}).status_code == 400
    assert client.post(f"/console/cases/{case.pk}/status/", {"status": "nope"}).status_code == 400
    assert client.post("/console/bulk/", {"action": "resolve"}).status_code == 400


def test_user_without_a_role_sees_a_no_access_page(client, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="x-very-long-pass")
    client.force_login(nobody)

    response = client.get("/console/")

    assert response.status_code == 403
    assert "No console access" in response.content.decode()
    assert "Content-Security-Policy" in response
