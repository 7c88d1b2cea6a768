"""The dashboards over HTTP: who may look, refused filters (400 with a reason), each panel's JSON
and CSV (formula injection neutralised), the drill-down (granted messages only, a case link only
where the user sees the case, text escaped) and the PDF snapshot (a real PNG, nothing else).

Messages are stored and classified with the personas' helpers, then the rollups are rebuilt
from them (learning.rollups.rebuild), as `manage.py rebuild_rollups` would.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from insight.export import MAX_PNG_BYTES, csv_cell
from learning import rollups
from learning.models import Classification, Term
from responses.models import Case, Role
from tests.responses.conftest import make_user, open_case

JSON = "application/json"
DASHBOARD = "/console/insight/"
PANEL_NAMES = ("sentiment", "volume", "intents", "emotions", "topics", "care", "recovered")
HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"


def panel_url(name: str) -> str:
    return reverse("console:insight-panel", kwargs={"name": name})


def get_json(client, url: str, **params):
    return client.get(url, params, HTTP_ACCEPT=JSON)


@pytest.fixture
def data(connector_a, connector_b):
    """Team A: two negative complaints and a positive praise; team B: one negative message."""
    cases = {
        "angry": open_case(connector_a, "My order never arrived!", author="c1"),
        "late": open_case(connector_a, "Still waiting for a refund", author="c2", intent="refund_request",
                          emotion="sadness"),
        "happy": open_case(connector_a, "Thanks, great service", author="c3", lane="praise", sentiment="positive",
                           intent="praise", emotion="joy"),
        "other": open_case(connector_b, "TEAM-B-ONLY complaint", author="c4"),
    }
    rollups.rebuild()
    return cases


def with_term(case: Case, term: Term) -> None:
    """Mark the case's message as mentioning `term`, as the term matcher writes it."""
    Classification.objects.filter(message_id=case.last_message_id).update(
        topics=[{"term_id": term.pk, "name": term.name, "start": 0, "end": 3}])


# --- Access ------------------------------------------------------------------------------------


def test_agents_get_403_and_readers_get_the_page(client, data, agent_a, supervisor_a, manager_a, admin_user):
    client.force_login(agent_a)
    page = client.get(DASHBOARD)
    assert page.status_code == 403
    assert "Dashboards are for supervisors" in page.content.decode()
    assert get_json(client, panel_url("sentiment")).status_code == 403
    assert client.get(panel_url("sentiment"), {"format": "csv"}).status_code == 403
    assert get_json(client, reverse("console:insight-messages")).status_code == 403
    assert ">Dashboards</a>" not in client.get("/console/").content.decode()

    for reader in (supervisor_a, manager_a, admin_user):
        client.force_login(reader)
        page = client.get(DASHBOARD)
        assert page.status_code == 200, reader
        html = page.content.decode()
        assert 'data-panel="sentiment"' in html and 'data-panel="recovered"' in html
        assert "style-src 'self'" in page["Content-Security-Policy"]
        assert "unsafe-inline" not in page["Content-Security-Policy"]
        assert ">Dashboards</a>" in client.get("/console/queue/").content.decode()
        for name in PANEL_NAMES:
            response = get_json(client, panel_url(name))
            assert response.status_code == 200, (reader, name, response.content[:200])
            assert "ignored" in response.json()


def test_anonymous_is_sent_to_login(client):
    for url in (DASHBOARD, panel_url("sentiment"), reverse("console:insight-messages")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_filter_form_offers_only_what_the_user_may_see(client, data, manager_a, connector_a, connector_b):
    client.force_login(manager_a)
    html = client.get(DASHBOARD).content.decode()
    assert f'name="connector" value="{connector_a.pk}"' in html
    assert f'name="connector" value="{connector_b.pk}"' not in html
    assert "Team B" not in html


# --- Refused filters -----------------------------------------------------------------------------


@pytest.mark.parametrize("params, words", [
    ({"from": "2026-03-10", "to": "2026-03-01"}, "upside down"),
    ({"channel": "carrier-pigeon"}, "unknown channel"),
    ({"from": "2016-01-01", "to": "2025-12-31", "granularity": "hour"}, "at most"),
    ({"from": "2026-01-01", "to": "2026-03-01", "granularity": "hour"}, "hourly"),
    ({"from": "yesterday"}, "must be a date"),
    ({"granularity": "minute"}, "granularity"),
])
def test_bad_filters_get_400_with_a_reason(client, data, manager_a, params, words):
    client.force_login(manager_a)
    for name in ("sentiment", "care"):
        response = get_json(client, panel_url(name), **params)
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "invalid_filter"
        assert words in response.json()["reason"]
    csv_response = client.get(panel_url("volume"), {**params, "format": "csv"})
    assert csv_response.status_code == 400
    page = client.get(DASHBOARD, params)
    assert page.status_code == 400
    html = page.content.decode()
    assert 'id="filter-error"' in html and words in html
    assert 'data-panel="sentiment"' not in html  # no panels to load under refused filters


def test_a_connector_of_another_team_is_refused(client, data, manager_a, connector_b):
    client.force_login(manager_a)
    response = get_json(client, panel_url("sentiment"), connector=connector_b.pk)
    assert response.status_code == 400
    assert "unknown connector" in response.json()["reason"]
    drill = get_json(client, reverse("console:insight-messages"), connector=connector_b.pk)
    assert drill.status_code == 400
    assert "TEAM-B-ONLY" not in drill.content.decode()


def test_unknown_panel_and_format_are_refused(client, manager_a):
    client.force_login(manager_a)
    missing = get_json(client, panel_url("horoscope"))
    assert missing.status_code == 404 and "sentiment" in missing.json()["reason"]
    assert get_json(client, panel_url("sentiment"), format="xlsx").status_code == 400


# --- Panels --------------------------------------------------------------------------------------


def test_sentiment_panel_counts_the_teams_messages_only(client, data, manager_a, admin_user):
    client.force_login(manager_a)
    body = get_json(client, panel_url("sentiment")).json()
    assert body["totals"]["negative"] == 2 and body["totals"]["positive"] == 1 and body["totals"]["total"] == 3
    assert body["period"]["granularity"] == "day" and body["previous"] is not None
    assert body["ignored"] == []
    assert get_json(client, panel_url("sentiment"), compare="0").json()["previous"] is None

    client.force_login(admin_user)
    assert get_json(client, panel_url("sentiment")).json()["totals"]["total"] == 4


def test_care_panel_says_which_filters_it_ignores(client, data, manager_a):
    client.force_login(manager_a)
    body = get_json(client, panel_url("care"), language="en").json()
    assert set(body["ignored"]) == {"language", "term"}
    assert sum(queue["total"] for queue in body["backlog"]) == 3


def test_csv_export_is_a_flat_attachment(client, data, manager_a):
    client.force_login(manager_a)
    response = client.get(panel_url("sentiment"), {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="cxm-sentiment-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["bucket_start", "bucket", "negative", "neutral", "positive", "total", "net", "not_scored"]
    assert len(rows) == 31  # the header and the default 30 days
    assert sum(int(r[2]) for r in rows[1:]) == 2 and sum(int(r[5]) for r in rows[1:]) == 3

    intents = list(csv.DictReader(io.StringIO(client.get(panel_url("intents"), {"format": "csv"}).content.decode())))
    assert {row["value"]: int(row["count"]) for row in intents} == {"complaint": 1, "refund_request": 1, "praise": 1}
    for name in PANEL_NAMES:
        response = client.get(panel_url(name), {"format": "csv"})
        assert response.status_code == 200, name
        assert len(list(csv.reader(io.StringIO(response.content.decode())))) >= 1


def test_csv_neutralises_formulas(client, data, manager_a, django_user_model, team_a):
    term = Term.objects.create(name='=HYPERLINK("http://evil.example","click")', kind=Term.Kind.BRAND)
    plus = Term.objects.create(name="+SUM(1,1)", kind=Term.Kind.COMPETITOR)
    with_term(data["angry"], term)
    with_term(data["happy"], plus)
    rollups.rebuild()
    agent = make_user(django_user_model, "formula_agent", Role.AGENT, [team_a])
    agent.first_name, agent.last_name = "@cmd", "-2+3"
    agent.save()
    Case.objects.filter(pk=data["late"].pk).update(assignee=agent)

    client.force_login(manager_a)
    topics = client.get(panel_url("topics"), {"format": "csv"}).content.decode()
    names = {row["name"] for row in csv.DictReader(io.StringIO(topics))}
    assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in names and "'+SUM(1,1)" in names
    assert not any(name.startswith(("=", "+", "-", "@")) for name in names)
    care = client.get(panel_url("care"), {"format": "csv"}).content.decode()
    assert "'@cmd -2+3" in {row["name"] for row in csv.DictReader(io.StringIO(care))}


def test_csv_cell_rules():
    assert csv_cell("=1+1") == "'=1+1"
    assert csv_cell("\tx") == "'\tx" and csv_cell("\rx") == "'\rx" and csv_cell("-x") == "'-x"
    assert csv_cell("plain") == "plain" and csv_cell(-12.5) == -12.5 and csv_cell(None) == ""


# --- Drill-down ----------------------------------------------------------------------------------


def test_drill_down_lists_granted_messages_with_case_links(client, data, manager_a, connector_a):
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    body = get_json(client, url, sentiment="negative").json()
    texts = {m["text"] for m in body["messages"]}
    assert texts == {"My order never arrived!", "Still waiting for a refund"}
    assert {m["case_id"] for m in body["messages"]} == {data["angry"].pk, data["late"].pk}

    html = client.get(url, {"sentiment": "negative"}).content.decode()
    assert reverse("console:case", kwargs={"case_id": data["angry"].pk}) in html
    assert "TEAM-B-ONLY" not in html and "Thanks, great service" not in html

    every = get_json(client, url).json()["messages"]
    assert "TEAM-B-ONLY complaint" not in {m["text"] for m in every} and len(every) == 3


def test_drill_down_narrows_to_the_clicked_point(client, data, manager_a):
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    sentiment = get_json(client, panel_url("sentiment")).json()
    with_messages = [i for i, _ in enumerate(sentiment["buckets"])
                     if sum(sentiment["series"][s][i] for s in ("negative", "neutral", "positive"))]
    bucket = sentiment["bucket_starts"][with_messages[-1]]
    body = get_json(client, url, bucket=bucket, sentiment="positive").json()
    assert [m["text"] for m in body["messages"]] == ["Thanks, great service"]
    assert get_json(client, url, intent="refund_request").json()["messages"][0]["text"] == "Still waiting for a refund"
    assert get_json(client, url, lane="praise").json()["messages"][0]["text"] == "Thanks, great service"
    bad = get_json(client, url, sentiment="furious")
    assert bad.status_code == 400 and bad.json()["reason"]
    page = client.get(url, {"sentiment": "furious"})
    assert page.status_code == 400 and "not a valid sentiment" in page.content.decode()


def test_drill_down_links_only_cases_the_user_sees_and_escapes_text(client, connector_a, team_b, manager_a):
    hostile = open_case(connector_a, HOSTILE, author="c9")
    moved = open_case(connector_a, "routed to team B by a rule", author="c10")
    Case.objects.filter(pk=moved.pk).update(team=team_b)
    rollups.rebuild()
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    by_text = {m["text"]: m for m in get_json(client, url).json()["messages"]}
    assert by_text["routed to team B by a rule"]["case_id"] is None
    assert by_text[HOSTILE]["case_id"] == hostile.pk
    html = client.get(url).content.decode()
    assert HOSTILE not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert 'class="flash"' not in html and "'sent_at'" not in html  # rows, not Django's flash messages
    assert reverse("console:case", kwargs={"case_id": moved.pk}) not in html
    assert "No case you can open" in html


def test_drill_down_pages_with_a_cursor(client, connector_a, manager_a, settings, monkeypatch):
    from insight import drilldown

    monkeypatch.setattr(drilldown, "DRILL_PAGE", 2)
    for n in range(5):
        open_case(connector_a, f"message {n}", author=f"p{n}", minutes_ago=n)
    rollups.rebuild()
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    seen, cursor = [], None
    while True:
        body = get_json(client, url, **({"before": cursor} if cursor else {})).json()
        seen += [m["text"] for m in body["messages"]]
        cursor = body["next"]
        if not cursor:
            break
    assert seen == [f"message {n}" for n in range(5)]
    html = client.get(url).content.decode()
    assert 'rel="next"' in html and "before=" in html


# --- PDF snapshot --------------------------------------------------------------------------------


def png_bytes(width: int = 800, height: int = 600, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), "white").save(buffer, "PNG")
    return buffer.getvalue()


def post_snapshot(client, content: bytes, name: str = "dashboards.png", **params):
    url = reverse("console:insight-pdf")
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return client.post(url, {"image": SimpleUploadedFile(name, content, content_type="image/png")})


def test_pdf_from_a_real_png(client, manager_a):
    client.force_login(manager_a)
    response = post_snapshot(client, png_bytes(1600, 5000), granularity="week")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith('attachment; filename="cxm-dashboards-')
    assert response.content.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", response.content)) >= 2  # a tall image spans pages


@pytest.mark.parametrize("content, words", [
    (b"GIF89a not a png at all", "not a PNG"),
    (b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, "could not be read"),
    (png_bytes(20_000, 20), "pixels"),
    (png_bytes(8, 8), "pixels"),
])
def test_pdf_refuses_what_is_not_a_sane_png(client, manager_a, content, words):
    client.force_login(manager_a)
    response = post_snapshot(client, content)
    assert response.status_code == 400
    assert words in response.json()["reason"]


def test_pdf_refuses_an_oversized_upload(client, manager_a):
    client.force_login(manager_a)
    big = png_bytes(64, 64) + b"\0" * (MAX_PNG_BYTES + 1)
    response = post_snapshot(client, big)
    assert response.status_code == 400
    assert "15 MB" in response.json()["reason"]


def test_pdf_needs_an_image_and_valid_filters(client, manager_a, agent_a):
    client.force_login(manager_a)
    missing = client.post(reverse("console:insight-pdf"), {})
    assert missing.status_code == 400 and "image" in missing.json()["reason"]
    bad = post_snapshot(client, png_bytes(), **{"from": "2026-02-10", "to": "2026-02-01"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_filter"
    assert client.get(reverse("console:insight-pdf")).status_code == 405
    client.force_login(agent_a)
    assert post_snapshot(client, png_bytes()).status_code == 403


def test_panel_json_is_json_serialisable_for_every_panel_with_every_filter(client, data, manager_a, connector_a,
                                                                           team_a):
    term = Term.objects.create(name="Acme", kind=Term.Kind.BRAND)
    with_term(data["angry"], term)
    rollups.rebuild()
    client.force_login(manager_a)
    params = {"channel": "web", "connector": connector_a.pk, "team": team_a.pk, "lane": "issue", "language": "en",
              "term": term.pk, "granularity": "week"}
    for name in PANEL_NAMES:
        response = get_json(client, panel_url(name), **params)
        assert response.status_code == 200, (name, response.content[:300])
        json.loads(response.content)
    topics = get_json(client, panel_url("topics")).json()
    assert topics["terms"][0]["name"] == "Acme" and topics["share_of_voice"][0]["share"] == 1.0


# --- Calendar edges ------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"from": "0001-01-01", "to": "0001-01-02"},
    {"from": "0001-01-01"},
    {"from": "9999-12-30", "to": "9999-12-31"},
    {"to": "9999-12-31"},
    {"from": "1999-12-31", "to": "2000-01-05"},
])
def test_dashboard_dates_at_the_calendar_edges_get_400_with_a_reason(client, data, manager_a, params):
    """Year 1 and 9999 once raised OverflowError (a 500) stepping a period back or a day on."""
    client.force_login(manager_a)
    for name in PANEL_NAMES:
        response = get_json(client, panel_url(name), **params)
        assert response.status_code == 400, (name, response.content)
        assert "must be a date from 2000-01-01 to 2199-12-31" in response.json()["reason"]
    assert client.get(panel_url("volume"), {**params, "format": "csv"}).status_code == 400
    page = client.get(DASHBOARD, params)
    assert page.status_code == 400 and "must be a date from 2000-01-01" in page.content.decode()
    drill = get_json(client, reverse("console:insight-messages"), **params)
    assert drill.status_code == 400 and "2199-12-31" in drill.json()["reason"]


@pytest.mark.parametrize("bucket", [
    "0001-01-01", "0001-01-01T00:00:00+23:59", "9999-12-31", "9999-12-31T23:00:00-23:59", "9999-12-31T23:00:00",
])
def test_drill_down_bucket_at_the_calendar_edges_gets_400(client, data, manager_a, bucket):
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    for granularity in ("hour", "day", "week"):
        response = get_json(client, url, bucket=bucket, granularity=granularity)
        assert response.status_code == 400, (bucket, granularity, response.content)
        assert "'bucket' must be" in response.json()["reason"]
    page = client.get(url, {"bucket": bucket})
    assert page.status_code == 400 and "&#x27;bucket&#x27; must be" in page.content.decode()


def test_drill_down_bucket_with_an_offset_is_read_in_utc(client, data, manager_a):
    """+14:00 is a real zone: the bucket is the same instant in UTC, and the query finds the point."""
    client.force_login(manager_a)
    url = reverse("console:insight-messages")
    sentiment = get_json(client, panel_url("sentiment")).json()
    with_messages = [i for i, _ in enumerate(sentiment["buckets"])
                     if sum(sentiment["series"][s][i] for s in ("negative", "neutral", "positive"))]
    start = datetime.fromisoformat(sentiment["bucket_starts"][with_messages[-1]])
    shifted = start.astimezone(timezone(timedelta(hours=14))).isoformat()
    body = get_json(client, url, bucket=shifted, sentiment="positive").json()
    assert [m["text"] for m in body["messages"]] == ["Thanks, great service"]


@pytest.mark.parametrize("before", ["0001-01-01T00:00:00+23:59|5", "9999-12-31T23:59:59|5",
                                    "2026-11-01T00:00:00|99" + "9" * 30])
def test_drill_down_cursor_at_the_calendar_edges_gets_400(client, data, manager_a, before):
    client.force_login(manager_a)
    response = get_json(client, reverse("console:insight-messages"), before=before)
    assert response.status_code == 400 and "not a cursor this page gave" in response.json()["reason"]
