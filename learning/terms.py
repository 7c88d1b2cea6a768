"""Brand, product, competitor and topic terms found in messages, and optional named entities.

Terms are matched by rule with spaCy's PhraseMatcher over a blank English tokenizer: no trained
model, case-insensitive, the longest phrase wins where matches overlap ("Acme Pro Max" over
"Acme"), each term once per text. Offsets are character offsets into the text as given, so
`text[start:end]` is what the customer wrote. Hashtags and handles match too: "#Acme" and "@Acme"
match "Acme", and "#AcmeProMax" matches "Acme Pro Max".

Entities come from the spaCy pipeline named by settings.CXM_SPACY_MODEL, where one is installed.
"""

import logging
import re
import threading
import time
from dataclasses import dataclass

import spacy
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Q
from spacy.matcher import PhraseMatcher
from spacy.util import compile_prefix_regex, filter_spans

log = logging.getLogger(__name__)

MAX_CHARS = 5000  # terms and entities worth finding are in the first few thousand characters
CHECK_SECONDS = 5.0  # how stale current_matcher() may be after an admin edits a term
# spaCy adds every new word it tokenises to the vocabulary and never forgets it; a worker that
# reads millions of messages would grow without bound, so pipelines are rebuilt past this size.
VOCAB_LIMIT = 200_000
# spaCy's English tokenizer splits "#" off a word already; "@" is split the same way so a handle
# matches its brand, and emoji modifiers so "❤️Acme" leaves "Acme" whole.
_EXTRA_PREFIXES = ["@", "[\ufe0e\ufe0f\u200d]"]
# Pipes that named entities need; the others (tagger, parser, lemmatizer) only cost time here.
_ENTITY_PIPES = {"ner", "entity_ruler", "span_ruler", "tok2vec", "transformer", "curated_transformer"}

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_LAST_WORD = re.compile(r"\s\S*\Z")
_SPACE = re.compile(r"\s+")


def prepare(text) -> str:
    """Text that spaCy can read, with the same character offsets as the original: one-for-one
    replacements only (spaCy raises on lone surrogates), cut at a word boundary near MAX_CHARS."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        # Cutting inside a word could turn "Acme Prospects" into a match for "Acme Pro".
        last = _LAST_WORD.search(text)
        text = text[: last.start()] if last else text
    return _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", text))


def _tokenizer_nlp():
    nlp = spacy.blank("en")
    prefixes = list(nlp.Defaults.prefixes) + _EXTRA_PREFIXES
    nlp.tokenizer.prefix_search = compile_prefix_regex(prefixes).search
    return nlp


def _variants(phrases) -> list[str]:
    """The phrases, plus each multi-word phrase without its spaces: hashtags and handles glue
    words together ("#AcmeProMax")."""
    seen, out = set(), []
    for phrase in phrases:
        phrase = prepare(str(phrase)).strip()
        for variant in (phrase, _SPACE.sub("", phrase)):
            if variant and variant.lower() not in seen:
                seen.add(variant.lower())
                out.append(variant)
    return out


class TermMatcher:
    """Finds terms in texts. Each term: {"id", "name", "kind", "phrases": [str, ...]}."""

    def __init__(self, terms: list[dict]):
        self.terms = [dict(term) for term in terms]
        self._build()

    @classmethod
    def from_db(cls) -> "TermMatcher":
        from learning.models import Term  # imported late: this module loads before Django apps

        return cls([_term_dict(term) for term in Term.objects.filter(enabled=True).order_by("pk")])

    def _build(self):
        self.nlp = _tokenizer_nlp()
        self.matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self._index = {}  # match key hash -> position in self.terms
        for index, term in enumerate(self.terms):
            phrases = term.get("phrases") or [term.get("name", "")]
            patterns = [doc for doc in self.nlp.tokenizer.pipe(_variants(phrases)) if len(doc)]
            if patterns:
                key = f"term-{index}"
                self.matcher.add(key, patterns)
                self._index[self.nlp.vocab.strings[key]] = index

    def match(self, texts: list[str]) -> list[list[dict]]:
        """Per text, the terms found, in order of first appearance."""
        prepared = [prepare(text) for text in texts]
        if not self._index:
            return [[] for _ in prepared]
        found = [self._found(doc) for doc in self.nlp.tokenizer.pipe(prepared, batch_size=256)]
        if len(self.nlp.vocab) > VOCAB_LIMIT:
            self._build()
        return found

    def _found(self, doc) -> list[dict]:
        # Two terms can share a phrase; both are reported for the span that wins.
        by_span: dict[tuple[int, int], list[int]] = {}
        for key, start, end in self.matcher(doc):
            by_span.setdefault((start, end), []).append(self._index[key])
        found, seen = [], set()
        for span in filter_spans([doc[start:end] for start, end in by_span]):
            for index in sorted(by_span[(span.start, span.end)]):
                if index not in seen:
                    seen.add(index)
                    found.append(self._result(index, span))
        return found

    def _result(self, index: int, span) -> dict:
        term = self.terms[index]
        return {"term_id": term.get("id"), "name": term.get("name", ""), "kind": term.get("kind", ""),
                "text": span.text, "start": span.start_char, "end": span.end_char}


def _term_dict(term) -> dict:
    # synonyms is a JSON field: an admin can store a string where a list belongs.
    phrases = term.phrases() if isinstance(term.synonyms, list) else [term.name]
    return {"id": term.pk, "name": term.name, "kind": term.kind, "phrases": phrases}


@dataclass
class _Current:
    matcher: TermMatcher | None = None
    fingerprint: tuple | None = None
    checked_at: float = float("-inf")


_current = _Current()
_current_lock = threading.Lock()


def current_matcher() -> TermMatcher:
    """This process's matcher for the enabled terms, rebuilt when the terms changed. The database
    is asked at most every CHECK_SECONDS, so workers pick up admin edits without a restart."""
    with _current_lock:  # one rebuild at a time, not one per thread
        now = time.monotonic()
        if _current.matcher is not None and now - _current.checked_at < CHECK_SECONDS:
            return _current.matcher
        try:
            fingerprint = _fingerprint()
            if _current.matcher is None or fingerprint != _current.fingerprint:
                # Read after the fingerprint: an edit in between only causes one more rebuild.
                _current.matcher, _current.fingerprint = TermMatcher.from_db(), fingerprint
            _current.checked_at = now
        except DatabaseError:
            log.warning("cannot read terms; matching with the terms read before", exc_info=True)
        return _current.matcher or TermMatcher([])


def _fingerprint() -> tuple:
    """Changes when a term is added, deleted, saved, or enabled/disabled in bulk (bulk updates
    skip auto_now, so enabled terms are counted apart)."""
    from learning.models import Term

    row = Term.objects.aggregate(count=Count("pk"), enabled=Count("pk", filter=Q(enabled=True)),
                                 latest=Max("updated_at"))
    return row["count"], row["enabled"], row["latest"]


# --- Named entities -------------------------------------------------------------------------

_entity_pipelines: dict = {}  # configured name -> loaded pipeline, or None when it cannot load
_entity_lock = threading.Lock()


def _entity_setting() -> str:
    return str(getattr(settings, "CXM_SPACY_MODEL", "") or "").strip()


def _entity_nlp(name: str):
    if name not in _entity_pipelines:
        with _entity_lock:
            if name not in _entity_pipelines:
                _entity_pipelines[name] = _load_entity_pipeline(name)
    return _entity_pipelines[name]


def _load_entity_pipeline(name: str):
    try:
        nlp = spacy.load(name)
    except Exception as exc:  # OSError when not installed; a broken package can raise anything
        # Cached as None by the caller, so this is said once per process, not once per message.
        log.warning("spaCy pipeline %r (CXM_SPACY_MODEL) cannot be loaded, entities are off: %s", name, exc)
        return None
    unused = [pipe for pipe in nlp.pipe_names if pipe not in _ENTITY_PIPES]
    if unused:
        nlp.select_pipes(disable=unused)
    return nlp


def entity_model_name() -> str:
    """The entity pipeline in use and its version, e.g. "en_core_web_sm 3.8.0"; "" when none."""
    name = _entity_setting()
    nlp = _entity_nlp(name) if name else None
    if nlp is None:
        return ""
    version = nlp.meta.get("version", "")
    return f"{name} {version}".strip()


def entities(texts: list[str]) -> list[list[dict]]:
    """Per text, the named entities: {"text", "label", "start", "end"}. Empty lists when no
    pipeline is configured or it cannot be loaded or run."""
    name = _entity_setting()
    nlp = _entity_nlp(name) if name else None
    if nlp is None:
        return [[] for _ in texts]
    try:
        docs = list(nlp.pipe([prepare(text) for text in texts], batch_size=64))
    except Exception:  # entities are an extra: a model failure must not fail classification
        log.exception("entity recognition with %r failed on a batch of %d texts", name, len(texts))
        return [[] for _ in texts]
    if len(nlp.vocab) > VOCAB_LIMIT:
        _entity_pipelines.pop(name, None)  # reloaded on the next call, with a fresh vocabulary
    return [[{"text": ent.text, "label": ent.label_, "start": ent.start_char, "end": ent.end_char}
             for ent in doc.ents] for doc in docs]
