#!/usr/bin/env python3
"""The PyTorch reference of one moe-sim training step, for experiments/bench_vs_torch.py.

The same model, loss and optimizer as `moe-sim bench` on a configs/bench/*.yaml config (one block,
one MoE layer), written the way a PyTorch user would write it, so that the step times compare
two implementations of one computation:

    h      = embed(x)                      Linear(d_in, d_model)
    probs  = softmax(router(h))            router: Linear(d_model, N), no bias
    top-k of probs, the k weights renormalised to sum to 1
    capacity C = ceil(capacity_factor * T * k / N) per expert (capacity_factor 0: no limit);
    an expert takes its assignments in token order and drops those past C (a dropped
    assignment adds nothing, the kept weights are not renormalised again)
    y      = sum over kept assignments of weight * expert(h)
             expert: Linear(d_model, d_ff) -> GELU (erf) -> Linear(d_ff, d_model)
    logits = head(h + y)                   Linear(d_model, classes)
    loss   = cross_entropy(logits, labels) + alpha * N * sum_i f_i * P_i
             f_i: share of the T*k assignments routed to expert i (before capacity), no gradient;
             P_i: mean router probability of expert i (Switch Transformer balancing loss)
    Adam(lr), one step per batch.

Data: Gaussian clusters (one centre per class, label = cluster), made once and reused; not timed.

--impl sparse  dispatch per expert: the rows routed to it are gathered, run and index_add_'ed
               back (as Hugging Face's Mixtral layer does).
--impl dense   every expert runs on every token; a [T, N] matrix of kept weights (zero elsewhere)
               combines their outputs.
Both compute the same function and gradients: --verify checks it and exits 1 if not.

Timing: time.perf_counter around each step (zero_grad, forward, backward, optimizer step,
loss.item()), --steps timed steps after --warmup untimed ones. Output: one CSV row (--header
first prints the column names):

    impl,d_in,d_model,d_ff,experts,k,capacity_factor,batch,threads,ms_per_step_median,
    tokens_per_s,drop_fraction,final_loss,first_loss,ms_per_step_min,ms_per_step_max,blas

drop_fraction: dropped assignments / (T*k), the mean over the timed steps; blas: the BLAS library
torch uses for its matrix products, as far as can be told.

Needs torch (pip install torch, or Debian's python3-torch); nothing else of this repository
does, CI included.

    python3 experiments/torch_reference.py --impl sparse --d-in 32 --d-model 128 --d-ff 512 \\
        --experts 16 --k 2 --capacity-factor 1.25 --batch 4096 --classes 16 --threads 2 --header
"""
import argparse
import math
import re
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_reference.py: error: {e}; install torch (pip install torch, or python3-torch)")

COLUMNS = ("impl", "d_in", "d_model", "d_ff", "experts", "k", "capacity_factor", "batch", "threads",
           "ms_per_step_median", "tokens_per_s", "drop_fraction", "final_loss", "first_loss",
           "ms_per_step_min", "ms_per_step_max", "blas")


class FeedForward(nn.Module):
    """One expert: d_model -> d_ff -> GELU -> d_model."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)

    def forward(self, h):
        return self.down(F.gelu(self.up(h)))


def route(probs, k, capacity_factor):
    """Top-k choice, renormalised weights and the capacity cut.

    Returns (combine [T, N]: the kept weight of each token for each expert, 0 elsewhere;
             chosen [T, N]: 1 where the token chose the expert, before capacity, no gradient;
             dropped: the number of dropped assignments)."""
    T, N = probs.shape
    top_p, top_i = probs.topk(k, dim=1)
    weights = top_p / top_p.sum(dim=1, keepdim=True)
    chosen = torch.zeros(T, N, dtype=probs.dtype, device=probs.device).scatter_(1, top_i, 1.0)
    if capacity_factor > 0:
        capacity = math.ceil(capacity_factor * T * k / N)
        # The place of each token in its expert's queue: earlier tokens first.
        place = chosen.cumsum(dim=0) - 1.0
        kept = chosen * (place < capacity).to(probs.dtype)
    else:
        kept = chosen
    weight_map = torch.zeros_like(probs).scatter(1, top_i, weights)
    combine = weight_map * kept
    dropped = int((chosen.sum() - kept.sum()).item())
    return combine, chosen, dropped


class MoEClassifier(nn.Module):
    def __init__(self, d_in, d_model, d_ff, experts, k, classes, capacity_factor, impl):
        super().__init__()
        self.embed = nn.Linear(d_in, d_model)
        self.router = nn.Linear(d_model, experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff) for _ in range(experts))
        self.head = nn.Linear(d_model, classes)
        self.k, self.capacity_factor, self.impl = k, capacity_factor, impl
        self.last_dropped = 0

    def moe(self, h, combine):
        if self.impl == "dense":
            out = torch.zeros_like(h)
            for e, expert in enumerate(self.experts):
                out = out + expert(h) * combine[:, e:e + 1]
            return out
        out = torch.zeros_like(h)
        active = (combine > 0).any(dim=0).nonzero().flatten().tolist()
        for e in active:
            rows = (combine[:, e] > 0).nonzero().flatten()
            out.index_add_(0, rows, self.experts[e](h[rows]) * combine[rows, e:e + 1])
        return out

    def forward(self, x, labels, alpha):
        h = self.embed(x)
        probs = F.softmax(self.router(h), dim=1)
        combine, chosen, self.last_dropped = route(probs, self.k, self.capacity_factor)
        logits = self.head(h + self.moe(h, combine))
        n = probs.shape[1]
        f = chosen.sum(dim=0) / chosen.sum()
        aux = n * (f * probs.mean(dim=0)).sum()
        return F.cross_entropy(logits, labels) + alpha * aux


def clusters(n, d_in, classes, noise, centre_scale, generator, device):
    centres = torch.randn(classes, d_in, generator=generator) * centre_scale
    labels = torch.randint(0, classes, (n,), generator=generator)
    x = centres[labels] + noise * torch.randn(n, d_in, generator=generator)
    return x.to(device), labels.to(device)


def blas_name():
    """The BLAS torch multiplies with: a library mapped into this process, else torch's build info."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
        for lib, name in (("libmkl", "mkl"), ("libopenblas", "openblas"), ("libblis", "blis"),
                          ("libatlas", "atlas")):
            if re.search(rf"/{lib}[^/\s]*\.so", maps):  # not libscipy_openblas (numpy's own)
                return name
        if re.search(r"/libblas\.so", maps):
            return "libblas(reference)"
    except OSError:
        pass
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def build(a, impl, device):
    torch.manual_seed(a.seed)
    model = MoEClassifier(a.d_in, a.d_model, a.d_ff, a.experts, a.k, a.classes, a.capacity_factor,
                          impl).to(device)
    return model


def verify(a, device):
    """Both impls from the same weights on the same batch: the same loss and gradients."""
    g = torch.Generator().manual_seed(a.seed + 1)
    x, y = clusters(a.batch, a.d_in, a.classes, a.noise, a.centre_scale, g, device)
    results = {}
    for impl in ("sparse", "dense"):
        model = build(a, impl, device)
        loss = model(x, y, a.alpha)
        loss.backward()
        results[impl] = (loss.item(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                                       for p in model.parameters()])
    (ls, gs), (ld, gd) = results["sparse"], results["dense"]
    worst = max(float((u - v).abs().max()) for u, v in zip(gs, gd))
    ok = abs(ls - ld) <= 1e-5 * max(1.0, abs(ls)) and worst <= 1e-5
    print(f"verify: loss sparse {ls:.7f} dense {ld:.7f}; largest gradient difference {worst:.2e}: "
          f"{'OK' if ok else 'MISMATCH'}")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="The model, the timing and the output are described in this "
                                       "file's docstring.")
    p.add_argument("--impl", choices=("sparse", "dense"), default="sparse")
    p.add_argument("--d-in", type=int, default=32)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--d-ff", type=int, default=64)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--capacity-factor", type=float, default=1.25, help="0: no capacity limit")
    p.add_argument("--batch", type=int, default=1024, help="tokens per step (T)")
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--alpha", type=float, default=0.01, help="balancing loss coefficient")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--noise", type=float, default=1.0, help="std of the points around their centre")
    p.add_argument("--centre-scale", type=float, default=1.0, help="std of the cluster centres")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--header", action="store_true", help="print the CSV column names first")
    p.add_argument("--verify", action="store_true", help="check that both impls agree, then exit")
    a = p.parse_args()
    if a.k < 1 or a.k > a.experts:
        p.error(f"--k must be in 1..--experts ({a.experts}), got {a.k}")
    if a.steps < 1:
        p.error("--steps must be at least 1")

    torch.set_num_threads(max(1, a.threads))
    device = torch.device(a.device)
    if a.verify:
        sys.exit(0 if verify(a, device) else 1)

    model = build(a, a.impl, device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed + 1)
    x, y = clusters(a.batch, a.d_in, a.classes, a.noise, a.centre_scale, g, device)

    times, drops, losses = [], [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y, a.alpha)
        loss.backward()
        opt.step()
        value = loss.item()  # also waits for a GPU
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
            drops.append(model.last_dropped / (a.batch * a.k))
            losses.append(value)

    med = statistics.median(times)
    row = {
        "impl": a.impl, "d_in": a.d_in, "d_model": a.d_model, "d_ff": a.d_ff, "experts": a.experts,
        "k": a.k, "capacity_factor": f"{a.capacity_factor:g}", "batch": a.batch, "threads": a.threads,
        "ms_per_step_median": f"{med * 1e3:.3f}", "tokens_per_s": f"{a.batch / med:.1f}",
        "drop_fraction": f"{statistics.mean(drops):.6f}", "final_loss": f"{losses[-1]:.6f}",
        "first_loss": f"{losses[0]:.6f}", "ms_per_step_min": f"{min(times) * 1e3:.3f}",
        "ms_per_step_max": f"{max(times) * 1e3:.3f}", "blas": blas_name(),
    }
    if a.header:
        print(",".join(COLUMNS))
    print(",".join(str(row[c]) for c in COLUMNS))


if __name__ == "__main__":
    main()
