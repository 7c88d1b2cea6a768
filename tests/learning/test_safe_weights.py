"""Model weights come from safetensors only, never from pickle or PT2 files (torch 2.13.0 is
affected by CVE-2026-136426 through PT2 loading), whatever CXM_SENTIMENT_MODEL,
CXM_EMOTION_MODEL or a registered model directory name."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from django.conf import settings as django_settings
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from learning.ml import multitask
from learning.ml.classifier import Classifier, HubHead
from learning.ml.loading import UnsafeWeights

ROOT = Path(__file__).resolve().parents[2]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


class _Planted:
    """A pickle that, once unpickled, leaves a file behind: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _tiny_model(path: Path, *, safetensors: bool) -> Path:
    """A random 1-layer BERT sentiment model with the bundled tokenizer, saved as safetensors, or
    as a pickle (pytorch_model.bin) beside a PT2 archive."""
    tokenizer = AutoTokenizer.from_pretrained(django_settings.CXM_BUNDLED_MODEL)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model = BertForSequenceClassification(config)
    path.mkdir(parents=True)
    tokenizer.save_pretrained(path)
    if safetensors:
        model.save_pretrained(path)
        assert (path / "model.safetensors").is_file()
    else:
        config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        (path / "model.pt2").write_bytes(b"PK\x03\x04 a PT2 archive is a zip; never opened")
    return path


def test_a_model_directory_with_only_pickle_or_pt2_weights_is_refused_with_the_reason(tmp_path):
    path = _tiny_model(tmp_path / "unsafe", safetensors=False)
    with pytest.raises(UnsafeWeights, match=r"only model\.pt2, pytorch_model\.bin\).*safetensors only"):
        HubHead(str(path))


def test_a_planted_pickle_is_never_unpickled(tmp_path):
    path = _tiny_model(tmp_path / "planted", safetensors=False)
    marker = tmp_path / "unpickled"
    (path / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(UnsafeWeights):
        HubHead(str(path))
    assert not marker.exists()
    pickle.loads((path / "pytorch_model.bin").read_bytes())  # the plant works: loading it would have run it
    assert marker.exists()


def test_a_safetensors_model_loads_and_reads(tmp_path):
    head = HubHead(str(_tiny_model(tmp_path / "safe", safetensors=True)))
    assert head.labels == ["negative", "neutral", "positive"]
    probabilities = head.probabilities(["my parcel never came", "love it"])
    assert probabilities.shape == (2, 3) and abs(float(probabilities.sum()) - 2.0) < 1e-4


def test_the_sentiment_setting_cannot_bring_in_a_pickled_model(tmp_path, settings):
    settings.CXM_SENTIMENT_MODEL = str(_tiny_model(tmp_path / "override", safetensors=False))
    with pytest.raises(UnsafeWeights):
        Classifier(quantize=False)


def test_a_registered_model_directory_with_a_pickled_encoder_is_refused(tmp_path):
    """A trained model's directory (multitask.load): safetensors heads beside a pickled encoder."""
    bundled = Path(django_settings.CXM_BUNDLED_MODEL)
    path = tmp_path / "trained"
    shutil.copytree(bundled, path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not read")
    with pytest.raises(UnsafeWeights, match="pytorch_model.bin"):
        multitask.load(path)


def test_the_bundled_model_still_loads():
    model, tokenizer, meta = multitask.load(Path(django_settings.CXM_BUNDLED_MODEL))
    assert meta["heads"] and model.labels == meta["heads"]


def test_no_model_weights_are_loaded_outside_the_safetensors_path():
    """Every from_pretrained of a model goes through learning.ml.loading.pretrained (tokenizers
    read JSON and text), and nothing calls torch.load or unpickles."""
    offenders = []
    for app in ("cxm", "listening", "learning", "responses"):
        for source in (ROOT / app).rglob("*.py"):
            if "migrations" in source.parts or source.name == "loading.py":
                continue
            text = source.read_text()
            for name in re.findall(r"(\w+)\.from_pretrained\(", text):
                if not name.endswith("Tokenizer"):
                    offenders.append(f"{source.relative_to(ROOT)}: {name}.from_pretrained")
            for call in ("torch.load(", "pickle.load", "joblib.load"):
                if call in text:
                    offenders.append(f"{source.relative_to(ROOT)}: {call}")
    assert not offenders, offenders
