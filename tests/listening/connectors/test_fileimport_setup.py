"""What the admin pages need from the file import connector: the connect form's words, a "test
connection" that calls nobody but checks the mapping, and no backfill."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from listening.connectors.fileimport import FIELDS, FileImportConnector
from listening.exceptions import ConfigInvalid, NotSupported


def test_fileimport_connect_form_explains_every_key_and_names_the_fields():
    assert set(FileImportConnector.config_help) == set(FileImportConnector.config_defaults)
    assert (FileImportConnector.credential_help, FileImportConnector.required_credentials) == ({}, ())
    assert all(field in FileImportConnector.config_help["mapping"] for field in FIELDS)


def test_fileimport_check_calls_nothing_and_checks_the_mapping(make_connector):
    row = make_connector("import", slug="twcs", config={"mapping": {"id": "tweet_id", "text": "text"}})
    assert row.get_backend().check_connection() == (
        "Nothing to call: a file import reads the CSV or JSONL files you give it (python manage.py import_messages "
        "<file> --connector twcs). The column mapping is valid.")
    broken = make_connector("import", config={"mapping": {"body": "text"}})
    with pytest.raises(ConfigInvalid, match="unknown fields in mapping: body"):
        broken.get_backend().check_connection()


def test_fileimport_backfill_is_refused_with_what_to_do_instead(make_connector):
    with pytest.raises(NotSupported, match="import a file of the older messages"):
        make_connector("import").get_backend().backfill(datetime(2026, 10, 1, tzinfo=UTC), {})
