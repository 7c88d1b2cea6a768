"""Messages' search document in a stored generated tsvector column with its GIN index, in place of
the expression index (PostgreSQL only; SQLite keeps its FTS5 table). With the expression index a
search for a common word, which PostgreSQL answers by walking the newest messages, recomputed
to_tsvector for every row it passed (listening.search_index explains). Rewrites the table once."""

from dataclasses import replace

from django.db import migrations

from listening.search_index import MESSAGE, pg_create, pg_drop


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in pg_create(MESSAGE):
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in [*pg_drop(MESSAGE), *pg_create(replace(MESSAGE, stored=""))]:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("listening", "0010_customer_proactive_opt_out")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
