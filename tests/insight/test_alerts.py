"""Spike alerts (insight.alerts): the method on built baselines, one alert per spike, quiet hours,
and the notifications (console events, locmem email, a signed webhook to a local server).

Baselines are written as hourly rollups through `rollups.keys` + `rollups.apply`, the window's
messages are stored and classified through `actions._store` (the workers' path)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
from collections import Counter
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from insight import alerts
from insight.models import Alert, AlertSettings
from learning import rollups
from learning.actions import _store
from learning.models import Classification, Term
from listening.models import Contact, Conversation, Message
from responses.models import ConsoleEvent, Role, Team
from tests.fakes.http import Reply
from tests.responses.conftest import make_user

_n = itertools.count(1)


@pytest.fixture(autouse=True)
def no_model(settings):
    settings.CXM_CLASSIFY_ON_INGEST = False


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def team(db):
    return Team.objects.create(name="Team A", slug="team-a")


@pytest.fixture
def connector(team, make_connector):
    connector = make_connector("webhook", slug="brand-a", name="Brand A site")
    team.connectors.add(connector)
    return connector


@pytest.fixture
def people(django_user_model, team):
    other = Team.objects.create(name="Team B", slug="team-b")
    return {
        "supervisor": make_user(django_user_model, "supervisor_a", Role.SUPERVISOR, [team]),
        "manager": make_user(django_user_model, "manager_a", Role.BRAND_MANAGER, [team]),
        "agent": make_user(django_user_model, "agent_a", Role.AGENT, [team]),
        "outsider": make_user(django_user_model, "supervisor_b", Role.SUPERVISOR, [other]),
        "admin": django_user_model.objects.create_superuser("admin", "admin@example.com", "x-long-password"),
    }


@pytest.fixture
def alert_settings(db):
    row = AlertSettings.current()
    row.sensitivity, row.min_messages = AlertSettings.Sensitivity.MEDIUM, 10
    row.save()
    return row


def baseline(connector, now, per_hour, *, negatives=lambda hour: 0, topics=(), channel="web"):
    """Hourly rollups for the 168 hours before the window: per_hour(h) messages in hour h (0 is the
    oldest), of which negatives(h) negative."""
    end_hour = rollups.hour_bucket(now - alerts.WINDOW)
    delta: Counter = Counter()
    for hour in range(alerts.BASELINE_HOURS):
        at = end_hour - timedelta(hours=alerts.BASELINE_HOURS - hour) + timedelta(minutes=30)
        for i in range(per_hour(hour)):
            sentiment = "negative" if i < negatives(hour) else "neutral"
            delta.update(rollups.keys(at, connector.pk, channel, "issue", "en", sentiment, "complaint", "anger",
                                      [{"term_id": t.pk} for t in topics]))
    rollups.apply(dict(delta))


def burst(connector, now, count, *, negative=0, topics_for=lambda i: (), minutes_ago=10, channel="web",
          text="Where is my order?"):
    """`count` inbound messages sent `minutes_ago` before `now`, classified as the workers would;
    the first `negative` of them negative. Returns their ids."""
    n = next(_n)
    contact = Contact.objects.create(channel=channel, external_id=f"cust-{n}", display_name="Casey Customer")
    sent = now - timedelta(minutes=minutes_ago)
    conversation = Conversation.objects.create(connector=connector, channel=channel, external_id=f"thread-{n}",
                                               contact=contact, started_at=sent, last_message_at=sent)
    messages = Message.objects.bulk_create([
        Message(connector=connector, external_id=f"m-{n}-{i}", channel=channel, conversation=conversation,
                author=contact, text=f"{text} #{i}", sent_at=sent) for i in range(count)])
    _store([Classification(
        message=m, sentiment="negative" if i < negative else "neutral", lane="issue", intent="complaint",
        emotion="anger", language="en", topics=[{"term_id": t.pk, "name": t.name} for t in topics_for(i)],
        model_name="test", model_version="t1") for i, m in enumerate(messages)])
    return [m.pk for m in messages]


def flat(n):
    return lambda hour: n


# --- The method, as formulas -------------------------------------------------------------------
def test_volume_test_is_a_robust_z_with_a_poisson_floor():
    flat_test = alerts.volume_test([10] * 168, 40)
    assert (flat_test.expected, flat_test.mad) == (10, 0)
    assert flat_test.scale == pytest.approx(math.sqrt(10))  # MAD 0: the Poisson floor
    assert flat_test.z == pytest.approx(30 / math.sqrt(10))
    noisy = alerts.volume_test([4, 16, 7, 13, 10, 12, 8] * 24, 40)
    assert (noisy.expected, noisy.mad) == (10, 3)
    assert noisy.scale == pytest.approx(1.4826 * 3)
    empty = alerts.volume_test([0] * 168, 3)
    assert (empty.scale, empty.z) == (1.0, 3.0)  # never a division by zero


def test_negative_test_uses_a_small_prior():
    empty = alerts.negative_test(0, 0, 6, 10)
    assert empty.p0 == pytest.approx(1 / 3)  # an empty baseline is "a third", not 0
    assert empty.z == pytest.approx((6 - 10 / 3) / math.sqrt(10 * (1 / 3) * (2 / 3)))


def test_a_significant_rise_under_10_points_is_not_an_alert():
    series = alerts.Series("connector", "1", hourly=[1000] * 168, baseline_negatives=16800, total=1000,
                           negatives=160, ids=[1], negative_ids=[1])
    assert alerts.negative_test(16800, 168000, 160, 1000).z > 5  # significant...
    assert alerts.evaluate(series, 4.0, 10) == []  # ...but only 6 points up


def test_quiet_hours_may_wrap_midnight(settings):
    from datetime import datetime, time

    tz = rollups.reporting_tz()
    row = AlertSettings(quiet_start=time(22), quiet_end=time(6))
    assert alerts.is_quiet(row, datetime(2026, 11, 24, 23, 30, tzinfo=tz))
    assert alerts.is_quiet(row, datetime(2026, 11, 24, 5, 59, tzinfo=tz))
    assert not alerts.is_quiet(row, datetime(2026, 11, 24, 6, 0, tzinfo=tz))
    assert not alerts.is_quiet(AlertSettings(quiet_start=time(9), quiet_end=time(17)),
                               datetime(2026, 11, 24, 8, 0, tzinfo=tz))
    assert not alerts.is_quiet(AlertSettings(), datetime(2026, 11, 24, 8, 0, tzinfo=tz))


# --- Detection on stored data --------------------------------------------------------------------
def test_flat_baseline_and_a_burst_raise_one_volume_alert(connector, team, alert_settings, now):
    baseline(connector, now, flat(10))
    ids = burst(connector, now, 40)

    assert len(alerts.detect_spikes(now)) == 1
    alert = Alert.objects.get()
    # One connector on the "web" channel: the channel series is the same spike, reported once.
    assert (alert.team, alert.kind, alert.dimension, alert.key) == (team, "volume", "connector", str(connector.pk))
    assert alert.label == "Connector Brand A site"
    assert (alert.observed, alert.expected) == (40, 10)
    assert alert.score == pytest.approx(30 / math.sqrt(10))  # 9.49
    assert alert.detail["scale"] == pytest.approx(math.sqrt(10))
    assert alert.detail["baseline_total"] == 1680
    assert sorted(alert.message_ids) == sorted(ids)
    assert alerts.describe(alert) == "40 messages in the last hour against a usual 10 (z = 9.5)"


def test_a_noisy_but_normal_hour_raises_nothing(connector, alert_settings, now):
    alert_settings.sensitivity = AlertSettings.Sensitivity.HIGH
    alert_settings.save()
    pattern = [4, 16, 7, 13, 10, 12, 8]
    baseline(connector, now, lambda hour: pattern[hour % 7])
    burst(connector, now, 17)  # the busiest baseline hour had 16
    assert alerts.detect_spikes(now) == []
    assert not Alert.objects.exists()


def test_the_same_hour_alarms_on_a_flat_baseline_not_on_a_noisy_one(make_connector, team, alert_settings, now):
    steady, jumpy = make_connector("webhook", name="steady"), make_connector("webhook", name="jumpy")
    team.connectors.add(steady)  # separate teams: neither is part of the other's surge
    Team.objects.create(name="Team J", slug="team-j").connectors.add(jumpy)
    pattern = [4, 16, 7, 13, 10, 12, 8]  # median 10 too, but a robust SD of 4.4
    baseline(steady, now, flat(10), channel="steady")
    baseline(jumpy, now, lambda hour: pattern[hour % 7], channel="jumpy")
    burst(steady, now, 24, channel="steady")
    burst(jumpy, now, 24, channel="jumpy")
    alerts.detect_spikes(now)
    # z = 14 / 3.16 = 4.4 against the flat baseline; 14 / 4.45 = 3.1 against the noisy one.
    assert list(Alert.objects.values_list("label", flat=True)) == ["Connector steady"]


def test_a_broad_surge_is_one_team_alert_plus_the_parts_that_rose_far_more(make_connector, team, alert_settings,
                                                                              now):
    web, sms = make_connector("webhook", name="web form"), make_connector("webhook", name="sms line")
    team.connectors.add(web, sms)
    refund = Term.objects.create(name="refund", kind=Term.Kind.TOPIC)
    baseline(web, now, flat(10), channel="web")
    baseline(sms, now, flat(10), channel="sms")
    baseline(web, now, flat(1), topics=[refund], channel="web")
    burst(web, now, 40, channel="web", topics_for=lambda i: [refund] if i < 25 else [])  # refund: 25 against 1
    burst(sms, now, 40, channel="sms")  # everything rose 4x: one surge

    alerts.detect_spikes(now)
    assert sorted(Alert.objects.values_list("dimension", "label")) == [("team", "All messages"),
                                                                      ("term", "Topic refund")]
    whole = Alert.objects.get(dimension="team")
    assert (whole.observed, whole.expected) == (80, 21)  # 10 + 10 an hour, and the hourly refund mention


def test_a_surge_one_connector_drives_is_reported_as_that_connector(make_connector, team, alert_settings, now):
    web, sms = make_connector("webhook", name="web form"), make_connector("webhook", name="sms line")
    team.connectors.add(web, sms)
    baseline(web, now, flat(10), channel="web")
    baseline(sms, now, flat(10), channel="sms")
    burst(web, now, 60, channel="web")
    burst(sms, now, 10, channel="sms")

    alerts.detect_spikes(now)
    assert list(Alert.objects.values_list("dimension", "label")) == [("connector", "Connector web form")]


def test_fewer_messages_than_the_minimum_never_alert(connector, alert_settings, now):
    alert_settings.min_messages = 50
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    assert alerts.detect_spikes(now) == []


def test_a_rise_in_negative_share_without_more_volume_is_a_negative_alert(connector, alert_settings, now):
    baseline(connector, now, flat(20), negatives=flat(2))  # 10% negative
    burst(connector, now, 20, negative=12)  # same volume, 60% negative

    alerts.detect_spikes(now)
    alert = Alert.objects.get()
    p0 = (336 + 1) / (3360 + 3)
    assert (alert.kind, alert.dimension) == ("negative", "connector")
    assert alert.observed == pytest.approx(0.6)
    assert alert.expected == pytest.approx(p0)
    assert alert.score == pytest.approx((12 - 20 * p0) / math.sqrt(20 * p0 * (1 - p0)))  # 7.4
    assert len(alert.message_ids) == 12  # the negative messages behind it
    assert alerts.describe(alert).startswith("12 of 20 messages negative (60%) in the last hour against a usual 10%")


def test_a_term_spike_is_its_own_series(connector, alert_settings, now):
    acme = Term.objects.create(name="Acme", kind=Term.Kind.BRAND)
    baseline(connector, now, flat(9))
    baseline(connector, now, flat(1), topics=[acme])  # one mention an hour
    burst(connector, now, 12, topics_for=lambda i: [acme])  # volume 12 vs 10: not a volume spike

    alerts.detect_spikes(now)
    alert = Alert.objects.get()
    assert (alert.dimension, alert.key, alert.label) == ("term", str(acme.pk), "Brand Acme")
    assert (alert.observed, alert.expected) == (12, 1)
    assert alert.score == pytest.approx(11.0)  # scale 1: sqrt(1) and the floor


def test_a_repeat_run_updates_the_same_alert(connector, alert_settings, now, people):
    alert_settings.email_to = "ops@example.com"
    alert_settings.save()
    baseline(connector, now, flat(10))
    first = burst(connector, now, 40)
    alerts.detect_spikes(now)
    later = now + timedelta(minutes=5)
    second = burst(connector, later, 30, minutes_ago=2)

    alerts.detect_spikes(later)
    alert = Alert.objects.get()
    assert alert.window_end == later
    assert alert.observed == 70 and alert.score == pytest.approx(60 / math.sqrt(10))  # the peak
    assert set(alert.message_ids) == set(first) | set(second)
    assert alert.detail["detections"] == 2
    assert len(mail.outbox) == 1  # notified once
    assert ConsoleEvent.objects.filter(type="alert.raised").count() == 3


def test_an_acknowledged_spike_that_goes_on_is_not_raised_again(connector, alert_settings, now, people):
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    alerts.acknowledge(Alert.objects.get(), people["supervisor"])
    later = now + timedelta(minutes=5)
    alerts.detect_spikes(later)
    assert Alert.objects.get().status == Alert.Status.ACKNOWLEDGED
    # Three hours later it is a new spike.
    much_later = now + timedelta(hours=3)
    burst(connector, much_later, 40)
    alerts.detect_spikes(much_later)
    assert Alert.objects.count() == 2


def test_disabled_settings_detect_nothing(connector, alert_settings, now):
    alert_settings.enabled = False
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    assert alerts.detect_spikes(now) == []


def test_each_team_sees_only_its_connectors(connector, make_connector, alert_settings, now):
    team_b = Team.objects.create(name="Team B", slug="team-b")
    other = make_connector("webhook", name="Brand B")
    team_b.connectors.add(other)
    baseline(other, now, flat(10))
    burst(other, now, 40)
    alerts.detect_spikes(now)
    assert list(Alert.objects.values_list("team__name", "label")) == [("Team B", "Connector Brand B")]


# --- Notification ------------------------------------------------------------------------------
def test_an_alert_reaches_the_teams_supervisors_managers_and_admins(connector, alert_settings, now, people):
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    alert = Alert.objects.get()
    events = ConsoleEvent.objects.filter(type="alert.raised")
    assert {e.user_id for e in events} == {people[p].pk for p in ("supervisor", "manager", "admin")}
    payload = events.first().as_dict()
    assert payload["alert"]["id"] == alert.pk
    assert payload["alert"]["url"] == f"/console/insight/alerts/{alert.pk}/"
    assert payload["alert"]["summary"] == "40 messages in the last hour against a usual 10 (z = 9.5)"
    assert alert.notified_at is not None and alert.notify_error == ""


def test_an_alert_is_emailed(connector, alert_settings, now, settings):
    settings.CXM_PUBLIC_URL = "https://cxm.example.com"
    alert_settings.email_to = "ops@example.com, lead@example.com"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    alert = Alert.objects.get()
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ops@example.com", "lead@example.com"]
    assert sent.subject == "[CXM] Volume spike: Connector Brand A site (Team A)"
    assert "40 messages in the last hour against a usual 10 (z = 9.5)" in sent.body
    assert f"https://cxm.example.com/console/insight/alerts/{alert.pk}/" in sent.body


def test_quiet_hours_record_but_do_not_push(connector, alert_settings, now, people, fake_provider):
    fake_provider.route("POST", "/hook")(lambda request: Reply(200, {"ok": True}))
    local = now.astimezone(rollups.reporting_tz())
    alert_settings.quiet_start = (local - timedelta(hours=1)).time()
    alert_settings.quiet_end = (local + timedelta(hours=1)).time()
    alert_settings.email_to = "ops@example.com"
    alert_settings.webhook_url, alert_settings.webhook_secret = f"{fake_provider.url}/hook", "hook-secret"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)

    alerts.detect_spikes(now)
    alert = Alert.objects.get()
    assert alert.notified_at is None
    assert not ConsoleEvent.objects.filter(type="alert.raised").exists()
    assert mail.outbox == [] and fake_provider.calls("/hook") == []

    # Still going after the quiet hours: pushed then, once.
    after = now + timedelta(hours=1, minutes=5)
    burst(connector, after, 40)
    alerts.detect_spikes(after)
    assert Alert.objects.count() == 1
    assert Alert.objects.get().notified_at is not None
    assert len(mail.outbox) == 1 and len(fake_provider.calls("/hook")) == 1
    assert ConsoleEvent.objects.filter(type="alert.raised").count() == 3


def test_the_webhook_is_signed_with_the_secret(connector, alert_settings, now, fake_provider):
    fake_provider.route("POST", "/hook")(lambda request: Reply(200, {"ok": True}))
    alert_settings.webhook_url, alert_settings.webhook_secret = f"{fake_provider.url}/hook", "hook-secret"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)

    (call,) = fake_provider.calls("/hook")
    expected = "sha256=" + hmac.new(b"hook-secret", call.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call.headers["x-cxm-signature"], expected)
    assert call.headers["content-type"] == "application/json"
    data = json.loads(call.body)
    alert = Alert.objects.get()
    assert data["type"] == "alert.raised"
    assert (data["alert"]["id"], data["alert"]["kind"], data["alert"]["observed"]) == (alert.pk, "volume", 40)
    assert data["alert"]["detail"]["z"] == pytest.approx(alert.score)
    assert alert.notify_error == ""


def test_a_failing_webhook_is_recorded_not_raised(connector, alert_settings, now, fake_provider, people):
    fake_provider.route("POST", "/hook")(lambda request: Reply(500, "receiver down"))
    alert_settings.webhook_url, alert_settings.webhook_secret = f"{fake_provider.url}/hook", "hook-secret"
    alert_settings.email_to = "ops@example.com"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)

    assert len(alerts.detect_spikes(now)) == 1
    alert = Alert.objects.get()
    assert "webhook" in alert.notify_error and "500" in alert.notify_error
    assert len(mail.outbox) == 1  # the other channels still went out
    assert ConsoleEvent.objects.filter(type="alert.raised").count() == 3


def test_an_unreachable_webhook_is_recorded_not_raised(connector, alert_settings, now):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    alert_settings.webhook_url, alert_settings.webhook_secret = f"http://127.0.0.1:{port}/hook", "s"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    assert "cannot reach" in Alert.objects.get().notify_error


def test_a_private_webhook_is_refused_outside_tests(connector, alert_settings, now, fake_provider, settings):
    settings.ALLOW_PRIVATE_URLS = False
    fake_provider.route("POST", "/hook")(lambda request: Reply(200, {"ok": True}))
    alert_settings.webhook_url, alert_settings.webhook_secret = f"{fake_provider.url}/hook", "hook-secret"
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    assert "non-public address" in Alert.objects.get().notify_error
    assert fake_provider.calls("/hook") == []


def test_the_task_runs_detection(connector, alert_settings):
    from insight.tasks import detect_spikes

    now = timezone.now()
    baseline(connector, now, flat(10))
    burst(connector, now, 40, minutes_ago=5)
    assert detect_spikes.apply().get() == 1
    assert Alert.objects.count() == 1


def test_a_webhook_secret_no_key_reads_is_recorded_and_nothing_is_sent_unsigned(connector, alert_settings, now,
                                                                             fake_provider):
    from cryptography.fernet import Fernet

    fake_provider.route("POST", "/hook")(lambda request: Reply(200, {"ok": True}))
    alert_settings.webhook_url = f"{fake_provider.url}/hook"
    alert_settings.webhook_secret_encrypted = Fernet(Fernet.generate_key()).encrypt(b"lost-key").decode()
    alert_settings.save()
    baseline(connector, now, flat(10))
    burst(connector, now, 40)
    alerts.detect_spikes(now)
    assert "cannot be decrypted" in Alert.objects.get().notify_error
    assert fake_provider.calls("/hook") == []
