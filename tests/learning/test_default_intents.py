"""The shipped care taxonomy: its size and language mix, and the migration that brings existing
installs to it without undoing admins' work."""

import importlib
from collections import Counter

import pytest
from django.apps import apps

from learning.default_intents import DEFAULT_INTENTS, read_examples
from learning.models import Intent, IntentExample

pytestmark = pytest.mark.django_db

EUROPEAN = {"es", "fr", "de", "pt", "it"}
MORE = {"ar", "hi", "ja", "nl", "tr"}


def test_default_taxonomy_is_a_readable_size_with_human_names():
    slugs = [spec["slug"] for spec in DEFAULT_INTENTS]
    assert 14 <= len(slugs) <= 18 and len(set(slugs)) == len(slugs)
    for spec in DEFAULT_INTENTS:
        assert spec["name"] and spec["name"] != spec["slug"]
        assert spec["description"].endswith(".") and spec["description"].count(". ") <= 1
        assert spec["lane"] in {"", "issue", "praise", "ambivalence", "noise", "follow"}
        assert 0 <= spec["priority_weight"] <= 0.6
    lanes = {spec["slug"]: spec["lane"] for spec in DEFAULT_INTENTS}
    assert lanes["greeting"] in {"", "issue"}  # an opener wants attention, never noise
    assert [s for s, lane in lanes.items() if lane == "noise"] == ["spam"]


def test_default_examples_are_many_multilingual_and_unambiguous():
    seen: dict[str, str] = {}
    for spec in DEFAULT_INTENTS:
        pairs = read_examples(spec["slug"])
        langs = Counter(lang for lang, _ in pairs)
        assert len(pairs) >= 40, spec["slug"]
        assert sum(langs[lang] for lang in EUROPEAN) * 4 >= len(pairs), (spec["slug"], langs)
        assert set(langs) >= EUROPEAN | MORE, (spec["slug"], set(langs))
        assert all(len(lang) == 2 and lang.isalpha() for lang in langs), spec["slug"]
        for _, text in pairs:
            key = " ".join(text.lower().split())
            assert 0 < len(text) <= 500
            assert seen.setdefault(key, spec["slug"]) == spec["slug"], f"{text!r} in two intents"
            seen[key] = spec["slug"]


def test_default_intents_are_installed_with_follow_up_off_the_dashboards():
    installed = {i.slug: i for i in Intent.objects.all()}
    assert {spec["slug"] for spec in DEFAULT_INTENTS} <= set(installed)
    assert installed["follow_up"].counts_on_dashboards is False
    assert installed["complaint"].counts_on_dashboards is True
    for spec in DEFAULT_INTENTS:
        stored = set(IntentExample.objects.filter(intent__slug=spec["slug"], source="default")
                     .values_list("text", flat=True))
        assert stored == set(spec["examples"]), spec["slug"]


def test_taxonomy_migration_replaces_shipped_examples_and_keeps_admin_edits():
    migration = importlib.import_module("learning.migrations.0008_care_taxonomy")
    complaint = Intent.objects.get(slug="complaint")
    old_name, old_description, _, _ = migration.PREVIOUSLY_SHIPPED["complaint"]
    # An install from before: the old shipped name, an admin's own description, old examples.
    complaint.name, complaint.description = old_name, "Our own words for complaints"
    complaint.save()
    Intent.objects.filter(slug="suggestion").update(name="Ideas from customers", lane="ambivalence")
    Intent.objects.filter(slug="purchase_interest").update(
        lane=migration.PREVIOUSLY_SHIPPED["purchase_interest"][2], counts_on_dashboards=False)
    Intent.objects.filter(slug="greeting").delete()
    IntentExample.objects.filter(source="default").delete()
    IntentExample.objects.create(intent=complaint, text="an example shipped long ago", source="default")
    IntentExample.objects.create(intent=complaint, text="an admin's example", source="admin")
    IntentExample.objects.create(intent=complaint, text="an agent's correction", source="correction")

    migration.update_taxonomy(apps, None)

    complaint.refresh_from_db()
    spec = {s["slug"]: s for s in DEFAULT_INTENTS}
    assert complaint.name == spec["complaint"]["name"]  # still the old shipped value: updated
    assert complaint.description == "Our own words for complaints"  # an admin's edit wins
    suggestion = Intent.objects.get(slug="suggestion")
    assert suggestion.name == "Ideas from customers"
    purchase = Intent.objects.get(slug="purchase_interest")
    assert purchase.lane == spec["purchase_interest"]["lane"] and purchase.counts_on_dashboards is True
    greeting = Intent.objects.get(slug="greeting")
    assert (greeting.lane, greeting.examples.count()) == (spec["greeting"]["lane"], len(spec["greeting"]["examples"]))
    texts = set(complaint.examples.values_list("text", flat=True))
    assert "an example shipped long ago" not in texts
    assert {"an admin's example", "an agent's correction"} <= texts
    assert set(spec["complaint"]["examples"]) <= texts


def test_install_on_an_empty_database_sets_the_dashboard_flag():
    from learning.default_intents import install
    from learning.models import PriorityWeights

    Intent.objects.all().delete()
    install(Intent, IntentExample, PriorityWeights)
    install(Intent, IntentExample, PriorityWeights)  # twice: nothing doubles
    flags = dict(Intent.objects.values_list("slug", "counts_on_dashboards"))
    assert len(flags) == len(DEFAULT_INTENTS) and flags["follow_up"] is False and flags["greeting"] is True
    assert IntentExample.objects.count() == sum(len(spec["examples"]) for spec in DEFAULT_INTENTS)
