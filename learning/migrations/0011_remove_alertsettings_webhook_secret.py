from django.db import migrations


class Migration(migrations.Migration):
    """The plain column, emptied by 0010."""

    dependencies = [
        ("learning", "0010_encrypt_alert_webhook_secrets"),
    ]

    operations = [
        migrations.RemoveField(model_name="alertsettings", name="webhook_secret"),
    ]
