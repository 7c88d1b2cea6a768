"""The time zone a channel tells: the generic webhook's author.timezone and an email's Date offset,
kept on the customer with where it came from, in the order a person's choice > the channel > the
phone's prefix, and shown in words ("why") on the case page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from listening import attributes, location
from listening.actions import ingest_messages
from listening.connectors import email_parse, presentation
from listening.exceptions import PayloadInvalid
from listening.models import Customer, Message
from tests.listening.helpers import signed_webhook_post


def label(channel: str) -> str:
    return presentation(channel).label


EMAIL = (b"From: Ada <ada@example.com>\r\nTo: care@example.com\r\nSubject: Help\r\n"
         b"Message-ID: <m1@example.com>\r\nDate: %s\r\n\r\nMy thermostat is broken.\r\n")


@pytest.mark.parametrize(("said", "zone"), [
    ("Europe/Berlin", "Europe/Berlin"), ("+02:00", "Etc/GMT-2"), ("-0700", "Etc/GMT+7"), ("UTC+5:30", "Asia/Kolkata"),
    ("+05:45", "Asia/Kathmandu"), (-7, "Etc/GMT+7"), (5.5, "Asia/Kolkata"), (0, "UTC"),
    ("GMT-03:30", "America/St_Johns"),
    (14, "Etc/GMT-14"),
])
def test_channel_zone_names_and_offsets_become_iana_zones(said, zone):
    assert location.clean_channel_zone(said) == zone


@pytest.mark.parametrize("bad", ["Mars/Base", "+25:00", "+02:70", "+05:20", 99, True, None, "", "Berlin", 3.3])
def test_channel_zone_refuses_what_names_no_zone(bad):
    with pytest.raises(PayloadInvalid, match="timezone"):
        location.clean_channel_zone(bad)


def _delivery(message_id: str, zone, *, sent_at: str | None = None) -> dict:
    author = {"id": "ada-web", "name": "Ada", "email": "ada@example.com", "email_verified": True}
    if zone is not None:
        author["timezone"] = zone
    item = {"id": message_id, "text": "my thermostat is broken", "author": author}
    if sent_at:
        item["sent_at"] = sent_at
    return item


def test_channel_zone_from_the_webhook_author_is_kept_on_the_customer_with_its_source(
        client, make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("webhook", slug="hook", credentials={"signing_secret": "s3cret"})
    with django_capture_on_commit_callbacks(execute=True):
        answer = signed_webhook_post(client, connector, _delivery("m1", "America/Chicago"))
    assert answer.status_code == 200, answer.content
    customer = Customer.objects.get()
    assert (customer.channel_time_zone, customer.channel_time_zone_source) == ("America/Chicago", "web:author")
    assert customer.time_zone == ""  # not "set": a person's choice stays free to win
    assert location.customer_zone(customer).key == "America/Chicago"
    assert location.time_zone_origin(customer, label) == "from Website (the sender's time zone)"
    assert location.time_zone_origin(customer) == "from Web (the sender's time zone)"  # the key, without labels
    assert Message.objects.get().raw["time_zone"] == {"zone": "America/Chicago", "from": "author"}


def test_channel_zone_a_bad_webhook_timezone_is_a_400_and_nothing_is_stored(client, make_connector):
    connector = make_connector("webhook", slug="hook", credentials={"signing_secret": "s3cret"})
    answer = signed_webhook_post(client, connector, {"messages": [_delivery("ok", "+01:00"),
                                                                  _delivery("bad", "Mars/Base")]})
    assert answer.status_code == 400
    assert "messages[1].author.timezone" in answer.content.decode()
    assert Message.objects.count() == 0 and Customer.objects.count() == 0


def test_channel_zone_an_older_message_does_not_replace_a_newer_zone(
        client, make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("webhook", slug="hook", credentials={"signing_secret": "s3cret"})
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        signed_webhook_post(client, connector, _delivery("new", "Asia/Tokyo", sent_at=now.isoformat()))
        signed_webhook_post(client, connector, _delivery("old", "Europe/Paris",
                                                         sent_at=(now - timedelta(hours=2)).isoformat()))
        signed_webhook_post(client, connector, _delivery("plain", None))  # says nothing: keeps Tokyo
    assert Customer.objects.get().channel_time_zone == "Asia/Tokyo"


def test_channel_zone_from_an_email_date_offset_and_none_from_plus_zero():
    parsed = email_parse.parse_email(EMAIL % b"Tue, 01 Dec 2026 10:00:00 +0530", uid=1, size=200, cut=False,
                                     max_attachment_bytes=1000)
    assert parsed.raw["time_zone"] == {"zone": "Asia/Kolkata", "from": "date_header"}
    assert parsed.raw["headers"]["date"].endswith("+0530")  # the record is still all there
    berlin = email_parse.parse_email(EMAIL % b"Tue, 01 Dec 2026 10:00:00 +0100 (CET)", uid=2, size=200, cut=False,
                                     max_attachment_bytes=1000)
    assert berlin.raw["time_zone"]["zone"] == "Etc/GMT-1"
    for stamp in (b"Tue, 01 Dec 2026 10:00:00 +0000", b"Tue, 01 Dec 2026 10:00:00 -0000", b"yesterday"):
        plain = email_parse.parse_email(EMAIL % stamp, uid=3, size=200, cut=False, max_attachment_bytes=1000)
        assert "time_zone" not in plain.raw


def test_channel_zone_email_sets_the_customer_zone(make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("email", slug="mail")
    parsed = email_parse.parse_email(EMAIL % b"Tue, 01 Dec 2026 10:00:00 -0500", uid=1, size=200, cut=False,
                                     max_attachment_bytes=1000)
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages(connector, [parsed])
    customer = Customer.objects.get()
    assert (customer.channel_time_zone, customer.channel_time_zone_source) == ("Etc/GMT+5", "email:date_header")
    assert location.time_zone_origin(customer, label) == "from Email (the email's Date header)"


def test_channel_zone_order_person_then_channel_then_phone(db):
    now = timezone.now()
    customer = Customer.objects.create(phone="+4915123456789")
    assert location.customer_zone(customer).key == "Europe/Berlin"
    assert location.time_zone_origin(customer) == "from the phone number's prefix (+49)"
    customer = attributes.record_channel_time_zone(customer, "America/Chicago", at=now, source="web:author")
    assert location.customer_zone(customer).key == "America/Chicago"  # the channel beats the prefix
    assert location.zones_set_aside(customer) == ["the phone number's prefix says Europe/Berlin"]
    customer = attributes.set_profile(customer, {"time_zone": "Asia/Tokyo"}, source="agent")
    assert location.customer_zone(customer).key == "Asia/Tokyo"  # a person's choice beats the channel
    assert location.time_zone_origin(customer) == "set by an agent"
    assert location.zones_set_aside(customer, label) == ["Website said America/Chicago",
                                                  "the phone number's prefix says Europe/Berlin"]
    # The channel speaking again does not undo the person's choice...
    customer = attributes.record_channel_time_zone(customer, "Europe/Paris", at=now + timedelta(minutes=1),
                                                   source="web:author")
    assert location.customer_zone(customer).key == "Asia/Tokyo"
    # ...and clearing that choice falls back to what the channel said last.
    customer = attributes.set_profile(customer, {"time_zone": None}, source="agent")
    assert location.customer_zone(customer).key == "Europe/Paris"


def test_channel_zone_why_on_the_case_page(client, make_connector, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    from responses.models import Case

    connector = make_connector("webhook", slug="hook", credentials={"signing_secret": "s3cret"})
    with django_capture_on_commit_callbacks(execute=True):
        signed_webhook_post(client, connector, _delivery("m1", "-05:00"))
    case = Case.objects.get()
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    assert "Time zone Etc/GMT+5, from Website (the sender&#x27;s time zone)" in page


def test_channel_zone_in_the_profile_api(client, admin_user, settings, make_connector,
                                        django_capture_on_commit_callbacks):
    from tests.api.conftest import Api, token_for

    settings.CXM_API_RATE = "10000/min"
    connector = make_connector("webhook", slug="hook", credentials={"signing_secret": "s3cret"})
    with django_capture_on_commit_callbacks(execute=True):
        signed_webhook_post(client, connector, _delivery("m1", "America/Chicago"))
    customer = Customer.objects.get()
    api = Api(token_for(admin_user))
    read = api.get(f"/customers/{customer.pk}/profile").json()
    assert (read["time_zone"], read["time_zone_origin"]) == ("America/Chicago", "from Website (the sender's time zone)")
    assert (read["time_zone_set"], read["channel_time_zone"]) == ("", "America/Chicago")
    read = api.patch(f"/customers/{customer.pk}/profile", {"time_zone": "Asia/Tokyo"}).json()
    assert (read["time_zone"], read["time_zone_origin"], read["time_zone_set"]) == ("Asia/Tokyo", "set by the API",
                                                                                    "Asia/Tokyo")
