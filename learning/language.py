"""Offline language detection for every message, with py3langid (a naive Bayes model over byte
n-grams: about 0.1 ms for a short message, no network, no GPU).

`detect(texts)` returns one (code, confidence) pair per text: an ISO 639-1 code where the language
has one, else the ISO 639-3 code that BCP-47 uses for it, or "und" (undetermined) when the text
has no language to detect or is too short to tell. The confidence is the model's probability for
its best language (0.0 when nothing was detected).
"""

import functools
import logging
import re
import threading
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)

UNDETERMINED = "und"
MAX_CHARS = 1000  # langid's accuracy stops improving long before this; its cost grows with length
# Short texts ("ok", "hola", "thanks") often get a confident-looking wrong guess. Below these many
# letters, a guess under SHORT_MIN_CONFIDENCE is reported as undetermined. Measured on short care
# messages: guesses under 0.2 were wrong about as often as right; above it, mostly right.
SHORT_LETTERS = 40
SHORT_MIN_CONFIDENCE = 0.2
# At any length, a best guess this close to uniform (about 0.014 for featureless text) is noise:
# 1000 times "a", or a few words of three languages mixed.
MIN_CONFIDENCE = 0.1

# The model knows some varieties under their ISO 639-3 code; where the macrolanguage has an
# ISO 639-1 code, routing and dashboards want that one (Egyptian Arabic is still Arabic).
_TO_ISO639_1 = {
    "ary": "ar", "arz": "ar", "uzs": "uz", "gug": "gn", "fuv": "ff", "kik": "ki", "sdh": "ku",
    "wuu": "zh", "yue": "zh",
}
# A short message in a major language is often ranked as a close minority relative: Portuguese or
# Spanish as Galician, Italian as Venetian or Ligurian, English as Nigerian Pidgin. Below this many
# letters such a guess is read as the likeliest of its major relatives (their probabilities joined),
# which is what routing by an agent's languages needs. Longer text keeps its guess.
RELATIVE_LETTERS = 120
_MAJOR_RELATIVES = {
    "gl": ("pt", "es"), "an": ("es",), "ext": ("es",), "ast": ("es",), "lij": ("it",), "vec": ("it",),
    "pcm": ("en",), "gcf": ("fr",), "gcr": ("fr",), "wa": ("fr",), "oc": ("fr", "ca", "es"), "fy": ("nl",),
    "lb": ("de",), "nn": ("no",), "bcl": ("tl",), "guw": ("en",),
}
# "zxx" is the model's class for numbers, markup and identifiers: no language, so undetermined.
_NOT_A_LANGUAGE = {"zxx", UNDETERMINED}

# Cheap pre-cut so the regexes below never scan a 100k-character message.
_RAW_CUT = MAX_CHARS * 4
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MENTION = re.compile(r"(?<![\w@])@\w+")
# Emoji carry no language but feed langid byte n-grams that pull it towards noise classes.
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0e\ufe0f\u200d]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_SPACE = re.compile(r"\s+")

_identifier = None
_lock = threading.Lock()


def detect(texts: list[str]) -> list[tuple[str, float]]:
    """(language, confidence) per text, in order. Never raises on odd text."""
    return [_detect_one(text) for text in texts]


@functools.cache  # read for every classified batch; a package's metadata lookup costs ~1 ms
def model_name() -> str:
    try:
        return f"py3langid {version('py3langid')}"
    except PackageNotFoundError:
        return "py3langid"


def _identifier_or_load():
    """The langid model, loaded on first use (about a second) and kept for the process."""
    global _identifier
    if _identifier is None:
        with _lock:  # threads of one worker must not each load the model
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def _detect_one(text) -> tuple[str, float]:
    cleaned = clean(text)
    letters = sum(1 for ch in cleaned if ch.isalpha())
    if not letters:
        return UNDETERMINED, 0.0
    try:
        identifier = _identifier_or_load()
        code, confidence = identifier.classify(cleaned)
        if code in _MAJOR_RELATIVES and letters < RELATIVE_LETTERS:
            code, confidence = _major_relative(identifier.rank(cleaned), _MAJOR_RELATIVES[code])
    except Exception:  # a model bug on one text must not fail the batch it came in
        log.exception("language detection failed on a text of %d characters", len(cleaned))
        return UNDETERMINED, 0.0
    confidence = min(1.0, max(0.0, float(confidence)))  # float32 sums can land a hair above 1
    threshold = SHORT_MIN_CONFIDENCE if letters < SHORT_LETTERS else MIN_CONFIDENCE
    if code in _NOT_A_LANGUAGE or confidence < threshold:
        return UNDETERMINED, confidence
    return _TO_ISO639_1.get(code, code), confidence


def _major_relative(ranked: list[tuple[str, float]], relatives: tuple[str, ...]) -> tuple[str, float]:
    probability = dict(ranked)
    best = max(relatives, key=lambda code: probability.get(code, 0.0))
    return best, float(ranked[0][1]) + float(probability.get(best, 0.0))


def clean(text) -> str:
    """What langid reads: no URLs, e-mail addresses, @mentions, emoji or invalid code points,
    whitespace collapsed, at most MAX_CHARS characters."""
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else "" if text is None else str(text)
    text = _SURROGATE.sub(" ", text[:_RAW_CUT])
    text = _CONTROL.sub(" ", text)
    for pattern in (_URL, _EMAIL, _MENTION, _EMOJI):
        text = pattern.sub(" ", text)
    # A hashtag is usually a word of the message; only its sign is noise.
    text = _SPACE.sub(" ", text.replace("#", " ")).strip()
    return text[:MAX_CHARS]
