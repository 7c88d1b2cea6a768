import pytest


@pytest.fixture(scope="session")
def classifier():
    """The bundled model, loaded once for the whole test session (as a worker would)."""
    from learning.ml.classifier import Classifier

    return Classifier()


@pytest.fixture
def loaded(classifier, monkeypatch):
    """Make the actions use the session's classifier instead of loading another one."""
    from learning import actions

    actions.reset_models()
    monkeypatch.setattr(actions, "_classifier", classifier)
    monkeypatch.setitem(actions._model_cache, "checked", float("inf"))
    yield classifier
    actions.reset_models()
