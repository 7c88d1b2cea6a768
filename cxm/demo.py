"""Demo traffic: realistic inbound messages for a trial install, written for CXM (no dataset is
copied). Fictional brands on a few channels; complaints, questions, praise, mixed feelings,
churn threats, suggestions, spam, several languages, long and emoji-heavy messages, and
follow-ups that continue a customer's thread."""

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

# {brand} and {product} are filled in; a few carry their own language code.
TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "complaint": [
        ("en", "@{brand} my {product} has been broken for three days and nobody answers. Really frustrating."),
        ("en", "Third time this week the {product} from {brand} fails. I want this fixed today."),
        ("en", "{brand} charged me twice for the {product}. Where is my money??"),
        ("en", "Waited 45 minutes on hold with {brand} about my {product}. Unacceptable."),
        ("es", "@{brand} el {product} no funciona desde ayer y nadie me responde. Muy decepcionado."),
        ("fr", "{brand}, votre {product} ne marche plus depuis la mise à jour. Inadmissible !"),
        ("de", "{brand}: {product} funktioniert seit gestern nicht mehr. Bitte dringend beheben."),
        ("pt", "@{brand} o {product} parou de funcionar e ninguém resolve. Que absurdo."),
    ],
    "question": [
        ("en", "Hi {brand}, does the {product} work when I travel abroad?"),
        ("en", "@{brand} quick question: how do I change the email on my {product} account?"),
        ("en", "Is there a student discount on the {product}, {brand}?"),
        ("es", "Hola {brand}, ¿cómo cancelo el {product}?"),
        ("it", "Ciao {brand}, quando arriva il nuovo {product} in Italia?"),
        ("ja", "{brand}さん、{product}の設定方法を教えてください。"),
    ],
    "praise": [
        ("en", "Huge thanks to {brand} — the {product} team sorted everything in five minutes. 🙌"),
        ("en", "Loving the new {product} from {brand}! Best decision this year ❤️❤️"),
        ("en", "Shout-out to Maria at {brand} for rescuing my {product}. Above and beyond!"),
        ("fr", "Merci {brand}, le {product} est parfait. Service client au top !"),
        ("de", "Danke {brand}! Der {product} ist genau richtig. 👍"),
        ("en", "🎉🎉🎉 {brand} {product} 🔥🔥🔥 😍😍😍 🙏"),
    ],
    "ambivalence": [
        ("en", "The {product} from {brand} is nice, but honestly I expected more for the price."),
        ("en", "Not sure about the new {product}, {brand}... some things better, some worse 🤔"),
        ("en", "{brand} used to be my favourite. The {product} lately? Meh."),
        ("es", "El {product} de {brand} está bien, pero la app es un desastre."),
    ],
    "churn": [
        ("en", "If {brand} doesn't fix my {product} by Friday I'm switching to a competitor. Done."),
        ("en", "Cancel my {product}, {brand}. Ten years a customer and this is how you treat me."),
        ("fr", "{brand}, je vais résilier mon {product} si rien ne change."),
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

    def next(self) -> DemoMessage:
        if self.open_threads and self.random.random() < 0.2:
            return self._follow_up()
        lane = self.random.choices(
            list(TEMPLATES), weights=[30, 20, 18, 12, 6, 6, 8], k=1
        )[0]
        language, template = self.random.choice(TEMPLATES[lane])
        brand = self.random.choice(list(BRANDS))
        text = template.format(brand=brand, product=self.random.choice(BRANDS[brand]))
        if lane == "complaint" and self.random.random() < 0.15:
            text += LONG_TAIL
        author = self._author()
        number = next(self.counter)
        payload = {
            "id": f"demo-{self.run_id}-{number}",
            "text": text,
            "author": author,
            "channel": self.random.choice(CHANNELS),
            "thread_id": f"demo-{self.run_id}-thread-{number}",
            "sent_at": datetime.now(tz=UTC).isoformat(),
        }
        if lane in {"complaint", "question", "churn"}:
            self.open_threads.append(payload)
            self.open_threads = self.open_threads[-50:]
        return DemoMessage(payload, lane, language)

    def _follow_up(self) -> DemoMessage:
        parent = self.random.choice(self.open_threads)
        payload = {
            "id": f"demo-{self.run_id}-{next(self.counter)}",
            "text": self.random.choice(FOLLOW_UPS),
            "author": parent["author"],
            "channel": parent["channel"],
            "thread_id": parent["thread_id"],
            "in_reply_to": parent["id"],
            "sent_at": datetime.now(tz=UTC).isoformat(),
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
