"""Source times at the calendar's edges: every webhook kind's recorded delivery, its time fields
replaced by hostile values (year 1 and 9999, offsets of ±23:59, epoch 0, negative, huge and
fractional numbers, text), POSTed signed through /hooks/: never a 5xx; what is stored is in UTC,
within listening.times' range, or flagged with what the source said. Plus the helper itself and
the other entry points (the webhook ref, the file import)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone as dj_timezone
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening import times
from listening.actions import ingest_messages
from listening.exceptions import PayloadInvalid
from listening.importing import RowRejected, parse_timestamp
from listening.models import Message
from tests.listening.connectors import test_meta, test_slack, test_telegram, test_x
from tests.listening.helpers import inbound, signed_webhook_post

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TIME_KEYS = {"timestamp", "ts", "event_time", "date", "edit_date", "created_timestamp", "timestamp_ms",
             "created_at", "sent_at"}
EDGE_TEXT = [
    "0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00-23:59", "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59+23:59", "9999-12-31T23:59:59-23:59", "2026-11-02T09:00:00+23:59",
    "1970-01-01T00:00:00Z", "Mon Jan 01 00:00:00 +2359 0001", "Fri Dec 31 23:59:59 -2359 9999",
    "Tue Nov 24 09:20:11 +2359 2026", "", "not a time", "NaN", "inf", "-1", "1e400", "9" * 40,
]
EDGE_NUMBERS = [0, -1, 1, -(2**63), 2**63, 10**20, 253402300800, 253402300800000, -62135596800, 1e308]
OFFSET = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
HOSTILE = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=OFFSET.map(timezone)).map(datetime.isoformat),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=20),
)
FUZZ = hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def substitute(payload: Any, value: Any) -> Any:
    """A copy of `payload` with every time field set to `value`."""
    if isinstance(payload, dict):
        return {k: value if k in TIME_KEYS else substitute(v, value) for k, v in payload.items()}
    if isinstance(payload, list):
        return [substitute(v, value) for v in payload]
    return payload


def fixture(kind: str, name: str) -> dict:
    return json.loads((FIXTURES / kind / f"{name}.json").read_text())


def assert_stored_times_are_sane(connector) -> None:
    latest = dj_timezone.now() + times.FUTURE_SLACK
    for message in Message.objects.filter(connector=connector):
        assert message.sent_at.utcoffset() == timedelta(0)
        assert times.EARLIEST <= message.sent_at <= latest, message.sent_at
        flag = (message.raw or {}).get("_cxm", {}) if isinstance(message.raw, dict) else {}
        assert isinstance(flag.get("sent_at_invalid", ""), str)


# (kind, fixture, how to deliver it signed, how to make the connector)
DELIVERIES = [
    ("meta", "messenger_text", test_meta.post, lambda make: make("meta", credentials=test_meta.CREDENTIALS)),
    ("meta", "whatsapp_text", test_meta.post, lambda make: make("meta", credentials=test_meta.CREDENTIALS)),
    ("meta", "instagram_dm", test_meta.post, lambda make: make("meta", credentials=test_meta.CREDENTIALS)),
    ("slack", "message_channel", test_slack.deliver, lambda make: make("slack", credentials=test_slack.CREDENTIALS)),
    ("telegram", "private_text", test_telegram.deliver,
     lambda make: make("telegram", credentials={"bot_token": test_telegram.TOKEN,
                                                "webhook_secret": test_telegram.SECRET})),
    ("x", "activity_dm", test_x.deliver, lambda make: test_x.make_x(make)),
    ("x", "activity_mention", test_x.deliver, lambda make: test_x.make_x(make)),
]


@pytest.mark.parametrize(("kind", "name", "deliver", "build"), DELIVERIES, ids=[f"{d[0]}-{d[1]}" for d in DELIVERIES])
def test_time_edges_provider_webhooks_never_answer_5xx_and_store_utc(client, make_connector, kind, name, deliver,
                                                                    build):
    connector = build(make_connector)
    recorded = fixture(kind, name)
    assert deliver(client, connector, recorded).status_code == 200  # the recorded delivery itself is fine
    assert Message.objects.filter(connector=connector).exists()
    answers: set[int] = set()

    @FUZZ
    @given(value=HOSTILE)
    def check(value):
        Message.objects.filter(connector=connector).delete()  # else the same ids are only duplicates
        response = deliver(client, connector, substitute(recorded, value))
        answers.add(response.status_code)
        assert response.status_code < 500, (value, response.content[:300])
        if response.status_code == 200:
            assert_stored_times_are_sane(connector)

    check()
    assert answers <= {200, 400}


def test_time_edges_generic_webhook_stores_utc_or_refuses_with_a_reason(client, make_connector):
    connector = make_connector("webhook", slug="edges", credentials={"signing_secret": "s3cret"})
    answers: set[int] = set()

    @FUZZ
    @given(value=HOSTILE)
    def check(value):
        Message.objects.filter(connector=connector).delete()
        item = {"id": "m1", "text": "hello", "author": {"id": "a1"}, "sent_at": value}
        response = signed_webhook_post(client, connector, item)
        answers.add(response.status_code)
        assert response.status_code in (200, 400), (value, response.content[:300])
        if response.status_code == 400:
            assert "sent_at" in response.json()["reason"]
            assert not Message.objects.filter(connector=connector).exists()
        else:
            assert_stored_times_are_sane(connector)

    check()
    assert 400 in answers  # the edges were refused, not only accepted


def test_time_edges_generic_webhook_offset_postgresql_refuses_is_a_400_with_the_reason(client, make_connector):
    connector = make_connector("webhook", slug="offset", credentials={"signing_secret": "s3cret"})
    for value, words in (("2026-11-02T09:00:00+23:59", "beyond ±15:59"), ("0001-01-01T00:00:00Z", "before 2000-01-01"),
                         ("9999-12-31T23:59:59Z", "more than a day in the future")):
        response = signed_webhook_post(client, connector, {"id": "m", "text": "t", "author": {"id": "a"},
                                                           "sent_at": value})
        assert response.status_code == 400
        assert value in response.json()["reason"] and words in response.json()["reason"]
    assert not Message.objects.filter(connector=connector).exists()
    ok = signed_webhook_post(client, connector, {"id": "m", "text": "t", "author": {"id": "a"},
                                                 "sent_at": "2026-11-02T09:00:00+14:00"})
    assert ok.status_code == 200
    assert Message.objects.get(connector=connector).sent_at == datetime(2026, 11, 1, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize("ref", ["%C2%B2", "%D9%A3", "9" * 40, "%F0%9F%98%80"])
def test_time_edges_webhook_ref_of_non_ascii_digits_or_a_huge_number_is_a_404(db, client, ref):
    response = client.post(f"/hooks/{ref}/", data=b"{}", content_type="application/json")
    assert response.status_code == 404


def test_time_edges_ingest_flags_an_unstorable_time_and_keeps_the_message(make_connector):
    """A connector that did not use the helpers still cannot store an offset PostgreSQL refuses."""
    connector = make_connector("webhook")
    far = timezone(timedelta(hours=23, minutes=59))
    message = inbound("odd")
    odd = type(message)(**{**message.__dict__, "sent_at": datetime(2026, 11, 2, 9, 0, tzinfo=far)})
    before = dj_timezone.now()
    result = ingest_messages(connector, [odd, inbound("fine")])
    assert result.created == 2
    stored = Message.objects.get(connector=connector, external_id="odd")
    assert before <= stored.sent_at <= dj_timezone.now()
    assert stored.raw["_cxm"]["sent_at_invalid"] == "2026-11-02T09:00:00+23:59"
    assert "beyond ±15:59" in stored.raw["_cxm"]["sent_at_reason"]
    assert stored.raw["id"] == "odd"  # the payload itself is kept
    assert Message.objects.get(connector=connector, external_id="fine").sent_at == inbound("fine").sent_at


def test_time_edges_helper_normalises_to_utc_and_names_what_it_refused():
    assert times.from_iso_text("2026-11-02T09:00:00+14:00", "f") == datetime(2026, 11, 1, 19, 0, tzinfo=UTC)
    assert times.from_iso_text("2026-11-02T09:00:00+14:00", "f").tzinfo is UTC
    assert times.from_unix_seconds("1793534400123", "f") == datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC)
    for value in (0, -1, 10**30, float("inf"), "-62135596800"):
        refused = times.from_unix_seconds(value, "f")
        assert isinstance(refused, times.OutOfRange) and refused.original == str(value)
    for value in ("NaN", None, True, "soon", [1]):
        with pytest.raises(PayloadInvalid, match="field f must be a Unix timestamp"):
            times.from_unix_seconds(value, "f")
    received = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    year_one = times.from_iso_text("0001-01-01T00:00:00+01:00", "f", received_at=received)
    assert year_one == received and year_one.reason == "it is outside the calendar"
    with pytest.raises(PayloadInvalid, match="cannot be a send time: it is before 2000-01-01"):
        times.refuse_out_of_range(times.from_iso_text("1999-12-31T23:59:59Z", "f"), "f")
    assert times.window_start(datetime(1, 1, 1, tzinfo=UTC), timedelta(days=1)) == datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "1999-12-31", "-1",
                                   "Mon Jan 01 00:00:00 +2359 0001", "253402300800"])
def test_time_edges_file_import_rejects_the_row_with_a_reason(value):
    with pytest.raises(RowRejected):
        parse_timestamp(value)


def test_time_edges_file_import_reads_an_offset_as_utc():
    assert parse_timestamp("2026-11-02T09:00:00+14:00") == datetime(2026, 11, 1, 19, 0, tzinfo=UTC)
    assert parse_timestamp("1793534400") == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_time_edges_telegram_date_beyond_the_calendar_is_stored_at_the_received_time_and_flagged(client,
                                                                                              make_connector):
    """A provider's delivery cannot be corrected by its sender: it is kept, with what it said."""
    connector = make_connector("telegram", credentials={"bot_token": test_telegram.TOKEN,
                                                        "webhook_secret": test_telegram.SECRET})
    update = fixture("telegram", "private_text")
    update["message"]["date"] = 10**15
    before = dj_timezone.now()
    assert test_telegram.deliver(client, connector, update).status_code == 200
    stored = Message.objects.get(connector=connector)
    assert before <= stored.sent_at <= dj_timezone.now()
    assert stored.raw["_cxm"] == {"sent_at_invalid": str(10**15),
                                  "sent_at_reason": "it is more than a day in the future"}


def test_time_edges_negative_history_of_a_message_sent_in_year_one_does_not_overflow(make_connector):
    """Rows stored before times were checked may hold year 1; classification's look-back window
    from such a message once raised OverflowError and failed its batch on every retry."""
    from learning.actions import negative_history

    connector = make_connector("webhook")
    ingest_messages(connector, [inbound("ancient")])
    Message.objects.filter(external_id="ancient").update(sent_at=datetime(1, 1, 1, tzinfo=UTC))
    message = Message.objects.select_related("author").get(external_id="ancient")
    assert message.sent_at == datetime(1, 1, 1, tzinfo=UTC)
    assert negative_history([message], timedelta(minutes=60)) == {}
