"""Care rollup rows in shards: each routing transaction wrote the same summed day and month rows of
its team and held them to its commit, so concurrent routing workers took turns (insight.care_rollup,
SHARDS). The key gains a shard (0 for every row there is); the triggers write the one their
transaction id picks. Back: the shards are folded into shard 0 and the triggers write one row per key."""

from django.db import migrations, models

from insight import care_rollup

FOLD = """
CREATE TEMPORARY TABLE care_fold ON COMMIT DROP AS
SELECT grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id, bin, sum(n) AS n
FROM insight_carerollup GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;
DELETE FROM insight_carerollup;
INSERT INTO insight_carerollup (grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id, bin, n)
SELECT * FROM care_fold WHERE n <> 0;
DROP TABLE care_fold;
"""


def _install(sharded: bool):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                if not sharded:
                    cursor.execute(FOLD)
                cursor.execute(care_rollup.triggers_sql(sharded))
    return run


class Migration(migrations.Migration):

    dependencies = [
        ("insight", "0004_care_unanswered_covering"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="carerollup", name="care_rollup_key"),
        migrations.AddField(model_name="carerollup", name="shard", field=models.SmallIntegerField(db_default=0)),
        migrations.AddConstraint(
            model_name="carerollup",
            constraint=models.UniqueConstraint(
                fields=("grain", "detail", "team_id", "bucket", "connector_id", "channel", "lane", "metric",
                        "user_id", "bin", "shard"),
                name="care_rollup_key"),
        ),
        # Back, first: shards folded into the rows the old key allows, and the old triggers.
        migrations.RunPython(_install(True), _install(False)),
    ]
