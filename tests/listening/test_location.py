"""Where a customer is: the time zone (set, or from the phone prefix), the last known location from
WhatsApp (Meta) and Twilio location messages (coordinates on the raw and the customer, not a
placeholder), and the channel they answer on (learned, overridden by an agent)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from listening import attributes, location
from listening.actions import ingest_messages
from listening.connectors import meta_payloads, twilio
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.exceptions import PayloadInvalid
from listening.models import Contact, Customer, Message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def whatsapp_location(lat, lon, **extra) -> dict:
    payload = json.loads((FIXTURES / "meta" / "whatsapp_text.json").read_text())
    item = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del item["text"]
    item["type"] = "location"
    item["location"] = {"latitude": lat, "longitude": lon, **extra}
    return payload


def twilio_location(lat: str, lon: str, **extra) -> dict:
    fields = json.loads((FIXTURES / "twilio" / "inbound_whatsapp.json").read_text())
    fields.update({"Body": "", "MessageType": "location", "Latitude": lat, "Longitude": lon, **extra})
    return fields


def test_location_whatsapp_message_keeps_coordinates_on_the_raw_not_a_placeholder():
    [message] = meta_payloads.parse_delivery(whatsapp_location(52.520008, 13.404954))
    assert message.raw["location"] == {"lat": 52.520008, "lon": 13.404954}
    assert message.text == "Shared a location (52.52001, 13.40495)"
    [named] = meta_payloads.parse_delivery(whatsapp_location(38.9, -77.0, name="Main St store"))
    assert named.text == "Main St store" and named.raw["location"] == {"lat": 38.9, "lon": -77.0}


def test_location_twilio_message_keeps_coordinates_and_its_label():
    message = twilio._inbound(twilio_location("-23.55052", "-46.633308", Label="Paulista office"))
    assert message.raw["location"] == {"lat": -23.55052, "lon": -46.633308}
    assert message.text == "Paulista office"
    assert "[location]" not in twilio._inbound(twilio_location("10", "20")).text


@pytest.mark.parametrize(("lat", "lon"), [(91, 0), (0, 181), ("north", 3), (None, 4), (float("nan"), 1), (True, 1)])
def test_location_bad_coordinates_are_refused_with_a_reason(lat, lon):
    with pytest.raises(PayloadInvalid, match="latitude"):
        meta_payloads.parse_delivery(whatsapp_location(lat, lon))


def test_location_twilio_bad_coordinates_are_refused():
    with pytest.raises(PayloadInvalid, match="latitude"):
        twilio._inbound(twilio_location("95.0", "10"))


def test_location_message_sets_the_customers_last_known_location(make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("meta", slug="wa")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages(connector, meta_payloads.parse_delivery(whatsapp_location(48.8566, 2.3522)))
    message = Message.objects.get()
    assert message.raw["location"] == {"lat": 48.8566, "lon": 2.3522}
    # WhatsApp's number is unverified: the contact gets a customer of its own for the location.
    customer = Contact.objects.get().customer
    assert (customer.location_lat, customer.location_lon, customer.location_source) == (48.8566, 2.3522, "whatsapp")
    assert customer.location_at == message.sent_at


def test_location_an_older_location_does_not_replace_a_newer_one(db):
    customer = Customer.objects.create(display_name="Ada")
    now = timezone.now()
    attributes.record_location(customer, 1, 2, at=now, source="whatsapp")
    attributes.record_location(customer, 3, 4, at=now - timedelta(hours=1), source="sms")
    customer.refresh_from_db()
    assert (customer.location_lat, customer.location_lon) == (1.0, 2.0)


@pytest.mark.parametrize(("phone", "zone"), [("+4915123456789", "Europe/Berlin"), ("+12125551234", "America/New_York"),
                                             ("+5511987654321", "America/Sao_Paulo"), ("+447700900123", ""),
                                             ("not a phone", "")])
def test_location_time_zone_from_the_phone_prefix(db, phone, zone):
    customer = Customer(phone=phone)
    found = location.customer_zone(customer)
    assert (found.key if found else "") == zone


def test_location_a_set_time_zone_wins_over_the_phone(db):
    customer = Customer.objects.create(phone="+4915123456789")
    customer = attributes.set_profile(customer, {"time_zone": "Asia/Tokyo"}, source="agent")
    assert location.customer_zone(customer).key == "Asia/Tokyo"
    assert location.time_zone_origin(customer) == "set by an agent"


@pytest.mark.parametrize("bad", ["Mars/Olympus", "Berlin", "../../etc/passwd", 7, "Europe/" + "x" * 80])
def test_location_bad_time_zone_is_refused(db, bad):
    customer = Customer.objects.create()
    with pytest.raises(PayloadInvalid, match="time_zone"):
        attributes.set_profile(customer, {"time_zone": bad}, source="api")
    customer.refresh_from_db()
    assert customer.time_zone == ""


def _message(text: str, channel: str, author: str, minutes_ago: float = 0) -> InboundMessage:
    return InboundMessage(external_id=f"{channel}-{author}-{text}", text=text, channel=channel,
                          sent_at=timezone.now() - timedelta(minutes=minutes_ago), thread_id=f"t-{author}",
                          author=InboundAuthor(external_id=author, email="ada@example.com", email_verified=True))


def test_location_preferred_channel_is_learned_from_where_the_customer_writes_and_overridable(
        make_connector, django_capture_on_commit_callbacks):
    sms, mail = make_connector("twilio", slug="sms"), make_connector("email", slug="mail")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages(mail, [_message("first", "email", "ada-mail", minutes_ago=30)])
    customer = Customer.objects.get()
    assert customer.preferred_channel == "email"
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages(sms, [_message("answer", "sms", "ada-sms")])
    customer.refresh_from_db()
    assert Customer.objects.count() == 1 and customer.learned_channel == "sms" and customer.preferred_channel == "sms"
    customer = attributes.set_profile(customer, {"preferred_channel": "email"}, source="agent")
    assert customer.preferred_channel == "email" and customer.learned_channel == "sms"
    with pytest.raises(PayloadInvalid, match="preferred_channel"):
        attributes.set_profile(customer, {"preferred_channel": "carrier-pigeon"}, source="agent")


def test_location_webhook_with_bad_coordinates_is_a_400_and_stores_nothing(client, make_connector,
                                                                          django_capture_on_commit_callbacks):
    from tests.listening.connectors.test_meta import CREDENTIALS, post

    connector = make_connector("meta", slug="wa-hook", credentials=CREDENTIALS)
    with django_capture_on_commit_callbacks(execute=True):
        refused = post(client, connector, whatsapp_location(123.4, 13.4))
        assert refused.status_code == 400 and "latitude must be within -90..90" in refused.json()["reason"]
        assert not Message.objects.exists() and not Customer.objects.exists()
        stored = post(client, connector, whatsapp_location(52.52, 13.4, address="Alexanderplatz 1"))
    assert stored.status_code == 200
    assert Message.objects.get().text == "Alexanderplatz 1"
    assert Customer.objects.get().location_lat == 52.52
