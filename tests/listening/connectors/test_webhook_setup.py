"""What the admin pages need from the generic webhook: the connect form's words, a "test connection"
whose instructions really sign a delivery the hook accepts (run in a shell against a live server),
and no backfill."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from listening.connectors.webhook import GenericWebhookConnector
from listening.exceptions import NotSupported, SecretNotConfigured
from listening.models import Connector, Message

SECRET = "s3cret-for-the-connect-page"


@pytest.fixture
def connector(make_connector):
    return make_connector("webhook", slug="site-chat", credentials={"signing_secret": SECRET})


def test_webhook_connect_form_explains_every_key_and_requires_the_secret():
    assert set(GenericWebhookConnector.config_help) == set(GenericWebhookConnector.config_defaults)
    assert set(GenericWebhookConnector.credential_help) == set(GenericWebhookConnector.credential_fields)
    assert GenericWebhookConnector.required_credentials == ("signing_secret",)


def test_webhook_check_says_how_to_sign_a_test_delivery_without_the_secret(connector, settings):
    settings.CXM_PUBLIC_URL = "https://cxm.example.com"
    said = connector.get_backend().check_connection()
    first, command = said.split("\n")
    assert first == ("The signing secret is set. No callback_url is set, so replies cannot be sent. To send a test "
                     "delivery, run this in a shell with SECRET set to the signing secret:")
    assert "curl -fsS -X POST 'https://cxm.example.com/hooks/site-chat/'" in command
    assert SECRET not in said


def test_webhook_check_names_the_callback_without_its_query(make_connector):
    row = make_connector("webhook", credentials={"signing_secret": SECRET},
                         config={"callback_url": "https://crm.example.com/cxm/replies?key=abc123"})
    said = row.get_backend().check_connection()
    assert "Replies are POSTed to https://crm.example.com/cxm/replies." in said
    assert "abc123" not in said


def test_webhook_check_without_a_secret_fails(make_connector):
    row = make_connector("webhook")
    with pytest.raises(SecretNotConfigured, match="signing_secret"):
        row.get_backend().check_connection()


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl")
@pytest.mark.django_db(transaction=True)
def test_webhook_checks_test_delivery_command_is_accepted_by_the_hook(make_connector, live_server, settings):
    settings.CXM_PUBLIC_URL = live_server.url
    settings.CXM_CLASSIFY_ON_INGEST = False  # eager classification would load the models for one message
    row = make_connector("webhook", slug="site-chat", credentials={"signing_secret": SECRET})
    command = row.get_backend().check_connection().split("\n")[1]
    for _ in range(2):  # the same test delivery twice is stored once
        done = subprocess.run(["bash", "-c", command], env={**os.environ, "SECRET": SECRET}, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert done.stdout == '{"stored": 0, "duplicates": 1}'
    message = Message.objects.get(connector=row)
    assert (message.external_id, message.text) == ("cxm-test-delivery", "Test delivery from the connect page")

    wrong = subprocess.run(["bash", "-c", command], env={**os.environ, "SECRET": "not-it"}, capture_output=True,
                           text=True, timeout=30)
    assert wrong.returncode != 0 and "403" in wrong.stderr


def test_webhook_backfill_is_refused_with_what_to_do_instead(connector):
    with pytest.raises(NotSupported, match="POST older ones the same way, or import them from a file"):
        connector.get_backend().backfill(datetime(2026, 10, 1, tzinfo=UTC), {})


def test_webhook_check_of_an_unsaved_connector_names_a_placeholder_hook(db, settings):
    settings.CXM_PUBLIC_URL = "https://cxm.example.com"
    row = Connector(kind="webhook", name="Site chat")  # tested from the connect form before saving
    row.credentials = {"signing_secret": SECRET}
    assert "'https://cxm.example.com/hooks/<slug>/'" in row.get_backend().check_connection()
