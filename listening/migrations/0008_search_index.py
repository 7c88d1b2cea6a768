"""Full-text search over messages, contacts and customers (read by responses.search): GIN
indexes over to_tsvector('simple', ...) on PostgreSQL, FTS5 tables kept in step by triggers on
SQLite. The SQL lives in listening.search_index, shared with the post_migrate check."""

from django.db import migrations

from listening.search_index import LISTENING_TABLES, create, drop


def forwards(apps, schema_editor):
    create(schema_editor.connection, LISTENING_TABLES)


def backwards(apps, schema_editor):
    drop(schema_editor.connection, LISTENING_TABLES)


class Migration(migrations.Migration):
    dependencies = [("listening", "0007_signals_devices_customer_tags")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
