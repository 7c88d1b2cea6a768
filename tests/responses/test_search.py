"""Search over conversations, notes and customers (responses.search) through the console's
routes, on whichever database the suite runs (SQLite FTS5 or PostgreSQL tsvector): what an agent
finds, what an outsider never finds, filters, hostile text, and the index staying in step."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from listening.models import Message
from responses import search
from responses.cases import add_note, set_tags
from responses.exceptions import InvalidRequest
from responses.models import Case, CaseStatus
from tests.responses.conftest import open_case, store_message

JSON = "application/json"
SECRET = "zanzibar"


@pytest.fixture
def cases(connector_a, connector_b, agent_a):
    refund = open_case(connector_a, f"I was charged twice, please refund my {SECRET} order 48213",
                       author="cust-r", name="Rita Refund", email="rita@example.com")
    praise = open_case(connector_a, "Love the new app, great work", author="cust-p", name="Paul Praise",
                       lane="praise", sentiment="positive", intent="praise", language="pt")
    other = open_case(connector_b, f"Team B also says refund {SECRET}", author="cust-b", name="Bob Bee")
    return {"refund": refund, "praise": praise, "other": other}


def _search(client, **params):
    response = client.get("/console/search/", params, HTTP_ACCEPT=JSON)
    assert response.status_code == 200, response.content[:300]
    return response.json()


def _cases(data) -> set[int]:
    return {g["case"] for g in data["groups"]}


def test_search_finds_message_words_and_prefixes(client, agent_a, cases):
    client.force_login(agent_a)
    assert _cases(_search(client, q="refund")) == {cases["refund"].pk}
    assert _cases(_search(client, q="charged refu")) == {cases["refund"].pk}  # the last word is a prefix
    assert _cases(_search(client, q="48213")) == {cases["refund"].pk}
    assert _cases(_search(client, q="refund praise")) == set()  # every word must match


def test_search_highlights_matches_inertly(client, agent_a, connector_a):
    case = open_case(connector_a, "<script>alert(1)</script> my parcel is lost", author="cust-x")
    client.force_login(agent_a)
    html = client.get("/console/search/", {"q": "parcel"}).content.decode()
    assert "<mark>parcel</mark>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert f"/console/cases/{case.pk}/" in html


def test_search_outsider_finds_nothing_of_team_a(client, agent_b, cases):
    client.force_login(agent_b)
    data = _search(client, q=SECRET)
    assert _cases(data) == {cases["other"].pk}
    assert _search(client, q="Rita")["customers"] == []
    html = client.get("/console/search/", {"q": "refund"}).content.decode()
    assert "Rita Refund" not in html and "charged twice" not in html
    assert _cases(_search(client, status="active")) == {cases["other"].pk}


def test_search_admin_sees_every_team(client, admin_user, cases):
    client.force_login(admin_user)
    assert _cases(_search(client, q=SECRET)) == {cases["refund"].pk, cases["other"].pk}


def test_search_finds_notes_and_customers(client, agent_a, cases):
    add_note(agent_a, cases["praise"].pk, "customer asked about the loyalty voucher")
    client.force_login(agent_a)
    data = _search(client, q="voucher")
    assert _cases(data) == {cases["praise"].pk}
    assert data["groups"][0]["hits"][0]["kind"] == "note"
    people = _search(client, q="rita")["customers"]
    assert [p["name"] for p in people] == ["Rita Refund"] and people[0]["case"] == cases["refund"].pk


def test_search_filters(client, agent_a, cases):
    client.force_login(agent_a)
    assert _cases(_search(client, lane="praise")) == {cases["praise"].pk}
    assert _cases(_search(client, language="pt")) == {cases["praise"].pk}
    assert _cases(_search(client, q="love", language="en")) == set()
    set_tags(agent_a, cases["refund"].pk, ["billing"])
    assert _cases(_search(client, tag="billing")) == {cases["refund"].pk}
    assert _cases(_search(client, q="refund", tag="other")) == set()
    Case.objects.filter(pk=cases["refund"].pk).update(status=CaseStatus.PENDING, assignee=agent_a)
    Case.objects.filter(pk=cases["praise"].pk).update(assignee=None)
    assert _cases(_search(client, status="pending")) == {cases["refund"].pk}
    assert _cases(_search(client, q="refund", assignee="me")) == {cases["refund"].pk}
    assert _cases(_search(client, assignee="none")) == {cases["praise"].pk}
    assert _cases(_search(client, q="refund", channel="email")) == set()
    assert _cases(_search(client, q="refund", since="2000-01-01", until="2000-01-02")) == set()
    assert _cases(_search(client, q="refund", days="7")) == {cases["refund"].pk}


@pytest.mark.parametrize("q", [
    '"', '""', "'", "''", "*", "-", "--", "OR", "AND", "NOT", "NEAR(a b)", "a OR", "OR b", "(", ")", "a:b",
    "refund:*", "!!refund", "refund & ", "| refund", "<->", "\\", "\x00refund", "ref\x00und",
    "title:refund", "^refund", "refund*", '"unterminated phrase', "'; DROP TABLE listening_message; --",
    "😀 refund", "日本語", "Ça marche pas", "-refund refund", "a" * 500,
])
def test_search_hostile_text_never_fails(client, agent_a, cases, q):
    client.force_login(agent_a)
    response = client.get("/console/search/", {"q": q}, HTTP_ACCEPT=JSON)
    assert response.status_code in (200, 400), (q, response.status_code, response.content[:300])
    if response.status_code == 400:
        assert response.json()["reason"]
    assert client.get("/console/search/", {"q": q}).status_code in (200, 400)


def test_search_bad_encoding_and_lone_surrogates(client, agent_a, cases):
    client.force_login(agent_a)
    assert client.get("/console/search/?q=%ED%A0%80refund%FF", HTTP_ACCEPT=JSON).status_code == 200
    assert search.parse_query("\ud800refund").groups[0][0].tokens == ("refund",)


def test_search_refuses_long_or_only_negative_queries_with_a_reason(client, agent_a, cases):
    client.force_login(agent_a)
    response = client.get("/console/search/", {"q": "x" * 10_240}, HTTP_ACCEPT=JSON)
    assert response.status_code == 400 and "at most 500" in response.json()["reason"]
    response = client.get("/console/search/", {"q": "-refund"}, HTTP_ACCEPT=JSON)
    assert response.status_code == 400 and "leave out" in response.json()["reason"]


@pytest.mark.parametrize("params,word", [
    ({"status": "bogus"}, "status"), ({"lane": "x"}, "lane"), ({"since": "yesterday"}, "since"),
    ({"since": "2026-02-02", "until": "2026-01-01"}, "since"), ({"days": "-3"}, "days"), ({"days": "99999"}, "days"),
    ({"assignee": "someone"}, "assignee"), ({"channel": "Email!"}, "channel"), ({"language": "english"}, "language"),
    ({"tag": "<b>"}, "tag"), ({"view": "abc"}, "view"),
])
def test_search_bad_filters_are_4xx_with_a_reason(client, agent_a, params, word):
    client.force_login(agent_a)
    response = client.get("/console/search/", params, HTTP_ACCEPT=JSON)
    assert 400 <= response.status_code < 500 and word in response.json()["reason"], response.content[:300]


def test_search_phrases_or_and_negation(client, agent_a, cases):
    client.force_login(agent_a)
    assert _cases(_search(client, q='"charged twice"')) == {cases["refund"].pk}
    assert _cases(_search(client, q='"twice charged"')) == set()
    assert _cases(_search(client, q="love OR charged")) == {cases["refund"].pk, cases["praise"].pk}
    assert _cases(_search(client, q="refund -charged")) == set()


def test_search_index_follows_edits_and_deletes(client, agent_a, connector_a):
    message = store_message(connector_a, "the thermostat is broken", author="cust-t")
    client.force_login(agent_a)
    assert _search(client, q="thermostat")["groups"]
    Message.objects.filter(pk=message.pk).update(text="the heater is broken")
    assert not _search(client, q="thermostat")["groups"]
    assert _search(client, q="heater")["groups"]
    Message.objects.filter(pk=message.pk).delete()
    assert not _search(client, q="heater")["groups"]


def test_search_parse_query_is_safe_for_both_engines():
    query = search.parse_query('"a b" c OR d -e f')
    assert search.fts5_match(query) == '(("a b") AND ("c" OR "d") AND ("f"*)) NOT "e"'
    sql, params = search.pg_tsquery(query)
    assert "%s" in sql and params[-1] == "'f':*" and params[0] == "a b"
    with pytest.raises(InvalidRequest):
        search.parse_query("x" * 501)
    assert search.parse_query("   ").empty and search.parse_query("!!! ???").empty


def test_search_snippet_pieces_mark_matches():
    pieces = search.snippet("Nothing here. " * 10 + "My REFUNDS never came", ["refund"])
    assert ("REFUNDS", True) in pieces and pieces[0] == ("…", False)


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_search_sqlite_triggers_come_back_after_a_table_rebuild(agent_a, connector_a):
    from listening.search_index import LISTENING_TABLES, heal

    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER search_message_ai")
    assert heal(connection, LISTENING_TABLES) == ["search_message"]
    message = store_message(connector_a, "a brand new quokka", author="cust-q")
    assert list(search.matching(Message.objects.all(), search.search_index.MESSAGE,
                                search.parse_query("quokka")).values_list("pk", flat=True)) == [message.pk]


def test_search_json_is_plain_text(client, agent_a, connector_a):
    open_case(connector_a, 'quote " and <b>bold</b> refund', author="cust-j")
    client.force_login(agent_a)
    hit = _search(client, q="bold")["groups"][0]["hits"][0]
    assert "<b>bold</b>" in hit["snippet"] and hit["matches"] == ["bold"]
    json.dumps(hit)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_search_postgres_reads_the_stored_document_column(agent_a, connector_a):
    from listening.search_index import MESSAGE, document

    message = store_message(connector_a, "the wombat ate my charger", author="cust-w")
    assert document(MESSAGE) == '"listening_message".search_vector'
    Message.objects.filter(pk=message.pk).update(text="the platypus ate my charger")  # the column follows
    found = search.matching(Message.objects.all(), MESSAGE, search.parse_query("platypus"))
    assert list(found.values_list("pk", flat=True)) == [message.pk]
    assert not search.matching(Message.objects.all(), MESSAGE, search.parse_query("wombat")).exists()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN SELECT id FROM listening_message WHERE search_vector @@ 'platypus'::tsquery")
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "search_message_vector_idx" in plan or "Seq Scan" in plan  # tiny tables may be scanned


def test_search_counts_stop_at_the_cap_without_a_count_query(client, agent_a, connector_a, monkeypatch):
    for n in range(4):
        open_case(connector_a, f"kumquat number {n}", author=f"cust-k{n}")
    monkeypatch.setattr(search, "MAX_HITS", 2)
    monkeypatch.setattr(search, "COUNT_CAP", 2)
    client.force_login(agent_a)
    data = _search(client, q="kumquat")
    assert data["count"] == 3 and data["count_label"] == "2+"
    assert len(data["groups"]) == 2  # the page is built from the newest MAX_HITS matches
    assert _search(client, q="kumquat number 3")["count_label"] == "1"
    assert search.count(agent_a, search.parse_query("kumquat"), search.Filters()) == 3


def test_search_newest_hits_widen_past_the_last_week(agent_a, connector_a, monkeypatch):
    old = [store_message(connector_a, f"tamarind {n}", author=f"cust-t{n}", minutes_ago=60 * 24 * (10 + n))
           for n in range(2)]
    new = store_message(connector_a, "tamarind fresh", author="cust-tn", minutes_ago=5)
    monkeypatch.setattr(search, "MAX_HITS", 2)
    rows = search.matching(Message.objects.all(), search.search_index.MESSAGE, search.parse_query("tamarind"))
    # The week holds one: the whole range is asked, newest first, MAX_HITS + 1 of them.
    assert [h[0] for h in search.newest_hits(rows, None)] == [new.pk, old[0].pk, old[1].pk]
    monkeypatch.setattr(search, "MAX_HITS", 0)  # the week alone is enough
    assert [h[0] for h in search.newest_hits(rows, None)] == [new.pk]
