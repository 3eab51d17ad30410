"""Reads a calmoe model file (safetensors) with the standard library and numpy only, and predicts.

    python3 calmoe_reader.py model.safetensors features.npy   # prints the probabilities as JSON

The layout (README "Saving and loading"): weights are [in, out] (y = x W + b); router.<l>.weight
and .bias, then experts.<k>.<l>.weight and .bias; the metadata holds the configuration (JSON), the
per-expert temperatures and the class names.
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", name
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def act(h, kind):
    if kind == "relu":
        return np.maximum(h, 0)
    u = np.float32(np.sqrt(2 / np.pi)) * (h + np.float32(0.044715) * h ** 3)  # gelu, tanh form
    return 0.5 * h * (1 + np.tanh(u))


def mlp(x, tensors, prefix, layers, kind):
    h = x
    for l in range(layers + 1):
        h = h @ tensors[f"{prefix}.{l}.weight"] + tensors[f"{prefix}.{l}.bias"]
        if l < layers:
            h = act(h, kind)
    return h


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict(path, x):
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    t = json.loads(meta["temperatures"])
    temps, aggregate = t["experts"], t.get("aggregate", 1.0)
    kind = cfg.get("activation", "relu")
    r = softmax(mlp(x, tensors, "router", len(cfg.get("routerHidden", [])), kind) / cfg.get("routerTemperature", 1))
    K = cfg["experts"]
    p = np.stack([softmax(mlp(x, tensors, f"experts.{k}", len(cfg.get("expertHidden", [64])), kind) / temps[k]) for k in range(K)], 1)
    routing = cfg.get("routing", "soft")
    if routing == "soft":
        mix = (r[:, :, None] * p).sum(1)
    else:
        k = 1 if routing == "hard" else cfg.get("topK", min(2, K))
        top = np.argsort(-r, axis=1, kind="stable")[:, :k]  # ties to the lower index
        gates = np.take_along_axis(r, top, 1)
        gates = gates / gates.sum(1, keepdims=True)
        mix = (gates[:, :, None] * np.take_along_axis(p, top[:, :, None], 1)).sum(1)
    if aggregate != 1:  # the mixture's temperature: p^(1/T), renormalised
        mix = mix ** (1.0 / aggregate)
        mix = mix / mix.sum(1, keepdims=True)
    return mix


if __name__ == "__main__":
    x = np.load(sys.argv[2]).astype(np.float32)
    print(json.dumps(predict(sys.argv[1], x).tolist()))
