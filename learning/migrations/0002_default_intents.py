"""Install the default care intents and their examples (learning/default_intents.py), and the
priority weights row. Admins edit both afterwards; reversing removes only what was shipped."""

from django.db import migrations


def install(apps, schema_editor):
    from learning.default_intents import install as install_defaults

    install_defaults(*(apps.get_model("learning", name) for name in ("Intent", "IntentExample", "PriorityWeights")))


def uninstall(apps, schema_editor):
    apps.get_model("learning", "IntentExample").objects.filter(source="default").delete()


class Migration(migrations.Migration):
    dependencies = [("learning", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
