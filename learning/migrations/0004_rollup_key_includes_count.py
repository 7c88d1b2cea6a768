"""On PostgreSQL the rollup key's unique index also carries `count` (INCLUDE), so the dashboards'
sums are index-only scans. SQLite has no INCLUDE and keeps the plain unique constraint; Django's
model state is the plain constraint on both, which ON CONFLICT (the key columns) matches either way."""

from django.db import migrations

COLUMNS = "grain, dim, term_id, bucket, connector_id, channel, lane, language, value"


def _swap(include: bool):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        extra = " INCLUDE (count)" if include else ""
        schema_editor.execute("ALTER TABLE learning_rollup DROP CONSTRAINT rollup_key")
        schema_editor.execute(f"CREATE UNIQUE INDEX rollup_key ON learning_rollup ({COLUMNS}){extra}")
        schema_editor.execute("ALTER TABLE learning_rollup ADD CONSTRAINT rollup_key UNIQUE USING INDEX rollup_key")

    return run


class Migration(migrations.Migration):
    dependencies = [("learning", "0003_insight")]

    operations = [migrations.RunPython(_swap(include=True), _swap(include=False))]
