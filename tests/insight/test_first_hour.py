"""The first hour of an install (issue 16): no spike alert before a series has history, and the
demo's first 10 minutes raise none.

The demo test runs the real `setup_demo` (people, connector, three seeded days of history), then
sends 10 minutes of the demo's live traffic (cxm.demo.DemoTraffic, three messages a minute, the
brands and products it names as terms, as the entity extractor finds them) through the webhook
parser and the workers' storing path, and runs detection when beat would."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from cxm import demo, demo_history
from insight import alerts
from insight.models import Alert, AlertSettings
from learning import rollups
from learning.actions import _store
from learning.default_intents import TAXONOMY
from learning.models import Term
from listening.models import Connector, Message
from responses.models import Team
from tests.insight.test_alerts import baseline, burst


@pytest.fixture(autouse=True)
def no_model(settings):
    settings.CXM_CLASSIFY_ON_INGEST = False


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def connector(db, make_connector):
    connector = make_connector("webhook", slug="brand-a", name="Brand A site")
    Team.objects.create(name="Team A", slug="team-a").connectors.add(connector)
    return connector


def hours_of_history(n: int, per_hour: int = 10):
    """A baseline whose last `n` hours (of the 168) hold `per_hour` messages each, the rest none."""
    return lambda hour: per_hour if hour >= alerts.BASELINE_HOURS - n else 0


@pytest.mark.parametrize("history, minimum, raised", [
    (72, 72, False),  # the first of the 72 busy hours may hold a minute only: 71 whole hours after it
    (73, 72, True),
    (24, 72, False),
    (24, 0, True),  # the gate off: alerts from the first hours, as before
    (24, 12, True),
])
def test_a_series_raises_nothing_until_it_has_the_minimum_history(connector, now, history, minimum, raised):
    row = AlertSettings.current()
    row.min_messages, row.min_history_hours = 10, minimum
    row.save()
    baseline(connector, now, hours_of_history(history))
    burst(connector, now, 60)  # 60 against a usual 10: z = 50/3.16 = 15.8

    found = alerts.detect_spikes(now)

    assert bool(found) is raised
    if raised:
        alert = Alert.objects.get()
        # Hours before the team's first message are not zeros: the usual level is 10, not 0.
        assert alert.expected == 10
        assert alert.detail["baseline_hours"] == history
        assert alert.detail["history_hours"] == history - 1


def test_a_new_term_on_an_old_install_waits_for_its_own_history(connector, now):
    AlertSettings.current()  # defaults: 72 hours
    acme = Term.objects.create(name="Acme", kind=Term.Kind.BRAND)
    baseline(connector, now, lambda hour: 20)  # a week of steady traffic, never naming Acme
    burst(connector, now, 25, topics_for=lambda i: [acme])  # Acme: 25 in an hour, "against a usual 0"

    assert alerts.detect_spikes(now) == []
    assert Alert.objects.count() == 0


def test_an_alert_on_a_series_usually_empty_says_so_in_words(connector, now):
    alert = Alert(kind=Alert.Kind.VOLUME, observed=21, expected=0, score=21.0, detail={})
    assert alerts.describe(alert) == "21 messages in the last hour, where an hour usually has none (z = 21.0)"
    assert "usual 0" not in alerts.describe(alert)


# --- The demo's first 10 minutes ---------------------------------------------------------------

def _demo_terms() -> dict[str, Term]:
    """The demo's brands and products as terms (what the entity extractor would know)."""
    terms = {}
    for brand, products in demo.BRANDS.items():
        terms[brand] = Term.objects.get_or_create(name=brand, kind=Term.Kind.BRAND)[0]
        for product in products:
            terms[product] = Term.objects.get_or_create(name=product, kind=Term.Kind.PRODUCT)[0]
    return terms


def _live(connector: Connector, traffic: demo.DemoTraffic, at, terms: dict[str, Term], rng) -> None:
    """One live demo message, stored through the webhook parser and classified as the workers
    would (the demo kind's feeling, the terms its text names)."""
    message_demo = traffic.next(at=at)
    demo_history._store(connector, [message_demo])
    message = Message.objects.get(connector=connector, external_id=message_demo.payload["id"])
    lanes = {slug: lane for slug, _, _, lane, _ in TAXONOMY}
    weights = {slug: weight for slug, _, _, _, weight in TAXONOMY}
    row = demo_history._classification(message, message_demo, lanes, weights, rng)
    text = message.text.lower()
    row.topics = [{"term_id": t.pk, "name": name} for name, t in terms.items() if name.lower() in text]
    _store([row])


def _first_ten_minutes(connector: Connector, start, terms) -> list[int]:
    traffic, rng = demo.DemoTraffic(seed=5), random.Random(5)
    raised = []
    for second in range(0, 600, 20):  # three a minute, the demo's default
        _live(connector, traffic, start + timedelta(seconds=second), terms, rng)
        if (second + 20) % 300 == 0:  # beat's detection every 5 minutes
            raised += alerts.detect_spikes(start + timedelta(seconds=second + 20))
    return raised


@pytest.mark.django_db(transaction=True)
def test_the_demos_first_ten_minutes_raise_no_alert(settings):
    settings.CXM_CLASSIFY_ON_INGEST = False
    call_command("setup_demo", password="a-demo-password-1", history_days=3, stdout=io.StringIO())
    demo_web = Connector.objects.get(slug="demo-web")
    assert Message.objects.filter(connector=demo_web).count() >= 300  # the seeded three days
    terms = _demo_terms()
    start = timezone.now()

    assert _first_ten_minutes(demo_web, start, terms) == []
    assert Alert.objects.count() == 0

    # With the minimum history off, the same ten minutes do raise alerts (live traffic is far busier
    # than the seeded days): the gate is what kept them quiet. None reads "against a usual 0": the
    # hours before the install's first message are not counted as zeros.
    row = AlertSettings.current()
    row.min_history_hours = 0
    row.save()
    raised = Alert.objects.filter(pk__in=alerts.detect_spikes(start + timedelta(minutes=10)))
    assert raised
    assert all(a.expected > 0 and "usual 0" not in alerts.describe(a) for a in raised)


# --- A change against an empty previous period reads "new" -----------------------------------

def test_a_change_against_an_empty_previous_period_reads_new(client, connector, django_user_model, now):
    """47 mentions against 0 were "+4600%"; the panel, its JSON and its CSV now say "new"."""
    from insight.panels import PANELS

    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "x-long-password")
    acme = Term.objects.create(name="Acme", kind=Term.Kind.BRAND)
    globex = Term.objects.create(name="Globex", kind=Term.Kind.COMPETITOR)
    burst(connector, now, 47, topics_for=lambda i: [acme])
    # Globex was there before too: 6 now against 3 reads as +100%.
    burst(connector, now, 6, topics_for=lambda i: [globex])
    burst(connector, now - timedelta(days=40), 3, topics_for=lambda i: [globex])  # the previous 30 days
    client.force_login(admin)
    panel = reverse("console:insight-panel", kwargs={"name": "topics"})

    rising = client.get(panel, {"granularity": "day"}, HTTP_ACCEPT="application/json").json()["rising"]

    assert [(t["name"], t["growth"], t["new"]) for t in rising] == [("Acme", None, True), ("Globex", 1.0, False)]
    rows = list(csv.DictReader(io.StringIO(client.get(panel, {"format": "csv"}).content.decode())))
    growth = {r["name"]: r["growth"] for r in rows if r["table"] == "rising"}
    assert growth == {"Acme": "new", "Globex": "1.0"}
    assert "4600" not in json.dumps(rising)

    # A distribution whose previous period had no messages at all: each change is "new".
    intents = PANELS["intents"]
    answer = client.get(reverse("console:insight-panel", kwargs={"name": "intents"}),
                        {"from": (now - timedelta(days=3)).date().isoformat(), "format": "csv"})
    assert [r["change"] for r in csv.DictReader(io.StringIO(answer.content.decode()))] == ["new"]
    new, not_compared = ({"value": "x", "count": 2, "previous_count": 0, "change": None},
                         {"value": "x", "count": 2, "previous_count": None, "change": None})
    assert [row[-1] for row in intents.csv({"items": [new, not_compared]})[1]] == ["new", None]


# --- The default range follows the data ------------------------------------------------------

def _period(client, **params) -> dict:
    answer = client.get(reverse("console:insight-panel", kwargs={"name": "sentiment"}), params,
                        HTTP_ACCEPT="application/json").json()
    return {**answer["period"], "total": sum(sum(v) for v in answer["series"].values())}


def test_the_default_range_follows_the_data_when_the_last_30_days_hold_none(client, connector, django_user_model,
                                                                               now):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "x-long-password")
    client.force_login(admin)
    today = timezone.localdate(now, rollups.reporting_tz())
    empty = _period(client)
    assert (empty["to"], empty["total"]) == (today.isoformat(), 0)  # no data anywhere: the last 30 days

    burst(connector, now - timedelta(days=100), 7)  # an import of older messages, nothing since
    last = (now - timedelta(days=100) - timedelta(minutes=10)).astimezone(rollups.reporting_tz()).date()
    period = _period(client)
    assert (period["from"], period["to"], period["granularity"]) == (
        (last - timedelta(days=29)).isoformat(), last.isoformat(), "day")
    assert period["total"] == 7  # the messages are on the page
    page = client.get(reverse("console:insight")).content.decode()
    assert f'value="{last.isoformat()}"' in page and 'id="followed-data"' in page
    assert f"from={last - timedelta(days=29)}" in page  # the panels and exports ask for those same days

    # A range asked for is kept, empty or not; an hourly series stays within its 31 days.
    assert _period(client, **{"from": (today - timedelta(days=6)).isoformat()})["total"] == 0
    hourly = _period(client, granularity="hour")
    assert (hourly["to"], hourly["granularity"]) == (last.isoformat(), "hour")

    # Data over half a year: the range goes back to its first day, by week.
    burst(connector, now - timedelta(days=300), 2)
    period = _period(client)
    assert period["granularity"] == "week" and period["total"] == 9
    first = (now - timedelta(days=300, minutes=10)).astimezone(rollups.reporting_tz()).date()
    assert period["from"] == first.isoformat()

    # Messages in the last 30 days: the usual default.
    burst(connector, now, 1)
    period = _period(client)
    assert (period["to"], period["total"], period["granularity"]) == (today.isoformat(), 1, "day")
    assert 'id="followed-data"' not in client.get(reverse("console:insight")).content.decode()
