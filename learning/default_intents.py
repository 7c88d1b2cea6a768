"""The default customer-care intent taxonomy that CXM ships with.

The taxonomy answers a brand manager's question "what do our customers want from us?", so each
intent is something a care lead would staff for or fix upstream: a technical fault, a billing
error, a broken delivery, a refund, a cancellation... A follow-up ("order number 48213") is a fact
about the conversation, not something the customer wants: it keeps its lane ("follow") but is kept
out of the dashboards' intent distribution (``counts_on_dashboards``). Spam and churn threats are
rare in real care traffic, so their examples are unmistakable: spam is promotions, scams, crypto,
follow-for-follow, adult links and news; a churn threat says outright that the customer is
leaving. An angry complaint without that is a complaint; a suggestion that mentions pausing or
changing a plan is a suggestion, not a cancellation.

The examples were written for CXM by hand, as a care lead would, in the register of tweets, DMs,
emails and app reviews across industries and in several languages; they are not taken from any
data set. They live in ``learning/intent_examples/<slug>.txt``, one per line as ``<lang> <text>``
(ISO 639-1 code, a space, the text), so that the language mix can be checked and extended without
touching code. A data migration installs them as Intent and IntentExample rows (source "default");
from then on they are ordinary data that admins rename, disable, reweight or extend in the admin,
and the intent head is refitted from whatever is stored there.

Each entry has:

- ``slug``: stable identifier, used by code and by agents' corrections.
- ``name`` and ``description``: what admins, agents and brand managers see.
- ``lane``: the lane the intent points to ("issue", "praise", "ambivalence", "noise", or "follow" to
  keep the lane of the conversation the message continues), or "" to let the sentiment decide (a
  neutral question still lands in issue: it wants an answer; see learning.lanes).
- ``priority_weight``: 0 to 0.6, how much the intent raises a message's priority (see
  learning.priority); a churn threat outranks a question, praise and spam add nothing.
- ``counts_on_dashboards``: False for facts about the conversation rather than intents.
"""

from functools import cache
from pathlib import Path

EXAMPLES_DIR = Path(__file__).with_name("intent_examples")

TAXONOMY = [
    ("complaint", "Complaint about service",
     "A bad experience with staff, waiting times, support or the quality of a service, other than a "
     "billing, delivery, technical or access problem.", "issue", 0.35),
    ("technical_problem", "Technical problem or outage",
     "Something does not work: the app crashes, the site is down, no signal, no internet, roaming or "
     "a device fails.", "issue", 0.35),
    ("billing_problem", "Billing or payment problem",
     "A wrong, double or unexpected charge, a failed payment, or an error on an invoice or bill.", "issue", 0.35),
    ("delivery_problem", "Damaged, wrong or missing item",
     "What arrived is broken, wrong, incomplete or cold, or luggage or a parcel went astray.", "issue", 0.3),
    ("order_status", "Order or delivery status",
     "Where an order, parcel, booking, repair or claim is, or when it will arrive.", "issue", 0.25),
    ("refund_request", "Refund request",
     "The customer asks for their money back, a reimbursement or compensation, or where a refund is.",
     "issue", 0.35),
    ("cancellation_request", "Cancellation request",
     "An explicit request to end a subscription, contract, account or booking, or to cancel an order.",
     "issue", 0.3),
    ("account_access", "Account access",
     "The customer cannot log in, is locked out, gets no verification code or fears a hacked account.",
     "issue", 0.4),
    ("question", "How-to question",
     "The customer asks how to do something or how a product, plan or policy works.", "", 0.1),
    ("store_info", "Store, hours or contact info",
     "Opening hours, store or branch locations, addresses and the right number or address to contact.", "", 0.05),
    ("purchase_interest", "Purchase interest or availability",
     "The customer considers buying or upgrading and asks about prices, plans, stock or availability.", "", 0.15),
    ("praise", "Praise or thanks",
     "The customer thanks the brand or praises a product, a service or an employee.", "praise", 0.0),
    ("suggestion", "Suggestion or feature request",
     "An idea for an improvement, a new feature, product or option (such as pausing or changing a plan "
     "instead of cancelling it).", "ambivalence", 0.05),
    ("churn_threat", "Churn threat",
     "The customer says outright that they are leaving, switching to a competitor or closing their "
     "account because they are unhappy.", "issue", 0.6),
    ("greeting", "Greeting or opener",
     "A low-information opener (\"hi\", \"anyone there?\", \"I need help\") from a customer who wants "
     "attention and has not yet said why.", "issue", 0.05),
    ("follow_up", "Follow-up in a conversation",
     "Details, confirmations or acknowledgements sent while a conversation is under way; the message "
     "keeps the conversation's lane and is left out of the intent distribution.", "follow", 0.05),
    ("spam", "Spam or unrelated",
     "Promotions, scams, crypto, follow-for-follow, adult links or news not addressed to the brand; "
     "nothing for care to do.", "noise", 0.0),
]

NOT_ON_DASHBOARDS = {"follow_up"}


def read_examples(slug: str) -> list[tuple[str, str]]:
    """(language, text) pairs of one intent's shipped examples, in file order."""
    pairs = []
    for line in (EXAMPLES_DIR / f"{slug}.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            lang, _, text = line.partition(" ")
            pairs.append((lang, text.strip()))
    return pairs


@cache
def default_intents() -> tuple[dict, ...]:
    return tuple(
        {"slug": slug, "name": name, "description": description, "lane": lane, "priority_weight": weight,
         "counts_on_dashboards": slug not in NOT_ON_DASHBOARDS,
         "examples": [text for _, text in read_examples(slug)]}
        for slug, name, description, lane, weight in TAXONOMY
    )


DEFAULT_INTENTS = default_intents()
SHIPPED_FIELDS = ("name", "description", "lane", "priority_weight")


def _has_field(model, name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


def install(intent_model, example_model, weights_model) -> None:
    """Create the default intents, their examples and the priority weights row where missing.
    Takes the model classes so the data migrations can pass their historical ones (older ones lack
    counts_on_dashboards; the migration that adds it sets it)."""
    fields = SHIPPED_FIELDS + (("counts_on_dashboards",) if _has_field(intent_model, "counts_on_dashboards") else ())
    for spec in DEFAULT_INTENTS:
        intent, _ = intent_model.objects.get_or_create(slug=spec["slug"], defaults={k: spec[k] for k in fields})
        example_model.objects.bulk_create(
            [example_model(intent=intent, text=text, source="default") for text in spec["examples"]],
            ignore_conflicts=True,
        )
    if not weights_model.objects.exists():
        weights_model.objects.create()
