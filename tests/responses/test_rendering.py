"""Customer text is untrusted: every console page renders it escaped, never as a link to
`javascript:`, and under a Content-Security-Policy that forbids inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from listening.models import Contact, Message
from responses.cases import add_note
from tests.responses.conftest import open_case, store_message

ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "[click](javascript:alert(1))",
    "javascript:alert(1)",
]
HOSTILE = " ".join(ATTACKS)
LONG_WORD = "A" * 5000
RAW_MARKUP = ["<script>alert", "<img src=x", "<svg onload", "onerror=alert(1)>"]
JAVASCRIPT_HREF = re.compile(r"""(href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


@pytest.fixture
def hostile_case(agent_a, agent_a2, connector_a):
    """A customer whose name, message, link and profile are all attacks, plus one more case whose
    message is a single 5,000-character word."""
    agent_a2.first_name = "</script><script>alert(2)</script>"  # a team member's name goes into json_script
    agent_a2.save()
    case = open_case(connector_a, HOSTILE, author="evil", name="<img src=x onerror=alert(1)>",
                     handle="<svg onload=alert(1)>")
    Message.objects.filter(pk=case.last_message_id).update(url="javascript:alert(1)")
    Contact.objects.filter(external_id="evil").update(profile_url="javascript:alert(1)")
    # An earlier conversation of the same customer, for the profile's "other conversations".
    store_message(connector_a, "<script>alert(3)</script> earlier", author="evil", thread="t-older",
                  name="<img src=x onerror=alert(1)>")
    add_note(agent_a, case.pk, "note: <script>alert(4)</script> @agent_a2")
    long_case = open_case(connector_a, LONG_WORD, author="longword", name="Long Word")
    return case, long_case


def assert_safe(response):
    assert response.status_code == 200
    html = response.content.decode()
    for raw in RAW_MARKUP:
        assert raw not in html, f"unescaped {raw!r}"
    assert not JAVASCRIPT_HREF.search(html), "a javascript: URL became a link"
    assert " style=" not in html, "inline style attributes are blocked by the CSP"
    for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
        assert "src=" in tag or 'type="application/json"' in tag, f"inline script {tag}"
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    return html


def test_inbox_escapes_customer_text(client, agent_a, hostile_case):
    client.force_login(agent_a)

    html = assert_safe(client.get("/console/"))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_row_partial_escapes_customer_text(client, agent_a, hostile_case):
    case, long_case = hostile_case
    client.force_login(agent_a)

    html = assert_safe(client.get(f"/console/cases/{case.pk}/row/"))
    assert "&lt;svg onload=alert(1)&gt;" in html
    assert_safe(client.get(f"/console/cases/{long_case.pk}/row/"))


def test_conversation_view_escapes_thread_notes_and_profile(client, agent_a, hostile_case):
    case, _ = hostile_case
    client.force_login(agent_a)

    html = assert_safe(client.get(f"/console/cases/{case.pk}/"))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[click](javascript:alert(1))" in html  # shown as text, not a link
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html  # the note
    assert "<script>alert(2)" not in html  # the agent's name inside json_script
    # The customer profile: name and handle escaped.
    profile = html[html.index('id="customer"'):]
    assert "&lt;img src=x onerror=alert(1)&gt;" in profile and "&lt;svg onload=alert(1)&gt;" in profile


def test_conversation_view_keeps_a_very_long_word_whole(client, agent_a, hostile_case):
    _, long_case = hostile_case
    client.force_login(agent_a)

    html = assert_safe(client.get(f"/console/cases/{long_case.pk}/"))

    assert LONG_WORD in html
    css = (Path(settings.BASE_DIR) / "static" / "console" / "console.css").read_text()
    assert re.search(r"\.msg-text[^{]*\{[^}]*overflow-wrap:\s*anywhere", css.replace("\n", " "))
    assert re.search(r"\.preview[^{]*\{[^}]*overflow-wrap:\s*anywhere", css.replace("\n", " "))


def test_other_pages_carry_the_csp(client, agent_a, supervisor_a, hostile_case):
    case, _ = hostile_case
    client.force_login(agent_a)
    assert_safe(client.get("/console/?queue=unassigned"))
    assert_safe(client.get("/console/canned/"))
    client.force_login(supervisor_a)
    assert_safe(client.get("/console/canned/new/"))
    assert "Content-Security-Policy" in client.get(f"/console/cases/{case.pk}/canned/")


def test_console_javascript_never_uses_innerhtml_with_event_data():
    """The only innerHTML in the console script is the server-rendered row partial."""
    source = (Path(settings.BASE_DIR) / "static" / "console" / "console.js").read_text()
    uses = [line.strip() for line in source.splitlines() if "innerHTML" in line and not line.strip().startswith("*")]
    assert len(uses) == 1 and "response.text()" in uses[0]
    assert "outerHTML" not in source and "insertAdjacentHTML" not in source and "document.write" not in source
    assert "eval(" not in source and "new Function" not in source
