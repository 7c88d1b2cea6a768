"""The audit log of connector and credential changes, through the real admin and the rotate
command: who, when, what changed, and never a secret."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from listening.models import AuditEvent, Connector

SECRET = "s3cret-value-that-must-never-be-logged"


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "long-enough-password")
    client.force_login(user)
    return client


def _form(**overrides) -> dict:
    data = {"kind": "webhook", "name": "Brand site", "slug": "brand-site", "enabled": "on",
            "config": json.dumps({"channel": "web"}), "poll_interval_seconds": "60",
            "new_credentials": json.dumps({"signing_secret": SECRET})}
    return {**data, **overrides}


def _everything_logged() -> str:
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def test_creating_and_changing_a_connector_is_logged_without_its_secret(admin_client):
    response = admin_client.post(reverse("admin:listening_connector_add"), _form())
    assert response.status_code == 302, response.content[:500]
    connector = Connector.objects.get(slug="brand-site")
    created = AuditEvent.objects.get()
    assert (created.actor_name, created.action, created.connector) == ("root", "created", connector)
    assert created.changes["name"] == {"from": None, "to": "Brand site"}
    assert created.changes["credentials"] == {"added": ["signing_secret"]}
    assert created.ip == "127.0.0.1"

    renamed = _form(name="Brand website", new_credentials=json.dumps({"signing_secret": "rotated!"}))
    response = admin_client.post(reverse("admin:listening_connector_change", args=[connector.pk]), renamed)
    assert response.status_code == 302
    changed = AuditEvent.objects.order_by("-id").first()
    assert changed.action == "changed"
    assert changed.changes == {"name": {"from": "Brand site", "to": "Brand website"},
                               "credentials": {"changed": ["signing_secret"]}}
    assert SECRET not in _everything_logged() and "rotated!" not in _everything_logged()


def test_saving_without_a_change_logs_nothing(admin_client):
    admin_client.post(reverse("admin:listening_connector_add"), _form())
    connector = Connector.objects.get()
    admin_client.post(reverse("admin:listening_connector_change", args=[connector.pk]), _form(new_credentials=""))
    assert AuditEvent.objects.count() == 1  # the creation only: blank credentials keep the stored ones


def test_deleting_a_connector_is_logged_and_outlives_it(admin_client):
    admin_client.post(reverse("admin:listening_connector_add"), _form())
    connector = Connector.objects.get()
    admin_client.post(reverse("admin:listening_connector_delete", args=[connector.pk]), {"post": "yes"})
    assert not Connector.objects.exists()
    deleted = AuditEvent.objects.get(action="deleted")
    assert deleted.connector is None and deleted.connector_label == "Brand site (brand-site)"
    assert deleted.changes["credentials"] == {"removed": ["signing_secret"]}


def test_rotating_the_credentials_key_is_logged_as_the_system(make_connector):
    make_connector("webhook", slug="rotated", credentials={"signing_secret": SECRET})
    call_command("rotate_credentials")
    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_name, event.action) == (None, "system", "credentials re-encrypted")
    assert event.changes == {}  # same secrets, new ciphertext
    assert SECRET not in _everything_logged()


def test_the_audit_log_cannot_be_edited_or_deleted_in_the_admin(admin_client):
    admin_client.post(reverse("admin:listening_connector_add"), _form())
    event = AuditEvent.objects.get()
    assert admin_client.get(reverse("admin:listening_auditevent_changelist")).status_code == 200
    assert admin_client.post(reverse("admin:listening_auditevent_delete", args=[event.pk]),
                             {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
