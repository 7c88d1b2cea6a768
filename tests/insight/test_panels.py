"""The dashboards' figures against a direct computation over the raw tables, on generated data.

Messages are classified through `actions._store` (the workers' path), then a share of them is
re-classified and a few marked failed, so the rollups have been added to and subtracted from; the
panels must still equal a recount of the current classifications, cases and replies.
"""

from __future__ import annotations

import random
import statistics
import threading
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.utils import timezone

from insight import dashboards as insight
from learning import rollups
from learning.actions import _store, mark_failed
from learning.models import Classification, ConversationMood, Rollup, Term
from listening.models import Contact, Conversation, Direction, Message
from responses.models import Case, CaseStatus, Reply, Role, Team
from tests.responses.conftest import make_user

CHANNELS = {"c1": "twitter", "c2": "web", "c3": "web"}
SENTIMENT_LANE = {"negative": "issue", "neutral": "ambivalence", "positive": "praise"}
INTENTS = ["complaint", "delivery", "refund", "praise", "question"]
EMOTIONS = ["anger", "joy", "sadness", "optimism"]
TODAY = date(2026, 11, 20)


@pytest.fixture
def world(db, make_connector, django_user_model, settings):
    settings.CXM_REPORT_TIME_ZONE = "America/New_York"  # days that are not UTC days
    rng = random.Random(7)
    connectors = {name: make_connector("webhook", slug=name, name=name) for name in CHANNELS}
    team_a = Team.objects.create(name="Team A", slug="team-a")
    team_b = Team.objects.create(name="Team B", slug="team-b")
    team_a.connectors.add(connectors["c1"], connectors["c2"])
    team_b.connectors.add(connectors["c3"])
    terms = [Term.objects.create(name=n, kind=k) for n, k in
             [("Acme", "brand"), ("Globex", "competitor"), ("Phone", "product"), ("delivery", "topic")]]
    manager = make_user(django_user_model, "manager_a", Role.BRAND_MANAGER, [team_a])
    agent = make_user(django_user_model, "agent_a", Role.AGENT, [team_a])
    admin = django_user_model.objects.create_superuser(username="admin", password="x", email="a@example.com")
    start = timezone.make_aware(datetime(2026, 10, 20), rollups.reporting_tz())
    messages = []
    for n in range(120):
        connector = connectors[rng.choice(list(CHANNELS))]
        contact = Contact.objects.create(channel=CHANNELS[connector.slug], external_id=f"u{n}")
        opened = start + timedelta(minutes=rng.randrange(31 * 24 * 60))
        conversation = Conversation.objects.create(
            connector=connector, channel=CHANNELS[connector.slug], external_id=f"t{n}", contact=contact,
            started_at=opened, last_message_at=opened)
        for k in range(rng.choice([1, 1, 2, 3, 4])):
            messages.append(Message(
                connector=connector, external_id=f"m{n}-{k}", channel=conversation.channel, author=contact,
                conversation=conversation, text=f"message {n}-{k}", sent_at=opened + timedelta(hours=5 * k)))
        if rng.random() < 0.2:
            messages.append(Message(connector=connector, external_id=f"out{n}", channel=conversation.channel,
                                    direction=Direction.OUTBOUND, conversation=conversation, text="our answer",
                                    sent_at=opened + timedelta(hours=1)))
        _case(rng, conversation, connector, team_a if connector.slug != "c3" else team_b, agent, opened)
    Message.objects.bulk_create(messages)
    inbound = list(Message.objects.filter(direction=Direction.INBOUND).order_by("pk"))
    for start_at in range(0, len(inbound), 32):
        _store([_result(rng, m, terms) for m in inbound[start_at:start_at + 32]])
    again = rng.sample(inbound, 60)  # re-classified: the rollups must move them, not add them
    _store([_result(rng, m, terms) for m in again])
    mark_failed([m.pk for m in rng.sample(inbound, 8)], "model crashed")
    return {"manager": manager, "admin": admin, "agent": agent, "terms": terms, "teams": (team_a, team_b),
            "connectors": connectors}


def _result(rng, message, terms) -> Classification:
    sentiment = rng.choice(["negative", "negative", "neutral", "positive"])
    lane = SENTIMENT_LANE[sentiment] if rng.random() < 0.85 else "noise"
    mentioned = rng.sample(terms, min(len(terms), rng.choice([0, 1, 1, 2])))
    return Classification(
        message=message, sentiment=sentiment, emotion=rng.choice(EMOTIONS), intent=rng.choice(INTENTS),
        language=rng.choice(["en", "en", "fr"]), lane=lane, model_name="gen", model_version=str(rng.random()),
        topics=[{"term_id": t.pk, "name": t.name, "kind": t.kind, "text": t.name, "start": 0, "end": 1}
                for t in mentioned],
    )


def _case(rng, conversation, connector, team, agent, opened):
    responded = opened + timedelta(minutes=rng.randrange(1, 300)) if rng.random() < 0.8 else None
    resolved = responded + timedelta(minutes=rng.randrange(1, 900)) if responded and rng.random() < 0.7 else None
    status = CaseStatus.RESOLVED if resolved else rng.choice([CaseStatus.NEW, CaseStatus.OPEN, CaseStatus.PENDING])
    case = Case.objects.create(
        conversation=conversation, connector=connector, channel=conversation.channel, team=team,
        queue=team.queues.first(), assignee=agent if responded else None, status=status,
        lane=rng.choice(["issue", "praise", "ambivalence"]), sla_minutes=rng.choice([None, 60, 120]),
        sla_state="breached" if not responded and rng.random() < 0.5 else "",
        opened_at=opened, first_response_at=responded, resolved_at=resolved)
    if responded:
        Reply.objects.create(case=case, author=agent, text="hi", idempotency_key=f"k{case.pk}",
                             status=Reply.Status.DELIVERED, created_at=responded)


def _filters(user, **params) -> insight.Filters:
    query = QueryDict(mutable=True)
    query.update({"from": "2026-10-18", "to": TODAY.isoformat()})
    for key, value in params.items():
        query.setlist(key, value if isinstance(value, list) else [value])
    return insight.parse_filters(query, user)


def _current(f: insight.Filters):
    """The raw rows the message panels describe: current, successful classifications of inbound
    messages in the range, with the filters applied in Python."""
    rows = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__sent_at__gte=f.start_at, message__sent_at__lt=f.end_at, message__connector_id__in=f.connector_ids,
    ).values("message__sent_at", "message__channel", "sentiment", "intent", "emotion", "lane", "language", "topics")
    out = []
    for r in rows:
        ids = rollups.term_ids(r["topics"])
        if (f.channels and r["message__channel"] not in f.channels) or (f.lanes and r["lane"] not in f.lanes) \
                or (f.languages and r["language"] not in f.languages) or (f.term and f.term not in ids):
            continue
        out.append({**r, "terms": ids})
    return out


def _bucket(f, sent_at: datetime) -> str:
    local = sent_at.astimezone(rollups.reporting_tz())
    if f.granularity == "hour":
        return rollups.hour_bucket(sent_at).astimezone(rollups.reporting_tz()).strftime("%Y-%m-%d %H:%M %Z")
    day = local.date()
    return (day - timedelta(days=day.weekday()) if f.granularity == "week" else day).isoformat()


FILTER_CASES = [
    {}, {"granularity": "week"}, {"granularity": "hour", "from": "2026-11-01", "to": "2026-11-08"},
    {"channel": "twitter"}, {"lane": ["issue", "praise"]}, {"language": "fr"}, {"compare": "0"},
]


@pytest.mark.parametrize("params", FILTER_CASES)
@pytest.mark.parametrize("who", ["admin", "manager"])
def test_sentiment_and_volume_equal_a_recount_of_the_raw_rows(world, params, who):
    f = _filters(world[who], **params)
    rows = _current(f)
    sentiment, volume = insight.sentiment(f), insight.volume(f)
    expected = defaultdict(Counter)
    for r in rows:
        expected[_bucket(f, r["message__sent_at"])][r["sentiment"]] += 1
    for i, label in enumerate(sentiment["buckets"]):
        assert {s: sentiment["series"][s][i] for s in insight.SENTIMENTS} == \
            {s: expected[label][s] for s in insight.SENTIMENTS}, label
    assert sentiment["totals"]["total"] == len(rows) > 0
    assert set(expected) <= set(sentiment["buckets"])
    assert volume["totals"]["by_channel"] == dict(Counter(r["message__channel"] for r in rows))
    assert volume["totals"]["by_lane"] == dict(Counter(r["lane"] for r in rows))
    by_bucket = Counter(_bucket(f, r["message__sent_at"]) for r in rows)
    assert [sum(v[i] for v in volume["by_channel"].values()) for i in range(len(volume["buckets"]))] == \
        [by_bucket[b] for b in volume["buckets"]]
    if f.compare:
        previous = _current(f.previous())
        assert sentiment["previous"]["total"] == len(previous)
        assert volume["previous"]["by_lane"] == dict(Counter(r["lane"] for r in previous))
    else:
        assert sentiment["previous"] is None


def test_a_manager_counts_only_the_connectors_of_their_teams(world):
    mine = insight.sentiment(_filters(world["manager"]))["totals"]["total"]
    everything = insight.sentiment(_filters(world["admin"]))["totals"]["total"]
    c3 = insight.sentiment(_filters(world["admin"], connector=str(world["connectors"]["c3"].pk)))["totals"]["total"]
    assert 0 < mine < everything and mine + c3 == everything


@pytest.mark.parametrize("params", [{}, {"channel": "web"}, {"granularity": "week", "lane": "issue"}])
def test_intents_emotions_and_topics_equal_a_recount(world, params):
    f = _filters(world["admin"], **params)
    rows = _current(f)
    for panel, field in ((insight.intents, "intent"), (insight.emotions, "emotion")):
        result = panel(f)
        assert {i["value"]: i["count"] for i in result["items"] if i["count"]} == dict(Counter(r[field] for r in rows))
        previous = Counter(r[field] for r in _current(f.previous()))
        assert {i["value"]: i["previous_count"] for i in result["items"] if i["previous_count"]} == dict(previous)
    topics = insight.topics(f)
    mentions = Counter(t for r in rows for t in r["terms"])
    negative = Counter(t for r in rows for t in r["terms"] if r["sentiment"] == "negative")
    assert {t["term_id"]: t["mentions"] for t in topics["terms"]} == dict(mentions)
    assert {t["term_id"]: t["negative"] for t in topics["terms"] if t["negative"]} == dict(negative)
    voice = {t["name"]: t["share"] for t in topics["share_of_voice"]}
    acme, globex = (mentions[t.pk] for t in world["terms"][:2])
    assert voice == {"Acme": round(acme / (acme + globex), 4), "Globex": round(globex / (acme + globex), 4)}


def test_a_term_filter_counts_only_messages_that_mention_it(world):
    phone = world["terms"][2]
    f = _filters(world["admin"], term=str(phone.pk))
    assert insight.sentiment(f)["totals"]["total"] == len(_current(f)) > 0
    assert len(_current(f)) < len(_current(_filters(world["admin"])))


def test_care_figures_equal_a_direct_computation(world):
    f = _filters(world["manager"])
    cases = list(Case.objects.filter(team__in=[world["teams"][0]], opened_at__gte=f.start_at, opened_at__lt=f.end_at))
    care = insight.care(f)
    frs = [(c.first_response_at - c.opened_at).total_seconds() for c in cases if c.first_response_at]
    assert care["first_response"]["count"] == len(frs) > 10
    assert care["first_response"]["median_seconds"] == pytest.approx(statistics.median(frs), abs=0.1)
    assert care["first_response"]["p90_seconds"] == pytest.approx(
        statistics.quantiles(frs, n=10, method="inclusive")[-1], abs=0.1)
    res = [(c.resolved_at - c.opened_at).total_seconds() for c in cases if c.resolved_at]
    assert care["resolution"]["median_seconds"] == pytest.approx(statistics.median(res), abs=0.1)
    timed = [c for c in cases if c.sla_minutes]
    met = sum(1 for c in timed if c.first_response_at and c.first_response_at - c.opened_at <= timedelta(
        minutes=c.sla_minutes))
    breached = sum(1 for c in timed if (c.first_response_at and c.first_response_at - c.opened_at > timedelta(
        minutes=c.sla_minutes)) or (not c.first_response_at and c.sla_state == "breached"))
    assert (care["sla"]["met"], care["sla"]["breached"]) == (met, breached)
    backlog = Counter(c.queue_id for c in Case.objects.filter(team=world["teams"][0], status__in=["new", "open",
                                                                                                   "pending"]))
    assert {q["queue_id"]: q["total"] for q in care["backlog"]} == dict(backlog)
    assert {a["name"]: (a["cases"], a["replies"]) for a in care["agents"]} == {
        "Agent": (sum(1 for c in cases if c.assignee_id), len(frs))}
    assert [t["team_id"] for t in care["teams"]] == [world["teams"][0].pk]
    assert care["ignored"] == ["language", "term"]


def test_recovered_customers_equal_a_direct_computation(world):
    f = _filters(world["admin"])
    first, last, count = {}, {}, Counter()
    for r in Classification.objects.filter(is_current=True, status="ok").order_by("message__sent_at", "message_id") \
            .values("message__conversation_id", "message__sent_at", "sentiment"):
        conv = r["message__conversation_id"]
        first.setdefault(conv, r)
        last[conv] = r
        count[conv] += 1
    began = [c for c, r in first.items() if r["sentiment"] == "negative"
             and f.start_at <= r["message__sent_at"] < f.end_at]
    followed = [c for c in began if count[c] >= 2]
    back = [c for c in followed if last[c]["sentiment"] in ("neutral", "positive")]
    result = insight.recovered(f)
    assert (result["began_negative"], result["followed_up"], result["recovered"]) == \
        (len(began), len(followed), len(back))
    assert len(back) > 0 and result["share"] == round(len(back) / len(followed), 4)


def test_incremental_rollups_equal_a_rebuild_from_raw(world):
    def snapshot():
        return sorted(Rollup.objects.exclude(count=0).values_list(
            "grain", "dim", "term_id", "bucket", "connector_id", "channel", "lane", "language", "value", "count"))

    incremental = snapshot()
    moods = sorted(ConversationMood.objects.values_list("conversation_id", "first_sentiment", "last_sentiment",
                                                        "inbound_count"))
    window = rollups.verify_window(rollups.day_start(date(2026, 10, 18)), rollups.day_start(TODAY))
    assert window == {}
    rollups.rebuild()
    assert snapshot() == incremental
    assert sorted(ConversationMood.objects.values_list("conversation_id", "first_sentiment", "last_sentiment",
                                                       "inbound_count")) == moods


def test_drilldown_lists_the_messages_behind_a_point(world):
    f = _filters(world["manager"], granularity="day")
    sentiment = insight.sentiment(f)
    day = max(range(len(sentiment["buckets"])), key=lambda i: sentiment["series"]["negative"][i])
    params = {"bucket": sentiment["bucket_starts"][day], "sentiment": "negative"}
    page = insight.drilldown(f, params, world["manager"])
    assert len(page["messages"]) == sentiment["series"]["negative"][day] > 0
    assert {m["sentiment"] for m in page["messages"]} == {"negative"}
    assert {m["connector"] for m in page["messages"]} <= {"c1", "c2"}
    assert all(m["case_id"] for m in page["messages"])


def test_drilldown_pages_with_a_cursor(world):
    f = _filters(world["admin"])
    seen, params = [], {}
    while True:
        page = insight.drilldown(f, params, world["admin"])
        seen += [m["id"] for m in page["messages"]]
        if not page["next"]:
            break
        params = {"before": page["next"]}
    assert len(seen) == len(set(seen)) == len(_current(f))


@pytest.mark.parametrize("params, reason", [
    ({"from": "2026-11-10", "to": "2026-11-01"}, "upside down"),
    ({"channel": "carrier-pigeon"}, "unknown channel"),
    ({"granularity": "hour", "from": "2016-01-01", "to": "2026-01-01"}, "at most"),
    ({"from": "2010-01-01", "to": "2026-01-01"}, "at most 1096 days"),
    ({"from": "yesterday"}, "must be a date"),
    ({"granularity": "minute"}, "granularity"),
    ({"lane": "urgent"}, "unknown lane"),
    ({"language": "<script>"}, "not a language code"),
    ({"term": "999999"}, "unknown term"),
    ({"team": "abc"}, "numeric ids"),
    ({"connector": "-4"}, "positive ids"),
])
def test_malformed_or_out_of_range_filters_are_refused_with_a_reason(world, params, reason):
    with pytest.raises(insight.InvalidFilter) as error:
        _filters(world["admin"], **params)
    assert reason in error.value.reason


def test_a_manager_cannot_name_a_team_or_connector_not_granted(world):
    other_team, c3 = world["teams"][1], world["connectors"]["c3"]
    for params in ({"team": str(other_team.pk)}, {"connector": str(c3.pk)}):
        with pytest.raises(insight.InvalidFilter, match="unknown"):
            _filters(world["manager"], **params)
    assert not insight.can_view(world["agent"]) and insight.can_view(world["manager"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_two_workers_storing_one_batch_at_once_count_each_message_once(make_connector):
    connector = make_connector("webhook", slug="race")
    contact = Contact.objects.create(channel="web", external_id="racer")
    now = timezone.now()
    conversation = Conversation.objects.create(connector=connector, channel="web", external_id="r", contact=contact,
                                               started_at=now, last_message_at=now)
    messages = Message.objects.bulk_create([
        Message(connector=connector, external_id=f"r{i}", channel="web", conversation=conversation, author=contact,
                text="x", sent_at=now) for i in range(20)])
    barrier, errors = threading.Barrier(4), []

    def worker(seed):
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(3):
                _store([_result(rng, m, []) for m in messages])
        except Exception as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    total = sum(Rollup.objects.filter(grain="h", dim="sentiment", term_id=0).values_list("count", flat=True))
    assert total == 20
    assert Classification.objects.filter(is_current=True).count() == 20
    assert rollups.verify_window(now - timedelta(days=2), now + timedelta(days=2)) == {}


def test_rebuild_command_repairs_rollups_that_drifted(world):
    from django.core.management import CommandError, call_command

    today = rollups.local_day(timezone.now())
    Rollup.objects.create(grain="d", bucket=rollups.day_start(today - timedelta(days=1)), connector_id=1,
                          channel="web", lane="issue", language="en", dim="sentiment", value="negative", count=5)
    with pytest.raises(CommandError, match="differ"):
        call_command("rebuild_rollups", verify=3)
    call_command("rebuild_rollups")
    call_command("rebuild_rollups", verify=3)
    assert not Rollup.objects.filter(count=5, bucket=rollups.day_start(today - timedelta(days=1))).exists()


def test_hourly_series_in_a_half_hour_zone_cover_whole_utc_hours(world, settings):
    settings.CXM_REPORT_TIME_ZONE = "Asia/Kolkata"  # UTC+5:30: local midnight is not an hourly bucket
    f = _filters(world["admin"], granularity="hour", **{"from": "2026-11-01", "to": "2026-11-05"})
    sentiment = insight.sentiment(f)
    assert sentiment["buckets"][0].endswith(":00 IST") is False and sentiment["buckets"][0].endswith(":30 IST")
    rows = Classification.objects.filter(
        is_current=True, status="ok", message__sent_at__gte=rollups.hour_bucket(f.start_at),
        message__sent_at__lt=f.end_at).values_list("message__sent_at", "sentiment")
    expected = Counter(_bucket(f, sent_at) for sent_at, sentiment in rows if sentiment == "negative")
    assert dict(zip(sentiment["buckets"], sentiment["series"]["negative"])) == \
        {b: expected.get(b, 0) for b in sentiment["buckets"]}
    assert sum(expected.values()) > 0


@pytest.mark.parametrize("params", [{}, {"granularity": "week", "channel": "web"}, {"lane": "issue", "language": "en"},
                                    {"granularity": "hour", "from": "2026-11-01", "to": "2026-11-03"}])
@pytest.mark.parametrize("who", ["admin", "manager"])
@pytest.mark.skipif(connection.vendor != "postgresql", reason="insight_raw is PostgreSQL SQL")
def test_every_panel_equals_the_raw_table_computation(world, params, who):
    """bench.insight_raw computes each panel straight from the raw tables (the bench's baseline)."""
    from bench import insight_raw
    from insight.panels import PANELS

    f = _filters(world[who], **params)
    for name, panel in PANELS.items():  # every declared panel, its query against its raw reference
        assert insight_raw.first_difference(panel.query(f), insight_raw.reference(panel)(f)) == "", name


@pytest.mark.parametrize("params, reason", [
    ({"lane": "urgent"}, "unknown lane"), ({"channel": "carrier-pigeon"}, "unknown channel"),
    ({"sentiment": "furious"}, "not a valid sentiment"), ({"bucket": "yesterday"}, "'bucket' must be"),
    ({"before": "garbage"}, "not a cursor"),
])
def test_a_malformed_drilldown_point_is_refused_with_a_reason(world, params, reason):
    with pytest.raises(insight.InvalidFilter) as error:
        insight.drilldown(_filters(world["admin"]), params, world["admin"])
    assert reason in error.value.reason


def test_registry_declares_every_panel_once_with_its_parts():
    """One registry: each panel has a title, a renderer the JavaScript knows, CSV columns and a raw
    reference in bench.insight_raw; the page, the CSV and the bench read them from there."""
    import re
    from pathlib import Path

    from bench import insight_raw
    from insight.panels import PANELS, renderers

    script = (Path(__file__).resolve().parents[2] / "static/insight/insight.js").read_text()
    render_block = script[script.index("const RENDER = {"):script.index("// --- Loading")]
    known = set(re.findall(r"^    ([a-z_]+)\(section, data\)", render_block, re.M))
    assert {"sentiment", "volume", "intents", "emotions", "topics", "care", "recovered"} <= set(PANELS)
    for name, panel in PANELS.items():
        assert panel.title and panel.about, name
        assert panel.renderer in known, f"{name}: no {panel.renderer!r} in RENDER"
        assert callable(insight_raw.reference(panel)), name
    assert renderers() == {name: panel.renderer for name, panel in PANELS.items()}
    orders = [panel.order for panel in PANELS.values()]
    assert orders == sorted(orders)
