#!/usr/bin/env python3
"""W4 in PyTorch on the CPU: the AdamW fit of bench/w4-fit.ts, written as a PyTorch user would.

Same data (the rows bench/peers/torch-w4.ts writes from bench/w4-data.ts, read here as raw
little-endian float32 / int32), same model and settings as calmoe's W4, soft routing:
  router r = softmax(x Wr + br); K experts p_k = softmax(relu(x W1_k + b1_k) W2_k + b2_k), run as
  one batched matmul over all experts; p = sum_k r_k p_k; loss mean_i -log max(p_i[y_i], 1e-12);
  nn.Linear's default initialisation (calmoe's 'default' init); torch.optim.AdamW (lr 1e-3,
  betas (0.9, 0.999), eps 1e-8, weight decay 1e-4) with a per-step cosine decay to 0 (LambdaLR);
  batch 128, reshuffled every epoch (torch.randperm), the last partial batch kept.
PyTorch's defaults are kept (subnormals are not flushed: torch.set_flush_denormal(False)), as a
user would run it; --flush-denormals sets it.

Prints one JSON line per figure on stdout, as bench/ does:
  {system, workload: 'w4', mode: 'soft', metric, value, unit, threads, device: 'cpu', epoch?}
Progress on stderr. Needs python3, numpy and torch (Debian: apt-get install python3-torch).
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class SoftMoE(torch.nn.Module):
    def __init__(self, d: int, h: int, C: int, K: int):
        super().__init__()
        self.router = torch.nn.Linear(d, K)
        hidden = [torch.nn.Linear(d, h) for _ in range(K)]
        out = [torch.nn.Linear(h, C) for _ in range(K)]
        # the experts' layers stacked for one batched matmul each (initialised as nn.Linear is)
        self.w1 = torch.nn.Parameter(torch.stack([l.weight.t() for l in hidden]).contiguous())  # K x d x h
        self.b1 = torch.nn.Parameter(torch.stack([l.bias for l in hidden]).unsqueeze(1).contiguous())  # K x 1 x h
        self.w2 = torch.nn.Parameter(torch.stack([l.weight.t() for l in out]).contiguous())  # K x h x C
        self.b2 = torch.nn.Parameter(torch.stack([l.bias for l in out]).unsqueeze(1).contiguous())  # K x 1 x C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.softmax(self.router(x), dim=1)  # B x K
        hid = torch.relu(torch.matmul(x.unsqueeze(0), self.w1) + self.b1)  # K x B x h
        pk = F.softmax(torch.baddbmm(self.b2, hid, self.w2), dim=2)  # K x B x C
        return torch.einsum("bk,kbc->bc", r, pk)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--x", required=True, help="rows x d float32, raw little-endian")
    ap.add_argument("--y", required=True, help="rows int32 labels, raw little-endian")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--flush-denormals", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(a.flush_denormals)
    torch.manual_seed(1)
    x = torch.from_numpy(np.fromfile(a.x, dtype="<f4").reshape(a.rows, a.d))
    y = torch.from_numpy(np.fromfile(a.y, dtype="<i4").astype(np.int64))
    if y.numel() != a.rows or int(y.min()) < 0 or int(y.max()) >= a.classes:
        raise SystemExit(f"torch_w4: labels: expected {a.rows} values in [0, {a.classes})")
    model = SoftMoE(a.d, a.hidden, a.classes, a.experts)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    per_epoch = math.ceil(a.rows / a.batch)
    total = per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total))))
    system = "pytorch-eager" + ("-flush" if a.flush_denormals else "")
    print(f"torch_w4: PyTorch {torch.__version__}, {a.threads} threads, {a.rows} rows, {a.epochs} epochs, "
          f"flush denormals {a.flush_denormals}", file=sys.stderr, flush=True)

    def emit(metric: str, value: float, unit: str, epoch: int | None = None) -> None:
        line = {"system": system, "workload": "w4", "mode": "soft", "metric": metric, "value": value, "unit": unit,
                "threads": a.threads, "device": "cpu"}
        if epoch is not None:
            line["epoch"] = epoch
        print(json.dumps(line), flush=True)

    walls, cpus = [], []
    t_start, c_start = time.perf_counter(), cpu_seconds()
    for epoch in range(a.epochs):
        t0, c0 = time.perf_counter(), cpu_seconds()
        order = torch.randperm(a.rows)
        loss_sum = 0.0
        for s in range(per_epoch):
            idx = order[s * a.batch:(s + 1) * a.batch]
            p = model(x[idx])
            loss = -torch.log(p.gather(1, y[idx].unsqueeze(1)).clamp_min(1e-12)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * idx.numel()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        walls.append(wall)
        cpus.append(cpu)
        emit("epoch_throughput", a.rows / wall, "examples/s", epoch + 1)
        emit("epoch_cpu_throughput", a.rows / cpu, "examples/cpu-s", epoch + 1)
        print(f"  {system} soft epoch {epoch + 1}: {a.rows / wall:.0f} examples/s, {a.rows / cpu:.0f} examples/cpu-s, "
              f"loss {loss_sum / a.rows:.4f}", file=sys.stderr, flush=True)
    emit("throughput", a.rows * a.epochs / (time.perf_counter() - t_start), "examples/s")
    emit("cpu_throughput", a.rows * a.epochs / (cpu_seconds() - c_start), "examples/cpu-s")
    emit("slowest_epoch_vs_first", min(walls[0] / w for w in walls), "ratio")
    emit("slowest_epoch_vs_first_cpu", min(cpus[0] / c for c in cpus), "ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
