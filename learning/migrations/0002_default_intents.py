"""Install the default care intents and their examples (learning/default_intents.py), and the
priority weights row. Admins edit both afterwards; reversing removes only what was shipped."""

from django.db import migrations


def install(apps, schema_editor):
    from learning.default_intents import DEFAULT_INTENTS

    Intent = apps.get_model("learning", "Intent")
    IntentExample = apps.get_model("learning", "IntentExample")
    PriorityWeights = apps.get_model("learning", "PriorityWeights")
    for spec in DEFAULT_INTENTS:
        intent, _ = Intent.objects.get_or_create(
            slug=spec["slug"],
            defaults={k: spec[k] for k in ("name", "description", "lane", "priority_weight")},
        )
        IntentExample.objects.bulk_create(
            [IntentExample(intent=intent, text=text, source="default") for text in spec["examples"]],
            ignore_conflicts=True,
        )
    if not PriorityWeights.objects.exists():
        PriorityWeights.objects.create()


def uninstall(apps, schema_editor):
    apps.get_model("learning", "IntentExample").objects.filter(source="default").delete()


class Migration(migrations.Migration):
    dependencies = [("learning", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
