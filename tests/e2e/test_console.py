"""The live console in a real browser, against the real server (Daphne, eager Celery tasks, the
bundled model): messages posted to a connector's webhook reach the right agents' inboxes live,
replies leave once, agents see each other in a conversation, other teams see nothing, and
customer text never runs as code.

Every test builds its own teams and people with the ORM before the browser steps (the server
reads the same test database). Messages that must go through the whole flow (store, classify,
route, push) are POSTed, signed, to the server's webhook; the first one loads the model in the
server, so the first wait is long.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from listening.connectors.webhook import sign
from responses.models import Case, Reply as CaseReply, Role, Team
from responses.teams import ensure_default_queues
from tests.e2e.conftest import PAGE_TIMEOUT_MS, login
from tests.fakes.http import Reply
from tests.responses.conftest import PASSWORD, make_user, open_case

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

FIRST_CLASSIFIED_MS = 30_000  # the first message loads the model in the server
LIVE_MS = 15_000  # a pushed event, or one picked up by the consumer's poll (every 3 s)
QUIET_SECONDS = 5.0  # how long we watch for something that must not happen
SECRET_A, SECRET_B = "s3cret-a", "s3cret-b"

XSS = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
       '<svg onload="window.__pwned=1"></svg> [link](javascript:window.__pwned=1) javascript:window.__pwned=1')
LONG_WORD = "W" * 3000

# What a page would show if customer text had turned into markup or code.
INERTNESS = """() => {
  const urlAttrs = ["href", "src", "action", "formaction", "xlink:href"];
  const jsUrls = [...document.querySelectorAll("*")].filter((e) => urlAttrs.some(
    (a) => (e.getAttribute(a) || "").replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase().startsWith("javascript:")));
  return {
    pwned: typeof window.__pwned !== "undefined",
    jsUrls: jsUrls.map((e) => e.outerHTML.slice(0, 200)),
    injected: [...document.querySelectorAll(
      "main script:not([type='application/json']), main img[src='x'], main svg[onload], [onerror], [onload]")]
      .map((e) => e.outerHTML.slice(0, 200)),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
}"""


@dataclass
class Crew:
    team_a: Team
    team_b: Team
    connector_a: object
    connector_b: object
    alice: object  # agent, team A
    bob: object  # agent, team A
    carol: object  # agent, team B


@pytest.fixture
def crew(transactional_db, django_user_model, make_connector, fake_provider) -> Crew:
    """Team A (Alice, Bob) owns connector brand-a, whose replies go to the fake provider; team B
    (Carol) owns brand-b. Everyone is an available agent."""
    team_a = Team.objects.create(name="Team A", slug="team-a")
    team_b = Team.objects.create(name="Team B", slug="team-b")
    ensure_default_queues(team_a)
    ensure_default_queues(team_b)
    connector_a = make_connector("webhook", slug="brand-a", config={"callback_url": f"{fake_provider.url}/replies"},
                                 credentials={"signing_secret": SECRET_A})
    connector_b = make_connector("webhook", slug="brand-b", credentials={"signing_secret": SECRET_B})
    team_a.connectors.add(connector_a)
    team_b.connectors.add(connector_b)
    return Crew(
        team_a=team_a, team_b=team_b, connector_a=connector_a, connector_b=connector_b,
        alice=make_user(django_user_model, "alice_a", Role.AGENT, [team_a]),
        bob=make_user(django_user_model, "bob_a", Role.AGENT, [team_a]),
        carol=make_user(django_user_model, "carol_b", Role.AGENT, [team_b]),
    )


@pytest.fixture
def open_page(browser):
    """open_page() -> a fresh page in its own browser context (its own cookies), 1280 px wide.
    Uncaught script errors on any of them fail the test."""
    contexts, errors = [], []

    def open_():
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"script errors in the console: {errors}"


def console(open_page, base_url: str, username: str, path: str = "/console/"):
    """A page logged in as `username`, on `path`, with its live connection up."""
    page = open_page()
    login(page, base_url, username, PASSWORD)
    page.goto(f"{base_url}{path}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    return page


def post_message(base_url: str, connector, secret: str, text: str, *, author: str = "cust-1",
                 name: str = "Casey Customer", thread: str = "") -> None:
    """Deliver one message to the connector's webhook, signed as the source would. The server
    stores, classifies and routes it before it answers."""
    payload = {"id": uuid.uuid4().hex, "text": text, "author": {"id": author, "name": name},
               "thread_id": thread or f"t-{author}"}
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign(secret, int(time.time()), body)}
    response = httpx.post(f"{base_url}/hooks/{connector.slug}/", content=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1, response.text


def case_of(text: str) -> Case:
    return Case.objects.get(conversation__messages__text=text)


def row(page, text: str):
    return page.locator("#case-rows tr.case-row", has_text=text)


# --- 1 and 2: a message arrives live; the reply leaves once ------------------------------------


def test_a_new_message_appears_live_and_the_reply_is_delivered_once(open_page, live_server_url, crew,
                                                                     fake_provider):
    @fake_provider.route("POST", "/replies")
    def replies(request):
        return Reply(200, {"id": "ext-1"})

    text = "My order #4417 never arrived and nobody answers my emails!"
    alice = console(open_page, live_server_url, "alice_a")
    alice.evaluate("window.__marker = 1")

    post_message(live_server_url, crew.connector_a, SECRET_A, text)

    expect(row(alice, text)).to_be_visible(timeout=FIRST_CLASSIFIED_MS)
    assert alice.evaluate("window.__marker") == 1, "the inbox reloaded instead of updating live"
    case = case_of(text)
    assert row(alice, text).get_attribute("data-case-id") == str(case.pk)

    # Open it, reply, and double-click Send.
    row(alice, text).locator("a.case-link").click()
    expect(alice).to_have_url(f"{live_server_url}/console/cases/{case.pk}/")
    expect(alice.locator("#thread")).to_contain_text(text)
    expect(alice.locator("#live-status")).to_have_attribute("data-state", "live")
    answer = "So sorry! Your parcel left our warehouse today; here is the tracking link."
    alice.locator("#reply-text").fill(answer)
    alice.evaluate("window.__marker = 2")
    alice.locator("#reply-form button[type=submit][value='0']").dblclick()

    sent = alice.locator("#thread article.msg-out", has_text=answer)
    expect(sent.locator(".status")).to_have_text("delivered", timeout=LIVE_MS)
    expect(sent).to_have_count(1)
    expect(alice.locator("#reply-text")).to_have_value("")
    assert alice.evaluate("window.__marker") == 2, "sending reloaded the page"

    # The provider got it exactly once, and nothing else comes after.
    deadline = time.monotonic() + 10
    while not fake_provider.calls("/replies") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    calls = fake_provider.calls("/replies")
    assert len(calls) == 1, [c.headers.get("idempotency-key") for c in calls]
    reply = CaseReply.objects.get(case=case)
    assert reply.status == CaseReply.Status.DELIVERED
    assert calls[0].headers["idempotency-key"] == reply.idempotency_key
    assert calls[0].json()["id"] == reply.idempotency_key
    assert calls[0].json()["text"] == answer
    # Still delivered once the last events are in (a late answer must not turn it back to pending).
    expect(sent.locator(".status")).to_have_text("delivered")


# --- 3: two agents of a team in one conversation -------------------------------------------------


def test_agents_in_the_same_conversation_see_each_other_and_who_is_typing(open_page, live_server_url, crew,
                                                                          settings):
    settings.CXM_CLASSIFY_ON_INGEST = False  # this case is built here, without the model
    case = open_case(crew.connector_a, "The app keeps crashing when I pay, please help")
    path = f"/console/cases/{case.pk}/"

    alice = console(open_page, live_server_url, "alice_a", path)
    bob = console(open_page, live_server_url, "bob_a", path)

    expect(bob.locator("#collision")).to_contain_text("Alice is viewing", timeout=LIVE_MS)
    expect(alice.locator("#collision")).to_contain_text("Bob is viewing", timeout=LIVE_MS)
    expect(bob.locator("#collision")).not_to_contain_text("Bob")

    alice.locator("#reply-text").press_sequentially("Hello Casey, ")
    expect(bob.locator("#collision")).to_contain_text("Alice is typing", timeout=LIVE_MS)
    # Three seconds after the last key, Alice is only viewing again.
    expect(bob.locator("#collision")).to_contain_text("Alice is viewing", timeout=LIVE_MS)

    alice.goto(f"{live_server_url}/console/")
    expect(bob.locator("#collision")).not_to_contain_text("Alice", timeout=LIVE_MS)


# --- 4: another team sees nothing -----------------------------------------------------------------


def test_an_agent_of_another_team_sees_nothing_of_it(open_page, live_server_url, crew):
    text_a = "My invoice for order #9081 is wrong, I was charged twice!"
    text_b = "Your store in Lyon was closed all day, very disappointing."
    alice = console(open_page, live_server_url, "alice_a")
    carol = console(open_page, live_server_url, "carol_b")

    post_message(live_server_url, crew.connector_a, SECRET_A, text_a, author="cust-a")
    expect(row(alice, text_a)).to_be_visible(timeout=FIRST_CLASSIFIED_MS)
    post_message(live_server_url, crew.connector_b, SECRET_B, text_b, author="cust-b")
    # Carol's console is live (her own team's message arrives) ...
    expect(row(carol, text_b)).to_be_visible(timeout=LIVE_MS)
    # ... and in the seconds after Alice saw hers, neither sees the other team's.
    time.sleep(QUIET_SECONDS)
    expect(carol.locator("#case-rows tr.case-row")).to_have_count(1)
    expect(row(carol, text_a)).to_have_count(0)
    expect(row(alice, text_b)).to_have_count(0)
    assert text_a not in carol.content()

    # Team A's case, asked for by its address, does not exist for Carol.
    case_a = case_of(text_a)
    response = carol.goto(f"{live_server_url}/console/cases/{case_a.pk}/")
    assert response is not None and response.status == 404
    assert text_a not in carol.content()
    for suffix in ("", "row/"):
        answer = carol.request.get(f"{live_server_url}/console/cases/{case_a.pk}/{suffix}")
        assert answer.status == 404, suffix
        assert text_a not in answer.text()


# --- 5: customer text is inert --------------------------------------------------------------------


def test_untrusted_text_renders_inert(open_page, live_server_url, crew):
    first = f"My order #5150 never arrived and nobody answers! {XSS} {LONG_WORD}"
    second = f"Still nothing, I want a refund now! {XSS} again {LONG_WORD}"
    name = '<b>Eve</b><img src=x onerror="window.__pwned=1">'
    alice = console(open_page, live_server_url, "alice_a")

    post_message(live_server_url, crew.connector_a, SECRET_A, first, author="eve", name=name, thread="t-eve")

    # In the inbox, inserted live.
    new_row = alice.locator("#case-rows tr.case-row", has_text="#5150")
    expect(new_row).to_be_visible(timeout=FIRST_CLASSIFIED_MS)
    expect(new_row).to_contain_text("<script>window.__pwned=1</script>")
    expect(new_row).to_contain_text("<b>Eve</b>")
    alice.wait_for_timeout(1000)  # let an injected handler fire, if any
    assert_inert(alice, "inbox, live row")

    # In the conversation, rendered by the server ...
    new_row.locator("a.case-link").click()
    expect(alice).to_have_url(f"{live_server_url}/console/cases/{case_of(first).pk}/")
    expect(alice.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(alice.locator("#thread")).to_contain_text("never arrived and nobody answers! <script>window.__pwned=1")
    expect(alice.locator("#thread")).to_contain_text(LONG_WORD)
    expect(alice.locator(".case-head h1")).to_contain_text("<b>Eve</b>")
    alice.wait_for_timeout(1000)
    assert_inert(alice, "conversation")

    # ... and a follow-up appended live.
    post_message(live_server_url, crew.connector_a, SECRET_A, second, author="eve", name=name, thread="t-eve")
    appended = alice.locator("#thread article.msg-in", has_text="I want a refund now!")
    expect(appended).to_be_visible(timeout=LIVE_MS)
    expect(appended).to_contain_text("<script>window.__pwned=1</script>")
    expect(appended).to_contain_text(LONG_WORD)
    alice.wait_for_timeout(1000)
    assert_inert(alice, "conversation, live message")


def assert_inert(page, where: str) -> None:
    found = page.evaluate(INERTNESS)
    assert not found["pwned"], f"{where}: customer text ran as script"
    assert not found["jsUrls"], f"{where}: javascript: URLs in the page: {found['jsUrls']}"
    assert not found["injected"], f"{where}: customer markup became elements: {found['injected']}"
    assert found["overflow"] <= 1, f"{where}: the page scrolls sideways by {found['overflow']} px"


# --- 6: keyboard ----------------------------------------------------------------------------------


def test_j_then_enter_opens_the_first_case(open_page, live_server_url, crew, settings):
    settings.CXM_CLASSIFY_ON_INGEST = False  # these cases are built here, without the model
    urgent = open_case(crew.connector_a, "Charged twice and no answer for a week!", author="cust-1", priority=0.9)
    open_case(crew.connector_a, "Where is my parcel?", author="cust-2", priority=0.2)

    alice = console(open_page, live_server_url, "alice_a")
    rows = alice.locator("#case-rows tr.case-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-case-id", str(urgent.pk))

    alice.keyboard.press("j")
    expect(rows.first).to_have_class(_has_class("selected"))
    alice.keyboard.press("Enter")
    expect(alice).to_have_url(f"{live_server_url}/console/cases/{urgent.pk}/")
    expect(alice.locator("#thread")).to_contain_text("Charged twice")


def _has_class(name: str) -> re.Pattern:
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")
