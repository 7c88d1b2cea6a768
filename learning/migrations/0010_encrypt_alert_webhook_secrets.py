from django.db import migrations

from listening import crypto


def encrypt_plain_secrets(apps, schema_editor):
    """Encrypt every plain webhook secret into webhook_secret_encrypted, with the newest key."""
    AlertSettings = apps.get_model("learning", "AlertSettings")
    for row in AlertSettings.objects.exclude(webhook_secret=""):
        row.webhook_secret_encrypted = crypto.encrypt_text(row.webhook_secret)
        row.webhook_secret = ""
        row.save(update_fields=["webhook_secret", "webhook_secret_encrypted"])


def decrypt_back(apps, schema_editor):
    AlertSettings = apps.get_model("learning", "AlertSettings")
    for row in AlertSettings.objects.exclude(webhook_secret_encrypted=""):
        row.webhook_secret = crypto.decrypt_text(row.webhook_secret_encrypted)
        row.webhook_secret_encrypted = ""
        row.save(update_fields=["webhook_secret", "webhook_secret_encrypted"])


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0009_alertsettings_webhook_secret_encrypted"),
    ]

    operations = [
        migrations.RunPython(encrypt_plain_secrets, decrypt_back),
    ]
