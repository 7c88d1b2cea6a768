"""Signals in: the signed webhook's signal schema, matching to customers, dedupe, bad input
refused whole, CSV import with recorded rejections, retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from listening.models import Contact, Customer, Device, Signal, SignalRejection
from listening.signal_actions import ingest_signals, parse_signal, prune_signals
from listening.signal_import import import_signals_file
from listening.signals import signals_ingested
from tests.listening.helpers import signed_webhook_post


@pytest.fixture
def hook(make_connector):
    return make_connector("webhook", slug="crm", credentials={"signing_secret": "s3cret"})


@pytest.fixture
def ana(db):
    customer = Customer.objects.create(display_name="Ana", email="ana@example.com", phone="+15550001")
    Contact.objects.create(channel="whatsapp", external_id="wa-ana", customer=customer, phone="+15550001",
                           phone_verified=True)
    return customer


def signal(n, **fields):
    return {"id": f"s-{n}", "type": "device_error", "customer": {"email": "ana@example.com"},
            "payload": {"code": "E42"}, **fields}


def test_signal_webhook_stores_matches_and_dedupes(client, hook, ana, django_capture_on_commit_callbacks):
    announced = []
    signals_ingested.connect(lambda sender, signal_ids, **kw: announced.extend(signal_ids), weak=False,
                             dispatch_uid="test-announce")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_webhook_post(client, hook, {"signals": [
                signal(1), signal(2, customer={"phone": "+15550001"}),
                signal(3, customer={"channel": "whatsapp", "contact_id": "wa-ana"}, type="nps_answer",
                       payload={"score": 3})]})
    finally:
        signals_ingested.disconnect(dispatch_uid="test-announce")
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 3, "duplicates": 0, "rejected": []}
    assert set(Signal.objects.values_list("customer_id", flat=True)) == {ana.pk}
    assert sorted(announced) == sorted(Signal.objects.values_list("id", flat=True))
    again = signed_webhook_post(client, hook, {"signals": [signal(1), signal(2)]})
    assert again.status_code == 200
    assert again.json()["duplicates"] == 2 and Signal.objects.count() == 3


@pytest.mark.parametrize(("bad", "words"), [
    ({"type": "telepathy"}, "unknown signal type"),
    ({"occurred_at": "2999-01-01T00:00:00Z"}, "in the future"),
    ({"occurred_at": (timezone.now() + timedelta(hours=2)).isoformat()}, "in the future"),
    ({"occurred_at": "2001-01-01T00:00:00Z"}, "retention"),
    ({"payload": {"code": "E1", "blob": "x" * 20_000}}, "bytes; at most"),
    ({"payload": {"message": "no code"}}, "code is required"),
    ({"customer": {"email": "stranger@example.com"}}, "no customer matches"),
    ({"id": "s-1"}, "appears twice"),
    ({"customer": None}, "names no customer"),
])
def test_signal_webhook_refuses_bad_signal_and_stores_nothing(client, hook, ana, bad, words):
    response = signed_webhook_post(client, hook, {"signals": [signal(1), {**signal(2), **bad}]})
    assert response.status_code == 400, response.content
    assert words in response.content.decode()
    assert Signal.objects.count() == 0


def test_signal_webhook_refuses_a_megabyte_and_unsigned(client, hook, ana):
    huge = {"signals": [signal(1, payload={"code": "E", "message": "x" * 1_100_000})]}
    assert signed_webhook_post(client, hook, huge).status_code == 413
    unsigned = client.post(f"/hooks/{hook.slug}/", data=json.dumps({"signals": [signal(1)]}),
                           content_type="application/json")
    assert unsigned.status_code == 401
    assert Signal.objects.count() == 0


def test_signal_device_binds_then_matches_alone(hook, ana):
    now = timezone.now()
    ingest_signals("mqtt", [parse_signal(signal(1, device_id="dev-9"), now=now)], strict=True)
    assert Device.objects.get(device_id="dev-9").customer == ana
    alone = parse_signal({"id": "s-2", "type": "device_error", "payload": {"code": "E1"}}, device_id="dev-9")
    result = ingest_signals("mqtt", [alone], strict=True)
    assert result.created == 1 and Signal.objects.get(external_id="s-2").device_id == "dev-9"


def test_signal_lenient_ingest_keeps_good_and_reports_unmatched(ana):
    stranger = parse_signal({"id": "x", "type": "device_error", "device_id": "unknown", "payload": {"code": "E"}})
    result = ingest_signals("mqtt", [parse_signal(signal(1)), stranger, parse_signal(signal(1))], strict=False)
    assert result.created == 1 and result.duplicates == 1
    assert result.rejected == [("x", "no customer matches this signal's identifiers")]


def test_signal_rows_are_append_only(ana):
    ingest_signals("api", [parse_signal(signal(1))], strict=True)
    stored = Signal.objects.get()
    stored.type = "nps_answer"
    with pytest.raises(ValueError, match="append-only"):
        stored.save()


def test_signal_retention_prunes_old_rows(ana, settings):
    ingest_signals("api", [parse_signal(signal(1)), parse_signal(signal(2))], strict=True)
    Signal.objects.filter(external_id="s-1").update(received_at=timezone.now() - timedelta(days=100))
    settings.CXM_SIGNAL_RETENTION_DAYS = 90
    assert prune_signals() == 1
    assert list(Signal.objects.values_list("external_id", flat=True)) == ["s-2"]


def test_signal_csv_import_stores_converts_and_records_rejections(tmp_path, ana):
    path = tmp_path / "signals.csv"
    path.write_text(
        "id,type,email,device_id,occurred_at,payload.score,payload.code\n"
        "n1,nps_answer,ana@example.com,,,3,\n"
        "n2,nps_answer,ana@example.com,,,eleven,\n"
        "n3,device_error,nobody@example.com,,,,E7\n"
        "n4,device_error,ana@example.com,dev-1,1700000000,,E7\n"
        "n5,device_error,ana@example.com,dev-1,,,E7\n"
    )
    report = import_signals_file(path, source="crm")
    assert (report.rows, report.created, report.rejected) == (5, 2, 3)
    assert Signal.objects.get(external_id="n1").payload == {"score": 3}
    reasons = " ".join(SignalRejection.objects.values_list("reason", flat=True))
    assert "must be a number" in reasons and "no customer matches" in reasons and "retention" in reasons
    again = import_signals_file(path, source="crm")
    assert again.created == 0 and again.duplicates == 2


def test_signal_api_stores_for_admins_and_refuses_others(db, ana, admin_user, django_user_model):
    from tests.api.conftest import Api, token_for
    from tests.responses.conftest import make_user

    admin = Api(token_for(admin_user, ["customers:write"]))
    body = {"signals": [signal(1), signal(2, type="nps_answer", payload={"score": 2})]}
    created = admin.post("/signals", body)
    assert created.status_code == 201, created.content
    assert created.json()["stored"] == 2 and Signal.objects.count() == 2
    bad = admin.post("/signals", {"signals": [signal(3), signal(4, type="telepathy")]})
    assert bad.status_code == 400 and "unknown signal type" in bad.content.decode()
    assert admin.post("/signals", {"signals": []}).status_code == 400
    agent = make_user(django_user_model, "agent_x", "agent")
    assert Api(token_for(agent, ["customers:write"])).post("/signals", body).status_code == 403
    assert Api(token_for(admin_user, ["customers:read"])).post("/signals", body).status_code == 403
    assert Signal.objects.count() == 2
