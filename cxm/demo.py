"""Demo traffic: realistic inbound messages for a trial install, written for CXM (no dataset is
copied). Fictional brands on a few channels; what customers write to care, by the taxonomy's
intents (problems of every kind, questions, praise, mixed feelings, churn threats, suggestions,
spam), in several languages, long and emoji-heavy messages, and follow-ups that continue a
customer's thread. cxm.demo_history seeds a few past days of the same traffic."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime

BRANDS = {
    "Northwind Air": ["flight", "baggage", "app", "lounge", "seat upgrade"],
    "Lumen Mobile": ["5G plan", "roaming", "bill", "eSIM", "signal"],
    "Bramble & Bean": ["oat latte", "loyalty card", "mobile order", "pastries", "store"],
    "Pixelforge": ["photo editor", "subscription", "sync", "export", "update"],
}

# {brand} and {product} are filled in. Keyed by what the customer wants: the care taxonomy's
# intents (learning.default_intents), plus "mixed" feelings that are no single intent. Each text
# carries its language code.
TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "complaint": [
        ("en", "Waited 45 minutes on hold with {brand} about my {product}. Unacceptable."),
        ("en", "@{brand} nobody answers my emails about the {product}. Really frustrating."),
        ("fr", "{brand}, votre service client pour le {product} est inadmissible !"),
        ("pt", "@{brand} ninguém resolve o problema do {product}. Que absurdo."),
    ],
    "technical_problem": [
        ("en", "@{brand} my {product} has been broken for three days. It crashes every time I open it."),
        ("en", "Third time this week the {product} from {brand} fails. I want this fixed today."),
        ("es", "@{brand} el {product} no funciona desde ayer y nadie me responde. Muy decepcionado."),
        ("de", "{brand}: {product} funktioniert seit gestern nicht mehr. Bitte dringend beheben."),
    ],
    "billing_problem": [
        ("en", "{brand} charged me twice for the {product}. Where is my money??"),
        ("en", "My {product} bill from {brand} is double what it should be this month."),
        ("it", "{brand}, mi avete addebitato due volte il {product}. Come mai?"),
    ],
    "delivery_problem": [
        ("en", "The {product} from {brand} arrived broken and half the order was missing."),
        ("de", "{brand}, mein {product} kam beschädigt an. Was nun?"),
    ],
    "order_status": [
        ("en", "@{brand} where is my {product} order? It said two days, it's been a week."),
        ("fr", "Bonjour {brand}, où en est ma commande de {product} ?"),
    ],
    "refund_request": [
        ("en", "I'd like a refund for the {product}, {brand}. It never worked as promised."),
        ("es", "{brand}, quiero que me devuelvan el dinero del {product}."),
    ],
    "cancellation_request": [
        ("en", "Please cancel my {product} subscription, {brand}. Thanks."),
        ("pt", "{brand}, quero cancelar o meu {product}, por favor."),
    ],
    "account_access": [
        ("en", "@{brand} I'm locked out of my {product} account and the reset code never arrives."),
        ("nl", "{brand}, ik kan niet inloggen op mijn {product} account. Help!"),
    ],
    "question": [
        ("en", "Hi {brand}, does the {product} work when I travel abroad?"),
        ("en", "@{brand} quick question: how do I change the email on my {product} account?"),
        ("es", "Hola {brand}, ¿cómo funciona el {product} con dos usuarios?"),
        ("ja", "{brand}さん、{product}の設定方法を教えてください。"),
    ],
    "store_info": [
        ("en", "What time does the {brand} store open on Sundays? Want to ask about the {product}."),
        ("it", "Ciao {brand}, qual è il numero giusto per il {product}?"),
    ],
    "purchase_interest": [
        ("en", "Is there a student discount on the {product}, {brand}? Thinking of upgrading."),
        ("it", "Ciao {brand}, quando arriva il nuovo {product} in Italia? Lo voglio comprare."),
    ],
    "greeting": [
        ("en", "Hello {brand}, anyone there? I need help with my {product}."),
        ("es", "Hola {brand}, ¿hay alguien? Necesito ayuda."),
    ],
    "praise": [
        ("en", "Huge thanks to {brand} — the {product} team sorted everything in five minutes. 🙌"),
        ("en", "Loving the new {product} from {brand}! Best decision this year ❤️❤️"),
        ("en", "Shout-out to Maria at {brand} for rescuing my {product}. Above and beyond!"),
        ("fr", "Merci {brand}, le {product} est parfait. Service client au top !"),
        ("de", "Danke {brand}! Der {product} ist genau richtig. 👍"),
        ("en", "🎉🎉🎉 {brand} {product} 🔥🔥🔥 😍😍😍 🙏"),
    ],
    "mixed": [
        ("en", "The {product} from {brand} is nice, but honestly I expected more for the price."),
        ("en", "Not sure about the new {product}, {brand}... some things better, some worse 🤔"),
        ("en", "{brand} used to be my favourite. The {product} lately? Meh."),
        ("es", "El {product} de {brand} está bien, pero la app es un desastre."),
    ],
    "churn_threat": [
        ("en", "If {brand} doesn't fix my {product} by Friday I'm switching to a competitor. Done."),
        ("en", "Ten years a {brand} customer and this is how you treat me? I'm leaving for good."),
        ("fr", "{brand}, je vais partir chez un concurrent si rien ne change avec le {product}."),
    ],
    "suggestion": [
        ("en", "Idea for {brand}: let us pause the {product} instead of cancelling it."),
        ("en", "@{brand} please add dark mode to the {product}. My eyes will thank you 😅"),
    ],
    "spam": [
        ("en", "WIN a FREE iPhone!!! click bit.ly/xx-free-prize now #{brand} #giveaway"),
        ("en", "Crypto signals 1000% guaranteed profit DM me 💰💰💰 {brand}"),
        ("en", "Follow for follow? 👉👉 #{brand} #f4f #like4like"),
    ],
}
# How often each kind comes in: mostly problems and questions, some praise, little spam.
WEIGHTS = {"complaint": 8, "technical_problem": 10, "billing_problem": 6, "delivery_problem": 5, "order_status": 7,
           "refund_request": 4, "cancellation_request": 3, "account_access": 4, "question": 9, "store_info": 3,
           "purchase_interest": 4, "greeting": 3, "praise": 14, "mixed": 8, "churn_threat": 3, "suggestion": 4,
           "spam": 5}
# Kinds that leave a customer waiting for an answer (they may write again).
ASKING = {"complaint", "technical_problem", "billing_problem", "delivery_problem", "order_status", "refund_request",
          "cancellation_request", "account_access", "question", "greeting", "churn_threat"}

FOLLOW_UPS = [
    "Any update on this? Still waiting.",
    "Thanks, that worked!",
    "I sent you a DM with my order number.",
    "Still broken. Please escalate.",
    "Ok, tried that, no luck 😞",
]

LONG_TAIL = (
    " Some context: I've been a customer for years, I use it every day for work and family, "
    "and I've tried everything the help pages suggest — restarting, reinstalling, logging out and "
    "in again, even calling the shop. Each time I'm told someone will get back to me and nobody "
    "does. I'm writing here because I honestly don't know what else to do."
)

CHANNELS = ["web", "email", "app_review", "chat"]
FIRST = ["Ada", "Bo", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jules", "Kemal", "Lea"]
LAST = ["Moreau", "Silva", "Okafor", "Tanaka", "Novak", "Berg", "Rossi", "Haddad", "Kowalski"]


@dataclass
class DemoMessage:
    payload: dict
    lane_hint: str
    language: str


class DemoTraffic:
    """An endless, reproducible stream of demo deliveries for the generic webhook."""

    def __init__(self, seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.counter = itertools.count(1)
        self.open_threads: list[dict] = []
        self.run_id = f"{self.random.getrandbits(32):08x}"

    def next(self, at: datetime | None = None) -> DemoMessage:
        """The next delivery, sent now or at `at` (the seeded history)."""
        at = at or datetime.now(tz=UTC)
        if self.open_threads and self.random.random() < 0.2:
            return self._follow_up(at)
        kind = self.random.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=1)[0]
        language, template = self.random.choice(TEMPLATES[kind])
        brand = self.random.choice(list(BRANDS))
        text = template.format(brand=brand, product=self.random.choice(BRANDS[brand]))
        if kind in ("complaint", "technical_problem") and self.random.random() < 0.15:
            text += LONG_TAIL
        author = self._author()
        number = next(self.counter)
        payload = {
            "id": f"demo-{self.run_id}-{number}",
            "text": text,
            "author": author,
            "channel": self.random.choice(CHANNELS),
            "thread_id": f"demo-{self.run_id}-thread-{number}",
            "sent_at": at.isoformat(),
        }
        if kind in ASKING:
            self.open_threads.append(payload)
            self.open_threads = self.open_threads[-50:]
        return DemoMessage(payload, kind, language)

    def _follow_up(self, at: datetime) -> DemoMessage:
        parent = self.random.choice(self.open_threads)
        payload = {
            "id": f"demo-{self.run_id}-{next(self.counter)}",
            "text": self.random.choice(FOLLOW_UPS),
            "author": parent["author"],
            "channel": parent["channel"],
            "thread_id": parent["thread_id"],
            "in_reply_to": parent["id"],
            "sent_at": at.isoformat(),
        }
        return DemoMessage(payload, "follow_up", "en")

    def _author(self) -> dict:
        first, last = self.random.choice(FIRST), self.random.choice(LAST)
        handle = f"{first.lower()}{last.lower()}{self.random.randint(1, 99)}"
        return {
            "id": handle,
            "handle": f"@{handle}",
            "name": f"{first} {last}",
            "followers": int(self.random.paretovariate(1.2) * 40),
        }
