from __future__ import annotations

import pytest

from learning import language

SENTENCES = {
    "en": "My order arrived broken and nobody answers my emails.",
    "fr": "Ma commande est arrivée cassée et personne ne répond.",
    "de": "Das Produkt ist kaputt und der Support antwortet nicht.",
    "es": "Mi pedido llegó roto y nadie me responde.",
    "ja": "商品が壊れて届きました。返金をお願いします。",
    "it": "Il mio ordine è arrivato rotto e nessuno risponde.",
    "pt": "Meu pedido chegou quebrado e ninguém responde.",
    "ru": "Мой заказ пришёл сломанным, и никто не отвечает.",
}


@pytest.mark.parametrize(("code", "text"), SENTENCES.items())
def test_detects_the_language_of_a_sentence(code, text):
    [(detected, confidence)] = language.detect([text])
    assert detected == code
    assert 0.5 < confidence <= 1.0


def test_batch_keeps_order_and_length():
    codes = list(SENTENCES)
    results = language.detect([SENTENCES[c] for c in codes] + [""])
    assert [code for code, _ in results] == [*codes, "und"]


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀😀🔥", "👍🏽❤️", "12345 !!! ???", "#123 @456", "https://t.co/x1Y2z3"])
def test_text_without_language_is_undetermined(text):
    assert language.detect([text]) == [("und", 0.0)]


@pytest.mark.parametrize("text", ["ok", "lol 😂😂😂", "hi", "wtf"])
def test_short_ambiguous_text_is_undetermined(text):
    [(code, confidence)] = language.detect([text])
    assert code == "und"
    assert confidence < language.SHORT_MIN_CONFIDENCE


def test_long_text_near_uniform_confidence_is_undetermined():
    assert language.detect(["a" * 5000])[0][0] == "und"


def test_urls_mentions_and_emails_are_not_read():
    text = ("Merci @AcmeSupportTeam https://support.acme.example/help/tickets/12345 (bob@acme.example) "
            "pour l'aide #rapide")
    assert language.clean(text) == "Merci ( ) pour l'aide rapide"
    [(code, confidence)] = language.detect([text])
    assert code == "fr" and confidence > 0.5


HOSTILE = [
    "\ud800\udfff\ud83d lone surrogates \udc00",
    "\x00\x00 NUL \x00 bytes \x1b[31m",
    "spam " * 20_000,
    "\ufeff\u200b\u202e zero width and bidi",
    "a" * 100_000,
    "😀" * 50_000,
    None,
    b"raw \xff\xfe bytes",
    12345,
]


def test_hostile_input_never_raises_and_returns_one_pair_each():
    results = language.detect(HOSTILE)
    assert len(results) == len(HOSTILE)
    for code, confidence in results:
        assert isinstance(code, str) and 2 <= len(code) <= 3
        assert isinstance(confidence, float) and 0.0 <= confidence <= 1.0


def test_what_langid_reads_is_capped():
    assert len(language.clean("Bonjour tout le monde. " * 10_000)) <= language.MAX_CHARS
    assert language.detect(["Bonjour tout le monde, merci pour votre aide. " * 5000])[0][0] == "fr"


def test_model_is_loaded_once_with_normalised_probabilities(monkeypatch):
    from py3langid.langid import LanguageIdentifier

    calls = []
    real = LanguageIdentifier.from_model_file.__func__

    def counting(cls, *args, **kwargs):
        calls.append(kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(language, "_identifier", None)
    monkeypatch.setattr(LanguageIdentifier, "from_model_file", classmethod(counting))
    language.detect([SENTENCES["en"]])
    language.detect([SENTENCES["de"], SENTENCES["fr"]])
    assert calls == [{"norm_probs": True}]


class FakeIdentifier:
    def __init__(self, answer):
        self.answer = answer

    def classify(self, text):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (("arz", 0.9), ("ar", 0.9)),  # Egyptian Arabic reported as Arabic
        (("yue", 0.8), ("zh", 0.8)),
        (("gom", 0.7), ("gom", 0.7)),  # no ISO 639-1 code: the 639-3 one stays
        (("zxx", 0.95), ("und", 0.95)),  # the model's "not a language" class
        (("en", 1.0000001), ("en", 1.0)),  # float32 rounding never leaves 0..1
    ],
)
def test_model_codes_are_mapped_to_iso_639_1(monkeypatch, answer, expected):
    monkeypatch.setattr(language, "_identifier", FakeIdentifier(answer))
    assert language.detect(["Some text that is long enough to not count as short at all."]) == [expected]


def test_a_model_error_on_one_text_does_not_fail_the_batch(monkeypatch):
    monkeypatch.setattr(language, "_identifier", FakeIdentifier(RuntimeError("boom")))
    assert language.detect(["hello there", ""]) == [("und", 0.0), ("und", 0.0)]


def test_model_name_has_the_version():
    assert language.model_name() == "py3langid 0.4.0"
