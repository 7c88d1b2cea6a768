from django.db import migrations, models


class Migration(migrations.Migration):
    """A column for the alert webhook's secret, encrypted; 0010 moves the plain values into it and
    0011 drops the plain column."""

    dependencies = [
        ("learning", "0008_care_taxonomy"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertsettings",
            name="webhook_secret_encrypted",
            field=models.TextField(blank=True, default="", editable=False),
        ),
    ]
