#!/usr/bin/env python3
"""torch.matmul beside `calmoe_bench cuda-gemm`: the GEMM shapes of one W1L training step.

The same cases as native/bench/bench_main.cpp's run_cuda_gemm (M x N x K, operands row-major,
A or B transposed as there), FP32 storage with TF32 tensor cores
(torch.backends.cuda.matmul.allow_tf32 = True) and BF16 storage; the best of --repeat runs after a
warm-up, timed with CUDA events. One JSON line per case on stdout, in the benchmark's format:
  {system: "pytorch-matmul-tf32", workload: "cuda-gemm", mode: "tf32 x.w1 16384x2048x1024",
   metric: "gflops", value, unit: "GFLOP/s", threads, device: "cuda", card}
Gathered-row cases of calmoe (x[idx]) are measured here with the gather outside the timing, as a
plain GEMM of the gathered rows. Needs only python3 and torch.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from torch_moe import Timer  # the peers' one timing method (CUDA events, best of the runs)

CASES = [
    ("x.w1", 16384, 2048, 1024, False, False),
    ("h.w2", 16384, 100, 2048, False, False),
    ("x^T.dh", 1024, 2048, 16384, True, False),
    ("dh.w1^T", 16384, 1024, 2048, False, True),
    ("x[idx].w1", 2048, 2048, 1024, False, False),
    ("x[idx]^T.dh", 1024, 2048, 2048, True, False),
]


def operand(rows: int, cols: int, trans: bool, dtype: torch.dtype) -> torch.Tensor:
    """A logical rows x cols operand stored row-major as given (transposed: stored cols x rows)."""
    stored = torch.randint(-3, 4, (cols, rows) if trans else (rows, cols), device="cuda").to(dtype)
    return stored.t() if trans else stored


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_gemm: no GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    card = torch.cuda.get_device_name(0)
    timer = Timer("cuda")
    for math, dtype in (("tf32", torch.float32), ("bf16", torch.bfloat16)):
        for name, m, n, k, ta, tb in CASES:
            a, b = operand(m, k, ta, dtype), operand(k, n, tb, dtype)
            out = torch.empty(m, n, device="cuda", dtype=dtype)
            t = timer.time(lambda: torch.matmul(a, b, out=out), 1, args.repeat)
            gf = 2.0 * m * n * k / t / 1e9
            print(json.dumps({"system": f"pytorch-matmul-{math}", "workload": "cuda-gemm", "mode": f"{math} {name} {m}x{n}x{k}",
                              "metric": "gflops", "value": gf, "unit": "GFLOP/s", "threads": torch.get_num_threads(),
                              "device": "cuda", "card": card}), flush=True)
            print(f"torch {math} {name} {m}x{n}x{k}: {t * 1e3:.3f} ms {gf:.1f} GFLOP/s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
