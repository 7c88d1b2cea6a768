"""Full-text search over notes (responses.search): a GIN index over to_tsvector('simple', text)
on PostgreSQL, an FTS5 table kept in step by triggers on SQLite (listening.search_index)."""

from django.db import migrations

from listening.search_index import Indexed, create, drop

NOTE = Indexed("responses_note", ("text",), "note")  # the same spec as responses.search.NOTE


def forwards(apps, schema_editor):
    create(schema_editor.connection, [NOTE])


def backwards(apps, schema_editor):
    drop(schema_editor.connection, [NOTE])


class Migration(migrations.Migration):
    dependencies = [("responses", "0011_saved_views")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
