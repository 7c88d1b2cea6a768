"""What the app-store review connectors (google_play, app_store) share: the star rating shown at
the start of a review's text, the reviewer as a contact, and a per-process cache of their
short-lived access tokens (never written to the cursor, which is stored in clear)."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from listening.connectors.base import InboundAuthor
from listening.exceptions import PayloadInvalid, ProviderRejected
from listening.sanitize import clean_text

# A token is dropped this long before it expires, so a call never starts with one about to lapse.
EXPIRY_MARGIN_SECONDS = 60


def stars(rating: int) -> str:
    """"★★☆☆☆ (2/5)": readable in the console and in exports, and the number survives either way."""
    return "★" * rating + "☆" * (5 - rating) + f" ({rating}/5)"


def rating_of(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise PayloadInvalid(f"field {where} must be a star rating from 1 to 5")
    return value


def reviewer(review_id: str, name: str) -> InboundAuthor:
    """Neither store says who wrote a review beyond a display name that is not unique ("A Google
    user", a nickname the customer may change). A customer has one review per app, which keeps
    its id through edits, so the review id is the stable key of its author; the name is shown."""
    shown = clean_text(name, 120).strip()
    return InboundAuthor(external_id=f"reviewer:{review_id}", handle=shown, display_name=shown)


class TokenCache:
    """Access tokens by a fingerprint of the credentials that obtained them, until shortly before
    they expire. Thread-safe: several worker threads may poll and send at once."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(key)
        return cached[0] if cached and cached[1] > time.monotonic() else None

    def put(self, key: str, token: str, lifetime_seconds: float) -> None:
        expires = time.monotonic() + max(0.0, lifetime_seconds - EXPIRY_MARGIN_SECONDS)
        with self._lock:
            self._tokens[key] = (token, expires)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


def check_reply(store: str, what: str, review_id: str, text: str, max_chars: int, id_re) -> None:
    """Refuse, before any call, a reply the store would not take: `what` is "reply"/"response"."""
    if not id_re.fullmatch(review_id):
        raise ProviderRejected(f"no {store} review to answer in {review_id[:60]!r}")
    if not text.strip():
        raise ProviderRejected(f"a {store} {what} cannot be empty")
    if len(text) > max_chars:
        raise ProviderRejected(f"{store} {what}s are at most {max_chars} characters; this one is {len(text)}")


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()
