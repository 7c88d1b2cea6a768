"""Every secret the product stores is encrypted with the credentials keys and re-encrypted by
`rotate_credentials`: connector credentials (OAuth tokens among them), the alert webhook's secret,
and secrets shown once, which wait in the session as ciphertext until their page is opened."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.urls import reverse

from insight import alerts
from insight.models import AlertSettings
from listening import crypto
from listening.crypto import CredentialsUnreadable
from listening.models import Connector
from responses.views.connect import OAUTH_PENDING, SHOWN_ONCE
from tests.responses.test_connect_oauth import CLIENT_ID, CLIENT_SECRET, start
from tests.responses.test_connect_views import detail, webhook_form

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
HOOK_SECRET = "alert-hook-secret-do-not-leak"

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return admin_user


def stored_session(client) -> tuple[str, dict]:
    """The session as the store holds it: the raw column, and what it decodes to."""
    row = Session.objects.get(session_key=client.session.session_key)
    return row.session_data, row.get_decoded()


def test_a_generated_connector_secret_waits_in_the_session_encrypted(client, admin):
    client.post(reverse("console:connect-new", kwargs={"kind": "webhook"}), webhook_form())
    connector = Connector.objects.get(slug="site-chat")
    secret = connector.credentials["signing_secret"]

    raw, decoded = stored_session(client)
    assert secret not in raw and secret not in json.dumps(decoded)
    assert crypto.decrypt_json(decoded[SHOWN_ONCE]) == {str(connector.pk): {"signing_secret": secret}}
    assert secret in client.get(detail(connector)).content.decode()  # shown once, then gone
    assert SHOWN_ONCE not in stored_session(client)[1]


def test_a_replaced_secret_waits_in_the_session_encrypted(client, admin, make_connector):
    connector = make_connector("webhook", slug="site", credentials={"signing_secret": "first-one"})
    client.post(reverse("console:connector-secret", kwargs={"connector_id": connector.pk, "name": "signing_secret"}))
    fresh = Connector.objects.get(pk=connector.pk).credentials["signing_secret"]
    raw, decoded = stored_session(client)
    assert fresh != "first-one" and fresh not in raw and fresh not in json.dumps(decoded)
    assert fresh in client.get(detail(connector)).content.decode()


def test_a_shown_once_secret_unreadable_after_a_key_change_is_not_shown_and_not_a_500(client, admin):
    client.post(reverse("console:connect-new", kwargs={"kind": "webhook"}), webhook_form())
    connector = Connector.objects.get(slug="site-chat")
    session = client.session  # as if the keys were rotated between the save and the page
    session[SHOWN_ONCE] = Fernet(OLD.encode()).encrypt(b'{"x": {"signing_secret": "gone"}}').decode()
    session.save()
    page = client.get(detail(connector))
    assert page.status_code == 200 and "gone" not in page.content.decode()
    assert SHOWN_ONCE not in stored_session(client)[1]


def test_the_oauth_verifier_waits_in_the_session_encrypted(client, admin, make_connector, fake_provider):
    mastodon = make_connector("mastodon", slug="acme-social", config={"instance_url": fake_provider.url},
                              credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    params = start(client, mastodon)
    raw, decoded = stored_session(client)
    pending = crypto.decrypt_json(decoded[OAUTH_PENDING])
    assert pending["state"] == params["state"] and pending["verifier"]
    for value in (pending["verifier"], params["state"]):
        assert value not in raw and value not in json.dumps(decoded)


def test_the_alert_webhook_secret_is_encrypted_at_rest_and_still_signs(fake_provider):
    row = AlertSettings.current()
    row.webhook_url, row.webhook_secret = f"{fake_provider.url}/hook", HOOK_SECRET
    row.save()
    raw = AlertSettings.objects.values_list("webhook_secret_encrypted", flat=True).get(pk=row.pk)
    assert raw and HOOK_SECRET not in raw
    assert crypto.decrypt_text(raw) == HOOK_SECRET
    assert HOOK_SECRET not in repr(row) and HOOK_SECRET not in str(row)
    fresh = AlertSettings.objects.get(pk=row.pk)
    body = b'{"alert": 1}'
    assert fresh.webhook_secret == HOOK_SECRET
    assert alerts.sign(fresh.webhook_secret, body) == alerts.sign(HOOK_SECRET, body)


def test_rotation_reencrypts_the_alert_secret_and_connector_credentials(make_connector):
    with override_settings(CREDENTIALS_KEYS=[OLD]):
        connector = make_connector("webhook", credentials={"signing_secret": "s1"})
        row = AlertSettings.current()
        row.webhook_secret = HOOK_SECRET
        row.save()
        before = AlertSettings.objects.get(pk=row.pk).webhook_secret_encrypted
    with override_settings(CREDENTIALS_KEYS=[NEW, OLD]):
        call_command("rotate_credentials")
    after = AlertSettings.objects.get(pk=row.pk).webhook_secret_encrypted
    assert after != before
    with override_settings(CREDENTIALS_KEYS=[NEW]):  # the old key can be dropped
        assert AlertSettings.objects.get(pk=row.pk).webhook_secret == HOOK_SECRET
        assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "s1"}
    with override_settings(CREDENTIALS_KEYS=[OLD]), pytest.raises(CredentialsUnreadable):
        AlertSettings.objects.get(pk=row.pk).webhook_secret  # noqa: B018


def test_rotation_with_an_unreadable_alert_secret_changes_nothing(make_connector):
    with override_settings(CREDENTIALS_KEYS=[NEW]):
        connector = make_connector("webhook", credentials={"signing_secret": "s1"})
    with override_settings(CREDENTIALS_KEYS=[OLD]):
        row = AlertSettings.current()
        row.webhook_secret = HOOK_SECRET
        row.save()
    connector_before = Connector.objects.get(pk=connector.pk).credentials_encrypted
    with override_settings(CREDENTIALS_KEYS=[NEW]), pytest.raises(CommandError, match="AlertSettings"):
        call_command("rotate_credentials")
    assert Connector.objects.get(pk=connector.pk).credentials_encrypted == connector_before


def test_every_encrypted_column_is_declared_for_rotation():
    declared = {(column.model, column.field) for column in crypto.encrypted_columns()}
    assert {("listening.Connector", "credentials_encrypted"),
            ("insight.AlertSettings", "webhook_secret_encrypted")} <= declared


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_encrypts_existing_plain_alert_secrets():
    executor = MigrationExecutor(connection)
    before = [("learning", "0009_alertsettings_webhook_secret_encrypted")]
    executor.migrate(before)
    try:
        old_state = executor.loader.project_state(before).apps
        OldSettings = old_state.get_model("learning", "AlertSettings")
        OldSettings.objects.all().delete()
        OldSettings.objects.create(webhook_url="https://hooks.example.com/x", webhook_secret=HOOK_SECRET)
        OldSettings.objects.create()  # no secret: stays empty
        executor = MigrationExecutor(connection)
        executor.migrate([("learning", "0011_remove_alertsettings_webhook_secret")])
        with connection.cursor() as cursor:
            cursor.execute("SELECT webhook_secret_encrypted FROM learning_alertsettings ORDER BY id")
            stored = [value for (value,) in cursor.fetchall()]
        assert stored[1] == "" and stored[0] and HOOK_SECRET not in stored[0]
        assert crypto.decrypt_text(stored[0]) == HOOK_SECRET
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
