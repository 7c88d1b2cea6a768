"""Bring existing installs to the reworked care taxonomy (learning/default_intents.py): new intents
(technical and billing problems, damaged or missing items, store info, greetings), multilingual
examples, follow-up kept off the dashboards' intent distribution.

For each shipped intent, the examples with source "default" are replaced by the new ones; examples
that admins added or agents' corrections taught are never touched. A name, description, lane or
priority weight is updated only where it still holds the value shipped before this migration: an
admin's edit wins. Intents admins created themselves are left alone.

Reverse is a no-op on purpose: the old shipped examples are gone from the code, and the reworked
taxonomy works with the older schema (reversing 0007 drops counts_on_dashboards)."""

from django.db import migrations

# What learning/default_intents.py shipped before this migration, to tell admins' edits apart.
PREVIOUSLY_SHIPPED = {
    "complaint": ("Complaint", "The customer reports a problem, a fault or a bad experience with a product or service.",
                  "issue", 0.35),
    "question": ("Question", "The customer asks for information or help on how something works, without a "
                 "specific request.", "", 0.1),
    "refund_request": ("Refund request", "The customer asks for their money back, a reimbursement or compensation.",
                       "issue", 0.35),
    "cancellation_request": ("Cancellation request", "The customer asks to cancel an order, a subscription, a "
                             "booking or an account.", "issue", 0.3),
    "order_status": ("Order or delivery status", "The customer asks where their order, delivery, parcel or booking "
                     "is, or what its status is.", "issue", 0.25),
    "account_access": ("Account access", "The customer cannot log in, is locked out, needs a password reset or "
                       "fears a hacked account.", "issue", 0.4),
    "praise": ("Praise or thanks", "The customer thanks the brand or praises a product, a service or an employee.",
               "praise", 0.0),
    "suggestion": ("Suggestion or feature request", "The customer suggests an improvement or asks for a new "
                   "feature, product or option.", "ambivalence", 0.05),
    "purchase_interest": ("Purchase interest", "The customer is considering buying or upgrading and asks about "
                          "prices, plans or availability.", "ambivalence", 0.15),
    "churn_threat": ("Churn threat", "The customer threatens to leave, switch to a competitor or cancel because "
                     "they are unhappy.", "issue", 0.6),
    "follow_up": ("Follow-up in a conversation", "Details, confirmations or acknowledgements sent while a "
                  "conversation is under way; the message keeps the conversation's lane.", "follow", 0.05),
    "spam": ("Spam or irrelevant", "Promotions, scams, follow-for-follow and chatter not about the brand; nothing "
             "for care to do.", "noise", 0.0),
}


def update_taxonomy(apps, schema_editor):
    from learning.default_intents import DEFAULT_INTENTS, SHIPPED_FIELDS

    Intent = apps.get_model("learning", "Intent")
    IntentExample = apps.get_model("learning", "IntentExample")
    for spec in DEFAULT_INTENTS:
        intent = Intent.objects.filter(slug=spec["slug"]).first()
        if intent is None:
            intent = Intent.objects.create(slug=spec["slug"], counts_on_dashboards=spec["counts_on_dashboards"],
                                           **{k: spec[k] for k in SHIPPED_FIELDS})
        else:
            old = dict(zip(SHIPPED_FIELDS, PREVIOUSLY_SHIPPED.get(spec["slug"], ()), strict=False))
            for field in SHIPPED_FIELDS:
                if field in old and getattr(intent, field) == old[field]:
                    setattr(intent, field, spec[field])
            # The flag is new: nobody has set it yet.
            intent.counts_on_dashboards = spec["counts_on_dashboards"]
            intent.save()
        IntentExample.objects.filter(intent=intent, source="default").delete()
        IntentExample.objects.bulk_create(
            [IntentExample(intent=intent, text=text, source="default") for text in spec["examples"]],
            ignore_conflicts=True,  # an admin or correction example with the same text stays as it is
        )


class Migration(migrations.Migration):
    dependencies = [("learning", "0007_intent_counts_on_dashboards")]
    operations = [migrations.RunPython(update_taxonomy, migrations.RunPython.noop)]
