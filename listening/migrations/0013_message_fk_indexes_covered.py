"""Drop Message's single-column indexes on connector, conversation and author: the unique
(connector, external_id) constraint and the (connector|conversation|author, sent_at) indexes lead
with the same columns and serve the same lookups, including the foreign keys' checks on delete,
while every index is upkeep on each insert (see bench/README.md, "Where the time goes: file import").

Only the indexes are dropped. Left to itself, Django's AlterField would also drop and re-add
each foreign key constraint, which re-validates it over the whole table: minutes of locks on a
large message table for nothing."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "listening_message_author_id_800ac374": "author_id",
    "listening_message_connector_id_eab1e5a6": "connector_id",
    "listening_message_conversation_id_6061e03b": "conversation_id",
}


class Migration(migrations.Migration):

    dependencies = [
        ("listening", "0012_customer_channel_time_zone"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "listening_message" ("{column}")',
                )
                for name, column in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="author",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="messages", to="listening.contact"),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="connector",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="messages", to="listening.connector"),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="conversation",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="messages", to="listening.conversation"),
                ),
            ],
        ),
    ]
