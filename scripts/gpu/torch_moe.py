#!/usr/bin/env python3
"""PyTorch peers for calmoe's MoE benchmarks (shared/DESIGN.md, "Performance").

Same workloads and semantics as calmoe and bench/peers/tfjs-moe.ts, written as a competent
PyTorch user would, eager and torch.compile (failures are caught and reported):

  w1   train step  B=2048  d=128  h=128  C=10  K=8     modes soft, top2, top1   examples/s
  w1l  train step  B=16384 d=1024 h=2048 C=100 K=16    modes soft, top2, hard   examples/s
  w2   eval forward over 200,000 rows (W1 model) + ECE  modes soft, top2, top1   rows/s
  w3   ECE over 10,000,000 x 10 probabilities           rows/s and GB/s

Model: linear router r = softmax(x Wr + br); K experts softmax(relu(x W1_k + b1_k) W2_k + b2_k);
a mixture of probabilities. soft: p = sum_k r_k p_k (all experts as one batched matmul).
top2: S = topk(r, 2), r~ = r_S / sum r_S, only the selected experts run on their rows (rows
grouped by expert with one argsort, one host sync for the group sizes, a loop of per-expert
matmuls, index_add_ back), p = sum_S r~ p_k. top1/hard: the same with k = 1 and the gate
r_k* / r_k*.detach() (value p_k*, Switch-style router gradient); eval uses p_k* exactly.
Loss l = -log(max(p[y], 1e-12)); tilted weights w = softmax(eta * l.detach()), L = sum w l;
torch.optim.SGD. Parameters ~ N(0, 0.05) (weights and biases), seeded; x ~ N(0, 1), y uniform.

Prints one JSON line per measurement on stdout:
  {system, workload, mode, metric, value, unit, threads, device, card}
system: pytorch-eager | pytorch-compile (+ '-tf32' with --tf32). Progress and checks on stderr.

Needs only python3, torch and numpy; no network. On a machine without a GPU:
  python3 scripts/gpu/torch_moe.py --device cpu --smoke      (tiny sizes: a logic check)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

ETA = 0.5
LR = 0.1
INIT_STD = 0.05
BINS = 15

SHAPES = {
    # name: (B, d, h, C, K)
    "w1": (2048, 128, 128, 10, 8),
    "w1l": (16384, 1024, 2048, 100, 16),
}
SMOKE_SHAPES = {
    "w1": (64, 16, 16, 10, 8),
    "w1l": (128, 32, 64, 100, 16),
}
MODES = {"w1": ["soft", "top2", "top1"], "w1l": ["soft", "top2", "hard"], "w2": ["soft", "top2", "top1"]}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# model


class MoE(torch.nn.Module):
    """Linear router + K one-hidden-layer experts, parameters stacked over experts."""

    def __init__(self, d: int, h: int, C: int, K: int, seed: int, device: str):
        super().__init__()
        g = torch.Generator(device="cpu").manual_seed(seed)

        def p(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter((torch.randn(*shape, generator=g) * INIT_STD).to(device))

        self.d, self.h, self.C, self.K = d, h, C, K
        self.wr, self.br = p(d, K), p(K)
        self.w1, self.b1 = p(K, d, h), p(K, h)
        self.w2, self.b2 = p(K, h, C), p(K, C)

    def router(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.addmm(self.br, x, self.wr), dim=-1)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        hid = torch.relu(torch.addmm(self.b1[e], x, self.w1[e]))
        return torch.softmax(torch.addmm(self.b2[e], hid, self.w2[e]), dim=-1)

    def all_experts(self, x: torch.Tensor) -> torch.Tensor:
        """p_k for every expert on every row: K x B x C (batched matmuls)."""
        hid = torch.relu(torch.baddbmm(self.b1.unsqueeze(1), x.unsqueeze(0).expand(self.K, -1, -1), self.w1))
        return torch.softmax(torch.baddbmm(self.b2.unsqueeze(1), hid, self.w2), dim=-1)

    def forward(self, x: torch.Tensor, mode: str, train: bool = True) -> torch.Tensor:
        r = self.router(x)
        if mode == "soft":
            return torch.einsum("bk,kbc->bc", r, self.all_experts(x))
        k = 2 if mode == "top2" else 1
        top_r, top_i = torch.topk(r, k, dim=-1)  # B x k
        if k == 1:
            # hard routing: the value is exactly p_k*; in training the gate r_k* / stopgrad(r_k*)
            # gives the router the Switch-style gradient
            gate = top_r / top_r.detach() if train else None
        else:
            gate = top_r / top_r.sum(dim=-1, keepdim=True)  # r~ (the router gradient flows through it)
        B = x.shape[0]
        flat_e = top_i.reshape(-1)
        order = torch.argsort(flat_e, stable=True)  # (row, slot) pairs grouped by expert
        rows = order // k
        counts = torch.bincount(flat_e, minlength=self.K).tolist()  # one host sync
        xs = x.index_select(0, rows)
        outs = []
        for e, xe in enumerate(torch.split(xs, counts)):
            if xe.shape[0] > 0:
                outs.append(self.expert(e, xe))
        P = torch.cat(outs)  # (B k) x C, grouped by expert
        if gate is not None:
            P = P * gate.reshape(-1).index_select(0, order).unsqueeze(1)
        return torch.zeros(B, self.C, device=x.device, dtype=P.dtype).index_add_(0, rows, P)

    def forward_dense(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        """Reference: every expert on every row, combined with the same gates (for the checks)."""
        r = self.router(x)
        if mode == "soft":
            G = r
        else:
            k = 2 if mode == "top2" else 1
            top_r, top_i = torch.topk(r, k, dim=-1)
            gate = top_r / top_r.sum(dim=-1, keepdim=True) if k == 2 else top_r / top_r.detach()
            G = torch.zeros_like(r).scatter(1, top_i, gate)
        return torch.einsum("bk,kbc->bc", G, self.all_experts(x))


def per_example_loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.log(p.gather(1, y.unsqueeze(1)).squeeze(1).clamp_min(1e-12))


def tilted_objective(l: torch.Tensor, eta: float = ETA) -> torch.Tensor:
    w = torch.softmax(eta * l.detach(), dim=0)  # held constant ('term' convention)
    return (w * l).sum()


def make_step(model: MoE, opt: torch.optim.Optimizer, mode: str):
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        L = tilted_objective(per_example_loss(model(x, mode), y))
        L.backward()
        opt.step()
        return L.detach()

    return step


# ------------------------------------------------------------------------------------------------
# ECE (15 equal-width right-closed bins)


def ece_sums(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-bin [count, sum conf, sum correct] (float64, 3 x BINS); bin = clamp(ceil(c*15) - 1, 0, 14)
    with c*15 formed in float64 from the float32 confidence, as calmoe does."""
    conf, pred = p.max(dim=1)
    b = torch.ceil(conf.double() * BINS).long().sub_(1).clamp_(0, BINS - 1)
    cnt = torch.bincount(b, minlength=BINS).double()
    sconf = torch.zeros(BINS, dtype=torch.float64, device=p.device).index_add_(0, b, conf.double())
    shit = torch.bincount(b, weights=(pred == y).double(), minlength=BINS)
    return torch.stack([cnt, sconf, shit])


def ece_from_sums(s: torch.Tensor, n: int) -> float:
    return float((s[2] - s[1]).abs().sum().item() / n)


def ece_numpy(p: np.ndarray, y: np.ndarray) -> float:
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    b = np.clip(np.ceil(conf.astype(np.float64) * BINS).astype(np.int64) - 1, 0, BINS - 1)
    e = 0.0
    for i in range(BINS):
        m = b == i
        e += abs(float((pred[m] == y[m]).sum()) - float(conf[m].astype(np.float64).sum()))
    return e / len(y)


# ------------------------------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def time(self, fn, warmup: int, repeat: int) -> float:
        """Best seconds of `repeat` calls after `warmup` calls."""
        for _ in range(warmup):
            fn()
        self.sync()
        best = math.inf
        for _ in range(repeat):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                best = min(best, a.elapsed_time(b) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
        return best

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class Emitter:
    def __init__(self, device: str, tf32: bool):
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.card = torch.cuda.get_device_name() if self.device == "cuda" else "cpu"
        self.suffix = "-tf32" if tf32 else ""

    def emit(self, variant: str, workload: str, mode: str, metric: str, value: float, unit: str) -> None:
        line = {
            "system": f"pytorch-{variant}{self.suffix}",
            "workload": workload,
            "mode": mode,
            "metric": metric,
            "value": value,
            "unit": unit,
            "threads": torch.get_num_threads(),
            "device": self.device,
            "card": self.card,
        }
        print(json.dumps(line), flush=True)


def variants(args):
    out = ["eager"]
    if not args.no_compile:
        out.append("compile")
    return out


def reset_compiled() -> None:
    """Drops torch.compile's caches between workloads (torch < 2 has no compiler to reset)."""
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()


def compiled(fn, variant: str):
    return torch.compile(fn) if variant == "compile" else fn


def warmups(args, variant: str) -> int:
    return args.compile_warmup if variant == "compile" else args.warmup


# ------------------------------------------------------------------------------------------------
# self-checks (small sizes, on the benchmark device)


def self_check(device: str) -> None:
    torch.manual_seed(0)
    d, h, C, K, B = 12, 16, 5, 4, 37
    x = torch.randn(B, d, device=device)
    y = torch.randint(0, C, (B,), device=device)
    model = MoE(d, h, C, K, seed=11, device=device)
    params = list(model.parameters())
    for mode in ["soft", "top2", "top1"]:
        La = tilted_objective(per_example_loss(model(x, mode), y))
        ga = torch.autograd.grad(La, params)
        Lb = tilted_objective(per_example_loss(model.forward_dense(x, mode), y))
        gb = torch.autograd.grad(Lb, params)
        dv = abs(La.item() - Lb.item())
        dg = max((a - b).abs().max().item() for a, b in zip(ga, gb))
        if not (dv < 1e-5 and dg < 1e-5):
            raise AssertionError(f"self-check {mode}: sparse vs dense objective differs by {dv}, gradients by {dg}")
    with torch.no_grad():
        p = model(x, "top1", train=False)
        ks = model.router(x).argmax(dim=1)
        ref = model.all_experts(x)[ks, torch.arange(B, device=device)]
        diff = (p - ref).abs().max().item()
        if not diff < 1e-6:
            raise AssertionError(f"self-check top1: p differs from the chosen expert's probabilities by {diff}")
        pn, yn = p.float().cpu().numpy(), y.cpu().numpy()
        e1, e2 = ece_from_sums(ece_sums(p, y), B), ece_numpy(pn, yn)
        if not abs(e1 - e2) < 1e-9:
            raise AssertionError(f"self-check ECE: {e1} vs numpy {e2}")
    # the tilted objective decreases on separable data
    xs = torch.randn(128, d, device=device)
    ys = (xs @ torch.randn(d, C, device=device)).argmax(dim=1)
    for mode in ["soft", "top2", "top1"]:
        m = MoE(d, h, C, K, seed=5, device=device)
        opt = torch.optim.SGD(m.parameters(), lr=2.0)
        step = make_step(m, opt, mode)
        first = step(xs, ys).item()
        for _ in range(40):
            last = step(xs, ys).item()
        if not last < 0.7 * first:
            raise AssertionError(f"self-check {mode}: objective {first:.4f} -> {last:.4f} after 40 steps on separable data")
    log("self-check passed (sparse == dense values and gradients; top1 == chosen expert; ECE == numpy; objective decreases)")


# ------------------------------------------------------------------------------------------------
# workloads


def run_train(args, em: Emitter, timer: Timer, workload: str) -> None:
    B, d, h, C, K = (SMOKE_SHAPES if args.smoke else SHAPES)[workload]
    if workload == "w1" and args.batch:
        B = args.batch
    dev = args.device
    log(f"{workload.upper()}: train step B={B} d={d} h={h} C={C} K={K}, tilted eta={ETA}, SGD; best of {args.repeat} after {args.warmup} (eager) / {args.compile_warmup} (compile) warm-up steps")
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(B, d, generator=g).to(dev)
    y = torch.randint(0, C, (B,), generator=g).to(dev)
    for mode in args.modes or MODES[workload]:
        for variant in variants(args):
            try:
                cuda = dev.startswith("cuda")
                if cuda:  # device memory the step needs beyond the batch (calmoe_bench's memory_peak)
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                model = MoE(d, h, C, K, seed=2, device=dev)
                opt = torch.optim.SGD(model.parameters(), lr=LR)
                step = compiled(make_step(model, opt, "top1" if mode == "hard" else mode), variant)
                t = timer.time(lambda: step(x, y), warmups(args, variant), args.repeat)
                em.emit(variant, workload, mode, "throughput", B / t, "examples/s")
                memory = ""
                if cuda:
                    gib = (torch.cuda.max_memory_allocated() - before) / 2**30
                    em.emit(variant, workload, mode, "memory_peak", gib, "GiB")
                    memory = f"; device memory {gib:.2f} GiB"
                log(f"  pytorch-{variant} {mode}: {B / t:,.0f} examples/s ({t * 1e3:.2f} ms/step{memory})")
            except Exception as err:  # torch.compile failures (and OOM) are reported, not fatal
                log(f"  pytorch-{variant} {mode}: FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                if args.verbose:
                    traceback.print_exc()
            finally:
                if dev.startswith("cuda"):
                    torch.cuda.empty_cache()
            if variant == "compile":
                reset_compiled()


def run_eval(args, em: Emitter, timer: Timer) -> None:
    B, d, h, C, K = (SMOKE_SHAPES if args.smoke else SHAPES)["w1"]
    rows = args.rows or (1000 if args.smoke else 200_000)
    chunk = args.eval_chunk or rows
    dev = args.device
    log(f"W2: eval forward + ECE over {rows} rows (d={d} h={h} C={C} K={K}), chunks of {chunk}; best of {args.repeat}")
    g = torch.Generator(device="cpu").manual_seed(3)
    x = torch.randn(rows, d, generator=g).to(dev)
    y = torch.randint(0, C, (rows,), generator=g).to(dev)
    model = MoE(d, h, C, K, seed=4, device=dev)
    for mode in args.modes or MODES["w2"]:
        for variant in variants(args):
            try:
                fwd = compiled(lambda xx, m=mode: model(xx, m, train=False), variant)

                @torch.inference_mode()
                def run() -> float:
                    s = None
                    for i in range(0, rows, chunk):
                        si = ece_sums(fwd(x[i:i + chunk]), y[i:i + chunk])
                        s = si if s is None else s + si
                    return ece_from_sums(s, rows)  # .item(): the result reaches the host

                ece = run()
                t = timer.time(run, warmups(args, variant), args.repeat)
                em.emit(variant, "w2", mode, "throughput", rows / t, "rows/s")
                log(f"  pytorch-{variant} {mode}: {rows / t:,.0f} rows/s ({t * 1e3:.2f} ms, ece {ece:.6f})")
            except Exception as err:
                log(f"  pytorch-{variant} {mode}: FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                if args.verbose:
                    traceback.print_exc()
            if variant == "compile":
                reset_compiled()


def run_w3(args, em: Emitter, timer: Timer) -> None:
    rows = args.w3_rows or (10_000 if args.smoke else 10_000_000)
    C = 10
    dev = args.device
    log(f"W3: ECE over {rows} x {C} float32 probabilities ({rows * C * 4 / 1e9:.2f} GB) on {dev}; best of {args.repeat}")
    g = torch.Generator(device=dev).manual_seed(42)
    u = torch.rand(rows, C, generator=g, device=dev) * torch.rand(rows, C, generator=g, device=dev) + 1e-3
    p = u / u.sum(dim=1, keepdim=True)
    del u
    y = torch.randint(0, C, (rows,), generator=g, device=dev)
    for variant in variants(args):
        try:
            f = compiled(ece_sums, variant)

            @torch.inference_mode()
            def run() -> float:
                return ece_from_sums(f(p, y), rows)

            ece = run()
            t = timer.time(run, warmups(args, variant), args.repeat)
            em.emit(variant, "w3", "ece", "throughput", rows / t, "rows/s")
            em.emit(variant, "w3", "ece", "bandwidth", rows * C * 4 / t / 1e9, "GB/s")
            log(f"  pytorch-{variant}: {rows / t / 1e6:,.1f} M rows/s, {rows * C * 4 / t / 1e9:.1f} GB/s (ece {ece:.6f})")
        except Exception as err:
            log(f"  pytorch-{variant} w3: FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            if args.verbose:
                traceback.print_exc()
        if variant == "compile":
            reset_compiled()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=[], help="w1 w1l w2 w3 (default: all; w1l only on cuda unless --smoke)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for a logic check on any machine")
    ap.add_argument("--modes", type=lambda s: s.split(","), default=None, help="comma list (default: the workload's)")
    ap.add_argument("--batch", type=int, default=0, help="W1 batch (default 2048)")
    ap.add_argument("--rows", type=int, default=0, help="W2 rows (default 200,000)")
    ap.add_argument("--eval-chunk", type=int, default=0, help="W2 rows per forward (default: all rows at once)")
    ap.add_argument("--w3-rows", type=int, default=0, help="W3 rows (default 10,000,000)")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs, best of (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up runs before timing, eager (default 3)")
    ap.add_argument("--compile-warmup", type=int, default=10,
                    help="warm-up runs before timing, torch.compile (default 10: the first compiles and, as the "
                         "expert group sizes change, the recompile with dynamic shapes happen here)")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--no-check", action="store_true", help="skip the self-check")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default: full fp32, as calmoe)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        log("CUDA is not available to torch; use --device cpu (with --smoke for a quick check)")
        return 2
    workloads = args.workloads or (["w1", "w1l", "w2", "w3"] if args.device.startswith("cuda") or args.smoke else ["w1", "w2", "w3"])
    for w in workloads:
        if w not in ("w1", "w1l", "w2", "w3"):
            log(f"unknown workload {w!r} (known: w1 w1l w2 w3)")
            return 2

    em, timer = Emitter(args.device, args.tf32), Timer(args.device)
    info = f"torch {torch.__version__}, numpy {np.__version__}, device {args.device}"
    if args.device.startswith("cuda"):
        cap = torch.cuda.get_device_capability()
        info += f" ({em.card}, sm_{cap[0]}{cap[1]}, CUDA {torch.version.cuda}, TF32 {'on' if args.tf32 else 'off'})"
    else:
        info += f" ({torch.get_num_threads()} threads)"
    log(info)
    if not args.no_check:
        self_check(args.device)  # in FP32: it checks the logic; TF32 rounding differs between paths
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    for w in workloads:
        if w in ("w1", "w1l"):
            run_train(args, em, timer, w)
        elif w == "w2":
            run_eval(args, em, timer)
        else:
            run_w3(args, em, timer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
