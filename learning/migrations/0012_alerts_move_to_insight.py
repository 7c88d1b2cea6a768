from django.db import migrations


class Migration(migrations.Migration):
    """Alert and AlertSettings now belong to the insight app (insight 0001 takes them over). State
    only: the tables keep their names and rows, and learning's models no longer point at
    responses.Team."""

    dependencies = [
        ("learning", "0011_remove_alertsettings_webhook_secret"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Alert"),
                migrations.DeleteModel(name="AlertSettings"),
            ],
            database_operations=[],
        ),
    ]
