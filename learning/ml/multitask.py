"""The multi-task model: one transformer encoder, mean pooling, and one linear head per task.

On disk it is a directory that `transformers` can also read as a plain encoder: config.json,
model.safetensors (fp16), the tokenizer files, plus heads.safetensors and cxm.json (labels per head,
name, version, max length, training recipe and validation figures)."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from learning.ml import loading

META_FILE = "cxm.json"
HEADS_FILE = "heads.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class MultiTaskModel(nn.Module):
    def __init__(self, encoder, heads: dict[str, list[str]], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.labels = {name: list(labels) for name, labels in heads.items()}
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(labels)) for name, labels in heads.items()})

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids, attention_mask, heads=None):
        pooled = self.embed(input_ids, attention_mask)
        dropped = self.dropout(pooled)
        names = heads or list(self.heads)
        return pooled, {name: self.heads[name](dropped) for name in names}


def from_encoder(path: str, heads: dict[str, list[str]]):
    """A fresh model: pretrained encoder weights from `path` (local dir or hub id), new heads."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = loading.pretrained(AutoModel, path)  # safetensors only
    return MultiTaskModel(encoder, heads), tokenizer


def save(model: MultiTaskModel, tokenizer, path: Path, meta: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    encoder.half().save_pretrained(path)
    encoder.float()
    tokenizer.save_pretrained(path)
    head_state = {k: v.detach().half().contiguous() for k, v in model.heads.state_dict().items()}
    save_file(head_state, str(path / HEADS_FILE))
    meta = {**meta, "heads": model.labels}
    (path / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load(path: Path):
    """Load a saved model for inference, in fp32 (the CPU kernels are fastest in fp32)."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = loading.pretrained(AutoModel, path).float()  # safetensors only
    model = MultiTaskModel(encoder, meta["heads"])
    state = {k: v.float() for k, v in load_file(str(path / HEADS_FILE)).items()}
    model.heads.load_state_dict(state)
    model.eval()
    return model, tokenizer, meta
