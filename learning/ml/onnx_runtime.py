"""The multi-task model on ONNX Runtime: the same encoder and heads, exported from torch once per
model version into a cache directory, then run by ONNX Runtime in fp32 or int8.

- Export: `torch.onnx.export` of the whole multi-task model (encoder, mean pooling, every head) as
  one graph, so one pass still feeds every head. Inputs are int64 `input_ids` and
  `attention_mask` (batch x tokens, both dynamic); outputs are `pooled` and one logits output per
  head, in `export.json`'s order.
- int8: `onnxruntime.quantization.quantize_dynamic` of the exported graph: int8 weights per output
  channel, activations quantised per batch. Per-channel weights keep the model's labels where
  torch's per-tensor dynamic int8 moves them (bench/classify.py prints the agreement).
- Cache: `<var>/onnx-cache/<model name>-<key>/`, the key a hash of the model's files (weights,
  heads, config, labels), the export format and the torch and ONNX Runtime versions: a new model
  version, or an upgrade, exports anew; the files are written under temporary names and renamed,
  so concurrent workers never read half a file. A file that does not load, or whose answer on a
  probe text is not the torch model's, is logged, deleted and exported again.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the export (inputs, outputs, opset, quantisation recipe) changes
OPSET = 17
EXPORT_FILE = "export.json"
FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
KEEP_ENTRIES = 4  # cache entries kept (the most recently used), older ones are deleted
# The model's files that decide what the export holds.
MODEL_FILES = ("config.json", "model.safetensors", "heads.safetensors", "cxm.json", "tokenizer.json")
PROBE = ["my order has not arrived and nobody answers", "thanks, that fixed it!"]
# On the probe texts the exported graph must give the torch fp32 model's embeddings: cosine at
# least this (fp32 matches to ~1e-6; int8 moves an embedding by a few hundredths at most).
PROBE_MIN_COSINE = {"fp32": 0.9999, "int8": 0.95}


class OnnxUnavailable(RuntimeError):
    """The ONNX Runtime path cannot run here (not installed, export failed): use torch."""


def runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def cache_key(model_dir: Path) -> str:
    import torch

    digest = hashlib.sha256(f"format {FORMAT} opset {OPSET} torch {torch.__version__} "
                            f"onnxruntime {runtime_version()}".encode())
    for name in MODEL_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        digest.update(name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    from django.conf import settings

    return Path(settings.VAR_DIR) / "onnx-cache"


class _Graph:
    """The multi-task model with plain tensor outputs, as torch.onnx.export wants it."""

    @staticmethod
    def wrap(model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model
                self.names = list(model.heads)

            def forward(self, input_ids, attention_mask):
                pooled = self.model.embed(input_ids, attention_mask)
                return (pooled, *[self.model.heads[name](pooled) for name in self.names])

        return Wrapped().eval()


def export_fp32(model, tokenizer, path: Path) -> list[str]:
    """Write the fp32 graph to `path` (atomically); return the head names in output order."""
    import torch

    wrapped = _Graph.wrap(model)
    enc = tokenizer(PROBE, padding=True, return_tensors="pt")
    outputs = ["pooled", *wrapped.names]
    dynamic = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    dynamic.update({name: {0: "batch"} for name in outputs})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: it needs no onnxscript and traces this model exactly.
            torch.onnx.export(wrapped, (enc["input_ids"], enc["attention_mask"]), str(tmp), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=outputs,
                              dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return wrapped.names


def encoder_weights(graph_path: Path, keep_fp32: tuple[str, ...] = ()) -> list[str]:
    """The MatMul nodes of the encoder's layers that multiply by a weight (not two activations),
    less those whose name holds one of `keep_fp32`. The heads stay fp32: they are tiny and their
    logits are what the labels are read from."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and "/encoder/layer." in node.name and node.input[1] in weights
            and not any(part in node.name for part in keep_fp32)]


def quantize_int8(source: Path, path: Path, keep_fp32: tuple[str, ...] = ()) -> None:
    """Dynamic int8 of the encoder's weights, per output channel (atomically to `path`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    quiet = _Quiet()  # the quantiser's advice to pre-process, logged on the root logger, is for static int8
    logging.getLogger().addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], nodes_to_quantize=encoder_weights(source, keep_fp32))
        os.replace(tmp, path)
    finally:
        logging.getLogger().removeFilter(quiet)
        tmp.unlink(missing_ok=True)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Threads that spin between batches burn a core the web server and the other workers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """Runs the exported multi-task graph: same inputs and outputs as engine.TorchBackend."""

    name = "onnx"

    def __init__(self, sess, heads: list[str], precision: str, path: Path):
        self.session = sess
        self.heads = list(heads)
        self.precision = precision
        self.path = path
        self._outputs = ["pooled", *self.heads]

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, heads: list[str]):
        values = self.session.run(self._outputs, {"input_ids": input_ids, "attention_mask": attention_mask})
        return values[0], {h: values[1 + self.heads.index(h)] for h in heads}


def _probe(backend: OnnxBackend, model, tokenizer) -> float:
    """The lowest cosine between the graph's and the torch model's embeddings of PROBE."""
    import torch

    enc = tokenizer(PROBE, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    got, _ = backend.forward(ids, mask, [])
    with torch.inference_mode():
        want = model.embed(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12)
    return float(cos.min())


def _writable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return path
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / "cxm-onnx-cache"
        log.warning("ONNX cache %s is not writable (%s); using %s", path, exc, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _prune(root: Path, keep: Path) -> None:
    entries = [p for p in root.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_ENTRIES - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def load(model, tokenizer, model_dir: Path, name: str, precision: str = "int8", threads: int | None = None,
         cache_dir: Path | None = None) -> OnnxBackend:
    """An OnnxBackend for `model` (the torch multi-task model loaded from `model_dir`), from the
    cache or exported now. Raises OnnxUnavailable when it cannot be built."""
    if precision not in FILES:
        raise ValueError(f"precision must be one of {', '.join(FILES)}, not {precision!r}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from exc
    root = _writable(Path(cache_dir) if cache_dir else default_cache_dir())
    entry = root / f"{name}-{cache_key(model_dir)}"
    entry.mkdir(parents=True, exist_ok=True)
    os.utime(entry)
    _prune(root, entry)
    for attempt in (1, 2):
        try:
            heads = _ensure(model, tokenizer, entry, precision)
            path = entry / FILES[precision]
            backend = OnnxBackend(session(path, threads), heads, precision, path)
            cosine = _probe(backend, model, tokenizer)
            if cosine < PROBE_MIN_COSINE[precision]:
                raise ValueError(f"probe embeddings differ from torch fp32 (cosine {cosine:.4f})")
            return backend
        except Exception as exc:  # a corrupt, truncated or foreign file: export again, once
            if attempt == 2:
                raise OnnxUnavailable(f"ONNX export in {entry} failed: {exc}") from exc
            log.warning("ONNX cache %s unusable (%s: %s); exporting again", entry, type(exc).__name__, exc)
            shutil.rmtree(entry, ignore_errors=True)
            entry.mkdir(parents=True, exist_ok=True)
    raise AssertionError("unreachable")


def _ensure(model, tokenizer, entry: Path, precision: str) -> list[str]:
    """Export what is missing in `entry`; return the head names in the graph's output order."""
    info_path = entry / EXPORT_FILE
    fp32 = entry / FILES["fp32"]
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    if info is None or not fp32.is_file():
        started = time.perf_counter()
        heads = export_fp32(model, tokenizer, fp32)
        info = {"format": FORMAT, "heads": heads}
        _write_json(info_path, info)
        log.info("exported %s to ONNX in %.1f s", entry.name, time.perf_counter() - started)
    if list(info.get("heads", [])) != list(model.heads):
        raise ValueError(f"{EXPORT_FILE} names heads {info.get('heads')}, the model has {list(model.heads)}")
    if precision == "int8" and not (entry / FILES["int8"]).is_file():
        started = time.perf_counter()
        quantize_int8(fp32, entry / FILES["int8"])
        log.info("quantised %s to int8 in %.1f s", entry.name, time.perf_counter() - started)
    return list(info["heads"])


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
