"""The text classifier that workers, `classify_file` and the benchmark share.

One encoder pass per distinct text feeds the sentiment and emotion heads and the sentence
embedding that the admin-editable intent head reads. Language and topic terms come from their own
light-weight modules. A head can be replaced by any Hugging Face sequence-classification model (a
local path or a hub id), at the price of its own encoder pass.
"""

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from django.conf import settings

from learning import language, terms
from learning.ml import intents, multilingual, multitask, onnx_runtime
from learning.ml.engine import Engine
from learning.ml.multilingual import MULTILINGUAL_TAG
from learning.ml.text import normalize, readable

log = logging.getLogger(__name__)


@dataclass
class IntentHead:
    version: str
    labels: list[str]
    weights: np.ndarray  # over the English encoder's embedding
    multilingual_weights: np.ndarray | None = None  # over the multilingual reader's, same labels


@dataclass
class TextResult:
    text: str
    flags: list[str] = field(default_factory=list)
    sentiment: str = ""
    sentiment_scores: dict = field(default_factory=dict)
    emotion: str = ""
    emotion_scores: dict = field(default_factory=dict)
    intent: str = ""
    intent_scores: dict = field(default_factory=dict)
    language: str = "und"
    language_confidence: float = 0.0
    topics: list = field(default_factory=list)
    entities: list = field(default_factory=list)
    # The sentence embedding the intent head read, and which encoder made it; lane corrections are
    # matched on it (learning.lane_memory). Not part of the stored result.
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    reader: str = field(default="", repr=False, compare=False)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("embedding", "reader")}


def _scores(labels: list[str], row: np.ndarray) -> dict[str, float]:
    return {label: round(float(p), 4) for label, p in zip(labels, row, strict=True)}


def _top(scores: dict[str, float]) -> str:
    return max(scores, key=scores.get) if scores else ""


class HubHead:
    """A sentiment or emotion head from any sequence-classification model (path or hub id)."""

    def __init__(self, source: str, max_length: int = 128):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from learning.ml.loading import pretrained

        self.source = source
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = pretrained(AutoModelForSequenceClassification, source).eval()  # safetensors only
        id2label = self.model.config.id2label
        self.labels = [str(id2label[i]).lower() for i in range(len(id2label))]
        self.max_length = max_length

    @property
    def name(self) -> str:
        return self.source

    def probabilities(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out[rows] = torch.softmax(self.model(**enc).logits.float(), -1).numpy()
        return out


def _quantized(encoder):
    """int8 weights for the encoder's linear layers (dynamic quantisation): 1.6x faster on CPU for
    about a point of accuracy (see the model card). torch marks torch.ao as deprecated in favour of
    torchao, which is not installed here; the API still works in the pinned torch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)


# Where the encoder runs (settings.CXM_ENCODER_RUNTIME): ONNX Runtime (learning/ml/onnx_runtime.py),
# or torch, which is also the fallback when ONNX Runtime cannot run the model.
ONNX, TORCH = "onnx", "torch"
RUNTIMES = (ONNX, TORCH)

ENGLISH_READER = "en"
MULTILINGUAL_READER = "multilingual"


class Classifier:
    def __init__(self, model_dir: str | os.PathLike | None = None, quantize: bool | None = None,
                 sentiment_model: str | None = None, emotion_model: str | None = None,
                 multilingual_heads: str | os.PathLike | None = None, runtime: str | None = None,
                 onnx_cache: str | os.PathLike | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_dir = Path(model_dir or settings.CXM_BUNDLED_MODEL)
        model, tokenizer, self.meta = multitask.load(self.model_dir)
        quantize = settings.CXM_QUANTIZE if quantize is None else quantize
        runtime = settings.CXM_ENCODER_RUNTIME if runtime is None else runtime
        if runtime not in RUNTIMES:
            raise ValueError(f"encoder runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.quantized = bool(quantize)
        backend = None
        if runtime == ONNX:
            try:
                backend = onnx_runtime.load(model, tokenizer, self.model_dir, self.name, "int8" if quantize else "fp32",
                                            settings.CXM_TORCH_THREADS or None, onnx_cache)
            except Exception as exc:  # a worker classifies on torch rather than not at all
                log.warning("ONNX Runtime unavailable, the encoder runs on torch instead: %s: %s",
                            type(exc).__name__, exc)
                runtime = TORCH
        if runtime == TORCH and quantize:
            model.encoder = _quantized(model.encoder)
        self.runtime = runtime
        self.engine = Engine(model, tokenizer, batch_size=32, backend=backend)
        self.labels = model.labels
        sentiment_model = settings.CXM_SENTIMENT_MODEL if sentiment_model is None else sentiment_model
        emotion_model = settings.CXM_EMOTION_MODEL if emotion_model is None else emotion_model
        self.overrides = {
            head: HubHead(source) for head, source in (("sentiment", sentiment_model), ("emotion", emotion_model))
            if source
        }
        heads_dir = settings.CXM_MULTILINGUAL_HEADS if multilingual_heads is None else multilingual_heads
        self.reader = multilingual.Reader(heads_dir, settings.CXM_TORCH_THREADS or None) if heads_dir else None

    @property
    def name(self) -> str:
        return self.meta.get("name", self.model_dir.name)

    @property
    def precision(self) -> str:
        """What makes this encoder's embeddings differ from the model's fp32 ones: "" for fp32 (in
        torch or ONNX Runtime, which agree to about 1e-6), "+int8" for torch's dynamic int8,
        "+onnx-int8" for ONNX Runtime's per-channel int8."""
        if not self.quantized:
            return ""
        return "+onnx-int8" if self.runtime == ONNX else "+int8"

    @property
    def version(self) -> str:
        """The model version and how it runs (stored with every classification)."""
        runtime = "+onnx" if self.runtime == ONNX and not self.quantized else ""
        return self.meta.get("version", "unversioned") + (self.precision or runtime)

    @property
    def encoder_id(self) -> str:
        """What an intent head must have been fitted on to be usable with this classifier: an int8
        encoder's embeddings differ from the fp32 one's, so each precision gets its own head."""
        reader = f"{MULTILINGUAL_TAG}{self.reader.heads.version}" if self.reader else ""
        return f"{self.name}@{self.meta.get('version', 'unversioned')}{self.precision}{reader}"

    def models_used(self, intent_head: IntentHead | None, reader: str = ENGLISH_READER) -> dict[str, str]:
        model = f"{self.name} {self.version}"
        if reader == MULTILINGUAL_READER and self.reader:
            model = self.reader.name
        used = {"sentiment": model, "emotion": model, "language": language.model_name(), "terms": "spaCy PhraseMatcher"}
        used.update({head: hub.name for head, hub in self.overrides.items()})
        if intent_head:
            used["intent"] = f"intents {intent_head.version}"
        if terms.entity_model_name():
            used["entities"] = terms.entity_model_name()
        return used

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings of raw texts, normalised as at inference (for fitting intents)."""
        pooled, _, _ = self.engine.run([normalize(t)[0] for t in texts], heads=[])
        return pooled

    def embed_multilingual(self, texts: list[str]) -> np.ndarray | None:
        """The multilingual reader's embeddings of raw texts (for fitting intents), if it runs."""
        if not self.reader:
            return None
        return self.reader.embed([normalize(t)[0] for t in texts])

    def classify(self, texts: list[str], intent_head: IntentHead | None = None, matcher=None) -> list[TextResult]:
        normalised = [normalize(t) for t in texts]
        results = [TextResult(text=t, flags=list(flags)) for t, flags in normalised]
        originals = [readable(t) for t in texts]
        for result, (lang, conf) in zip(results, language.detect(originals), strict=True):
            result.language, result.language_confidence = lang, round(float(conf), 4)
        # English goes through the fine-tuned English encoder; every other language through the
        # multilingual reader, when it runs.
        english, other = [], []
        for result in results:
            (english if not self.reader or _reads_as_english(result) else other).append(result)
        self._model_fields(english, intent_head)
        self._multilingual_fields(other, intent_head)
        matcher = matcher or terms.current_matcher()
        for result, found in zip(results, matcher.match(originals), strict=True):
            result.topics = found
        for result, found in zip(results, terms.entities(originals), strict=True):
            result.entities = found
        return results

    def _model_fields(self, results: list[TextResult], intent_head: IntentHead | None):
        # A flood of the same message is read once: identical texts share one encoder pass.
        distinct = sorted({r.text for r in results if r.text})
        if not distinct:
            return
        heads = [h for h in ("sentiment", "emotion") if h not in self.overrides]
        pooled, probs, cut = self.engine.run(distinct, heads=heads)
        self._apply(results, ENGLISH_READER, distinct, pooled, probs, self.labels, cut,
                    intent_head.weights if intent_head else None, intent_head)

    def _multilingual_fields(self, results: list[TextResult], intent_head: IntentHead | None):
        distinct = sorted({r.text for r in results if r.text})
        if not distinct:
            return
        emb, probs = self.reader.read(distinct)
        # A head fitted on the English encoder alone cannot read these embeddings: no intent then.
        self._apply(results, MULTILINGUAL_READER, distinct, emb, probs, self.reader.heads.labels,
                    [False] * len(distinct), intent_head.multilingual_weights if intent_head else None, intent_head)
        for result in results:
            scored = result.language in self.reader.heads.scored or result.language == language.UNDETERMINED
            if result.text and not scored and "sentiment" not in self.overrides:
                # Read for intent and routing, but its sentiment is not one we have measured in
                # this language: say so rather than show a guess as if it were one.
                result.flags.append("not_scored")
                result.sentiment, result.sentiment_scores = "", {}
                result.emotion, result.emotion_scores = "", {}

    def _apply(self, results: list[TextResult], reader: str, distinct: list[str], embeddings: np.ndarray,
               probs: dict, head_labels: dict, cut: list[bool], intent_weights, intent_head) -> None:
        """Set the results' fields from one reader's pass over the distinct texts; a head override
        replaces that reader's head."""
        for head, hub in self.overrides.items():
            probs[head] = hub.probabilities(distinct)
        labels = {h: (self.overrides[h].labels if h in self.overrides else head_labels[h]) for h in probs}
        intent_probs = intents.probabilities(embeddings, intent_weights) if intent_weights is not None else None
        by_text = {}
        for i, text in enumerate(distinct):
            fields = {f"{h}_scores": _scores(labels[h], probs[h][i]) for h in probs}
            if intent_probs is not None:
                fields["intent_scores"] = _scores(intent_head.labels, intent_probs[i])
            by_text[text] = (fields, cut[i], embeddings[i])
        _fill(results, by_text, reader)


def _reads_as_english(result: TextResult) -> bool:
    """English, or too short to tell and written in plain Latin letters ("ok thx", "help pls"), as
    most undetermined care messages are: the English encoder reads those best and fastest. Emoji
    and other scripts with no detected language go to the multilingual reader, whose vocabulary
    knows them."""
    if result.language == ENGLISH_READER:
        return True
    if result.language != language.UNDETERMINED:
        return False
    letters = [ch for ch in result.text if ch.isalpha()]
    return bool(letters) and all(ch.isascii() for ch in letters)


def _fill(results: list[TextResult], by_text: dict, reader: str) -> None:
    for result in results:
        if not result.text:
            continue
        fields, was_cut, embedding = by_text[result.text]
        for name, value in fields.items():
            setattr(result, name, dict(value))
        result.sentiment = _top(result.sentiment_scores)
        result.emotion = _top(result.emotion_scores)
        result.intent = _top(result.intent_scores)
        result.embedding, result.reader = embedding, reader
        if was_cut and "truncated" not in result.flags:
            result.flags.append("truncated")
