"""Text normalisation shared by training and inference, so the model sees at run time what it saw
when it was trained (TweetEval's conventions: @user for mentions, URLs dropped)."""

import re
import unicodedata

MAX_CHARS = 2000  # a model reads at most ~128 tokens; longer text is cut here and flagged

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w{1,50}")
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(text) -> str:
    """The original text, made safe to process (no lone surrogates or NULs) and cut to MAX_CHARS.
    Topics and entities are matched on this, so their offsets point into what the customer wrote
    and brand mentions such as @Acme are kept."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return _SURROGATE.sub("\ufffd", text[:MAX_CHARS]).replace("\x00", " ")


def normalize(text: str) -> tuple[str, list[str]]:
    """Return the text a model should read, and flags describing what was done to it."""
    flags: list[str] = []
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
        flags.append("invalid_unicode")
    if "\ufffd" in text and "invalid_unicode" not in flags:
        flags.append("invalid_unicode")
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        flags.append("truncated")
    text = unicodedata.normalize("NFC", text.replace("\x00", ""))
    text = _URL.sub("http", text)
    text = _MENTION.sub("@user", text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        flags.append("empty")
    return text, flags
