"""The encoder on ONNX Runtime: the same labels as the torch fp32 model, an export cache keyed by
the model's files, and a broken or missing cache (or runtime) that never stops classification."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from transformers import AutoTokenizer, BertConfig, BertModel

from learning.ml import multitask, onnx_runtime
from learning.ml.classifier import Classifier
from learning.ml.engine import Engine

pytestmark = pytest.mark.django_db

CARE = [
    "My flight was cancelled and nobody at the desk will help me",
    "Thank you so much, the support team was amazing and fixed it in minutes! Love it",
    "where is my parcel? ordered 2 weeks ago, order 48213",
    "how do I change the email on my account",
    "the app crashes every time I open a playlist, already reinstalled twice",
    "ok thanks",
    "I was charged twice this month, please refund me",
    "honestly the new shuffle is great but the ads are way too loud",
]


@pytest.fixture(scope="module")
def torch_fp32():
    return Classifier(runtime="torch", quantize=False, multilingual_heads="", sentiment_model="", emotion_model="")


def _probs(classifier):
    return classifier.engine.run(CARE, heads=["sentiment", "emotion"])


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_onnx_runtime_gives_the_torch_fp32_labels(torch_fp32, quantize):
    onnx = Classifier(runtime="onnx", quantize=quantize, multilingual_heads="", sentiment_model="", emotion_model="")
    assert onnx.runtime == "onnx" and onnx.engine.backend.name == "onnx"
    assert onnx.version.endswith("+onnx-int8" if quantize else "+onnx")
    want_pooled, want, _ = _probs(torch_fp32)
    got_pooled, got, _ = _probs(onnx)
    for head in ("sentiment", "emotion"):
        assert (got[head].argmax(1) == want[head].argmax(1)).all(), head
        assert np.abs(got[head] - want[head]).max() < (0.1 if quantize else 1e-4), head
    norms = np.linalg.norm(got_pooled, axis=1) * np.linalg.norm(want_pooled, axis=1)
    cosine = (got_pooled * want_pooled).sum(1) / norms
    assert cosine.min() > (0.97 if quantize else 0.99999)


def test_fp32_shares_the_torch_intent_heads_and_int8_gets_its_own(torch_fp32):
    onnx32 = Classifier(runtime="onnx", quantize=False, multilingual_heads="", sentiment_model="", emotion_model="")
    onnx8 = Classifier(runtime="onnx", quantize=True, multilingual_heads="", sentiment_model="", emotion_model="")
    torch8 = Classifier(runtime="torch", quantize=True, multilingual_heads="", sentiment_model="", emotion_model="")
    assert onnx32.encoder_id == torch_fp32.encoder_id
    assert len({torch_fp32.encoder_id, onnx8.encoder_id, torch8.encoder_id}) == 3


def _tiny(path: Path, version: str = "v1") -> Path:
    """A random 1-layer multi-task model (the bundled tokenizer), saved as CXM saves models."""
    tokenizer = AutoTokenizer.from_pretrained(django_settings.CXM_BUNDLED_MODEL)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37)
    model = multitask.MultiTaskModel(BertModel(config), {"sentiment": ["negative", "neutral", "positive"],
                                                         "emotion": ["anger", "joy", "optimism", "sadness"]})
    multitask.save(model, tokenizer, path, {"name": "tiny", "version": version})
    return path


def _load(model_dir: Path, cache: Path, precision: str = "fp32"):
    model, tokenizer, meta = multitask.load(model_dir)
    backend = onnx_runtime.load(model, tokenizer, model_dir, meta["name"], precision, 1, cache)
    return model, tokenizer, backend


def test_a_tiny_model_runs_the_same_on_onnx_runtime(tmp_path):
    model, tokenizer, backend = _load(_tiny(tmp_path / "m"), tmp_path / "cache")
    texts = ["a", "a much longer text than the first one, to pad the batch", "third"]
    want = Engine(model, tokenizer).run(texts)
    got = Engine(model, tokenizer, backend=backend).run(texts)
    assert np.allclose(got[0], want[0], atol=1e-4)
    for head in ("sentiment", "emotion"):
        assert np.allclose(got[1][head], want[1][head], atol=1e-4)


def test_the_cache_is_reused_and_rebuilt_when_the_model_changes(tmp_path):
    cache = tmp_path / "cache"
    model_dir = _tiny(tmp_path / "m")
    _, _, first = _load(model_dir, cache, "int8")
    exported = first.path.stat().st_mtime_ns
    assert first.path.name == "model-int8.onnx" and (first.path.parent / "model.onnx").is_file()
    _, _, again = _load(model_dir, cache, "int8")
    assert again.path == first.path and again.path.stat().st_mtime_ns == exported  # not exported again

    meta = json.loads((model_dir / "cxm.json").read_text())
    (model_dir / "cxm.json").write_text(json.dumps({**meta, "version": "v2"}))
    _, _, changed = _load(model_dir, cache, "int8")
    assert changed.path.parent != first.path.parent
    assert changed.path.is_file() and first.path.is_file()  # the old version's stays for its workers

    _tiny(tmp_path / "retrained")  # same name and version, new weights: a new export too
    shutil.copy(tmp_path / "retrained" / "model.safetensors", model_dir / "model.safetensors")
    _, _, retrained = _load(model_dir, cache, "int8")
    assert retrained.path.parent not in (first.path.parent, changed.path.parent)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "foreign heads"])
def test_a_broken_cache_is_exported_again_with_a_log(tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    model_dir = _tiny(tmp_path / "m")
    model, tokenizer, backend = _load(model_dir, cache)
    path = backend.path
    if damage == "garbage":
        path.write_bytes(b"not an onnx graph")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "missing":
        path.unlink()
    else:
        info = path.parent / onnx_runtime.EXPORT_FILE
        info.write_text(json.dumps({"format": onnx_runtime.FORMAT, "heads": ["spam"]}))
    with caplog.at_level(logging.INFO, logger="learning.ml.onnx_runtime"):
        _, _, rebuilt = _load(model_dir, cache)
    if damage != "missing":
        assert "unusable" in caplog.text and "exporting again" in caplog.text
    assert "exported" in caplog.text
    texts = ["is it back?"]
    want = Engine(model, tokenizer).run(texts)[1]["sentiment"]
    assert np.allclose(Engine(model, tokenizer, backend=rebuilt).run(texts)[1]["sentiment"], want, atol=1e-4)


def test_without_onnx_runtime_the_classifier_runs_on_torch_and_says_why(tmp_path, monkeypatch, caplog):
    model_dir = _tiny(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with caplog.at_level(logging.WARNING, logger="learning.ml.classifier"):
        classifier = Classifier(model_dir, runtime="onnx", quantize=True, multilingual_heads="",
                                sentiment_model="", emotion_model="")
    assert classifier.runtime == "torch" and classifier.engine.backend.name == "torch"
    assert classifier.version == "v1+int8"
    assert "onnxruntime is not installed" in caplog.text
    [result] = classifier.classify(["still classified"])
    assert result.sentiment in {"negative", "neutral", "positive"}


def test_an_unknown_runtime_is_refused(tmp_path):
    with pytest.raises(ValueError, match="onnx, torch"):
        Classifier(_tiny(tmp_path / "m"), runtime="tensorrt", multilingual_heads="")


def test_micro_batches_are_cut_where_padding_costs_more_than_a_call():
    """Engine.run's cut points: the fewest padded tokens plus a cost per call, at most `cap` rows."""
    import itertools
    import random

    from learning.ml.engine import split

    assert split([5] * 10 + [50] * 10, cap=32, call_cost=12) == [(0, 10), (10, 20)]
    same = split([7] * 70, cap=32, call_cost=12)  # equal lengths: as few calls as the cap allows
    assert len(same) == 3 and all(j - i <= 32 for i, j in same)
    assert split([], cap=8) == []

    def cost(runs, lengths, call_cost):
        return sum((j - i) * lengths[j - 1] + call_cost for i, j in runs)

    rng = random.Random(3)
    for _ in range(30):  # the dynamic programme is optimal: no other set of cut points costs less
        lengths = sorted(rng.randint(3, 60) for _ in range(rng.randint(1, 9)))
        runs = split(lengths, cap=4, call_cost=10)
        assert runs[0][0] == 0 and runs[-1][1] == len(lengths) and all(j - i <= 4 for i, j in runs)
        best = min(
            cost(list(zip((0, *cuts), (*cuts, len(lengths)), strict=True)), lengths, 10)
            for k in range(len(lengths))
            for cuts in itertools.combinations(range(1, len(lengths)), k)
            if all(j - i <= 4 for i, j in zip((0, *cuts), (*cuts, len(lengths)), strict=True))
        )
        assert cost(runs, lengths, 10) == best
