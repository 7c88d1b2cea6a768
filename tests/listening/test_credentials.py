from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.test import override_settings

from listening.crypto import CredentialsUnreadable
from listening.models import Connector

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_credentials_are_encrypted_at_rest(make_connector):
    connector = make_connector("webhook", credentials={"signing_secret": "hunter2-very-secret"})
    raw = Connector.objects.values_list("credentials_encrypted", flat=True).get(pk=connector.pk)
    assert "hunter2" not in raw and raw
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "hunter2-very-secret"}


def test_rotation_reencrypts_with_the_new_key_and_old_key_can_be_dropped(make_connector):
    with override_settings(CREDENTIALS_KEYS=[OLD]):
        connector = make_connector("webhook", credentials={"signing_secret": "s1"})
        before = Connector.objects.get(pk=connector.pk).credentials_encrypted
    with override_settings(CREDENTIALS_KEYS=[NEW, OLD]):
        assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "s1"}
        call_command("rotate_credentials")
        after = Connector.objects.get(pk=connector.pk).credentials_encrypted
    assert after != before
    with override_settings(CREDENTIALS_KEYS=[NEW]):
        assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "s1"}
    with override_settings(CREDENTIALS_KEYS=[OLD]), pytest.raises(CredentialsUnreadable):
        Connector.objects.get(pk=connector.pk).credentials  # noqa: B018


def test_rotation_refuses_when_a_key_is_missing(make_connector):
    with override_settings(CREDENTIALS_KEYS=[OLD]):
        make_connector("webhook", credentials={"signing_secret": "s1"})
    with override_settings(CREDENTIALS_KEYS=[NEW]), pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_credentials")


def test_credentials_never_in_repr_or_logs(make_connector, caplog, client):
    connector = make_connector("webhook", credentials={"signing_secret": "hunter2-very-secret"})
    with caplog.at_level(logging.DEBUG):
        client.post(f"/hooks/{connector.slug}/", data=b"{}", content_type="application/json",
                    headers={"X-CXM-Timestamp": "1", "X-CXM-Signature": "sha256=00"})
        logging.getLogger("test").info("connector %r", connector)
    assert "hunter2" not in repr(connector) and "hunter2" not in str(connector)
    assert "hunter2" not in caplog.text


def test_unreadable_credentials_reject_webhook_cleanly(make_connector, client):
    with override_settings(CREDENTIALS_KEYS=[OLD]):
        connector = make_connector("webhook", credentials={"signing_secret": "s1"})
    with override_settings(CREDENTIALS_KEYS=[NEW]):
        response = client.post(f"/hooks/{connector.slug}/", data=b"{}", content_type="application/json",
                               headers={"X-CXM-Timestamp": "1", "X-CXM-Signature": "sha256=00"})
    assert response.status_code == 403
    assert "re-enter" in response.json()["reason"]


def test_admin_connector_list_and_form_never_show_secrets(make_connector, admin_client):
    connector = make_connector("webhook", credentials={"signing_secret": "hunter2-very-secret"})
    listing = admin_client.get("/admin/listening/connector/")
    form = admin_client.get(f"/admin/listening/connector/{connector.pk}/change/")
    assert listing.status_code == 200 and form.status_code == 200
    assert b"hunter2" not in listing.content and b"hunter2" not in form.content
    assert connector.credentials_encrypted.encode() not in form.content


def test_admin_form_keeps_credentials_when_left_blank_and_replaces_when_given(make_connector, admin_client):
    connector = make_connector("webhook", credentials={"signing_secret": "first"})
    url = f"/admin/listening/connector/{connector.pk}/change/"
    base = {"kind": "webhook", "name": "Site", "slug": connector.slug, "enabled": "on",
            "config": '{"channel": "web"}', "poll_interval_seconds": "60"}
    assert admin_client.post(url, {**base, "new_credentials": ""}).status_code == 302
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "first"}
    assert admin_client.post(url, {**base, "new_credentials": '{"signing_secret": "second"}'}).status_code == 302
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "second"}
    bad = admin_client.post(url, {**base, "config": '{"nope": 1}'})
    assert bad.status_code == 200 and b"unknown config keys" in bad.content
