#!/usr/bin/env python3
"""moe-sim bench side by side with the PyTorch reference (torch_reference.py), alternating them.

For every bench config (configs/bench/*.yaml, or the ones named), for R rounds: run
`moe-sim bench CONFIG --csv`, then the PyTorch reference with the same model arguments (read from
the resolved config that `moe-sim validate` prints). Prints a table of medians and ratios, the
scaling in N (n8 -> n512), and writes every raw row to --raw (CSV).

    experiments/bench_vs_torch.py [CONFIG_NAME ...] [--rounds 3] [--steps 20] [--warmup 5]
        [--threads 2] [--moesim build/release/moe-sim]
        [--peer experiments/torch_reference.py] [--python python3] [--impl sparse]
        [--set KEY=VALUE ...] [--raw bench_vs_torch.csv] [--no-rss] [--no-torch]
        [--device cpu|cuda]

Figure of the raw CSV (ms per step against N experts, speedup): tools/plot/bench.py RAW.csv.

The reference is this repository's experiments/torch_reference.py (the same model, loss and Adam
step, written in plain PyTorch; its docstring describes it); --peer runs another script with
the same arguments and CSV output instead.

Environment (same as the options, options win): MOESIM, TORCH_BENCH (the peer script), PYTHON
(the interpreter that has torch: pip install torch, or Debian's python3-torch with
PYTHON=/usr/bin/python3). Standard library only: the script itself does not need torch, and
neither does the build or the test suite.

Each program reports per-step medians over --steps timed steps after --warmup; the table gives,
per config, the median over the rounds of those medians, and the best (min) step time seen.
GFLOP/s: each program's counted FLOPs (docs/performance.md) with its own processed assignments;
for the reference they are A = T*k*(1 - drop_fraction) from its CSV, for moe-sim the count it
prints. The two programs do not route identically (different init and data), so their drop
fractions, hence their counted FLOPs, differ a little; both are shown.
--device cuda runs both on the GPU (moe-sim with device=cuda, the reference with --device cuda;
both wait for the GPU at the end of each timed step); --threads then only sets the host threads.
Peak RSS (KiB -> MiB) is measured with /usr/bin/time when it exists (off with --no-rss).
The environment passes through to both programs: on a machine shared with other work, OpenMP's
spinning barriers make both collapse at 2 threads; OMP_WAIT_POLICY=passive before the script
keeps them usable (docs/performance.md).
"""
import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = ["tiny", "small", "medium", "n8", "n64", "n512"]


def resolved_config(moesim, path, overrides):
    """The resolved config as {dotted.key: text}, from `moe-sim validate` (indentation = nesting)."""
    out = subprocess.run([moesim, "validate", path] + overrides, check=True, capture_output=True,
                         text=True).stdout
    values, stack = {}, []
    for line in out.splitlines():
        body = line.split("#", 1)[0].rstrip()
        if not body.strip():
            continue
        depth = (len(body) - len(body.lstrip(" "))) // 2
        key, _, val = body.strip().partition(":")
        stack = stack[:depth] + [key]
        if val.strip():
            values[".".join(stack)] = val.strip()
    return values


def peer_args(cfg, a):
    """Arguments of the reference (torch_reference.py) for the same model."""
    if cfg["model.layers"] != "1" or cfg["model.moe_every"] != "1":
        sys.exit("bench_vs_torch: the reference has one MoE block; the config must have "
                 "model.layers 1, moe_every 1")
    return ["--impl", a.impl, "--d-in", cfg["data.clusters.dim"], "--d-model", cfg["model.d_model"],
            "--d-ff", cfg["experts.d_ff"], "--experts", cfg["experts.count"], "--k", cfg["router.k"],
            "--capacity-factor", cfg["capacity.factor"], "--batch", cfg["train.batch_size"],
            "--classes", cfg["data.clusters.num_classes"], "--threads", str(a.threads),
            "--lr", cfg["train.lr"], "--alpha", cfg["balance.alpha"],
            "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", getattr(a, "device", "cpu"),
            "--header"]


def counted_flops(cfg, assignments):
    """cli/bench_flops.h for one MoE block with a gelu/relu expert (what the reference models)."""
    T, din = int(cfg["train.batch_size"]), int(cfg["data.clusters.dim"])
    d, h = int(cfg["model.d_model"]), int(cfg["experts.d_ff"])
    n, c = int(cfg["experts.count"]), int(cfg["data.clusters.num_classes"])
    return (2 * (2 * T * din * d) + 3 * (2 * T * d * n) + 3 * (4 * assignments * d * h)
            + 3 * (2 * T * d * c))


def assignments_from_flops(cfg, flops):
    T, din = int(cfg["train.batch_size"]), int(cfg["data.clusters.dim"])
    d, h = int(cfg["model.d_model"]), int(cfg["experts.d_ff"])
    return (flops - counted_flops(cfg, 0)) / (3 * 4 * d * h)


def run_timed(cmd, rss):
    """Runs cmd; returns (stdout, peak RSS in MiB or None)."""
    env = dict(os.environ)
    if rss:
        with tempfile.NamedTemporaryFile("r", suffix=".rss") as f:
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd,
                               capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"bench_vs_torch: failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
            txt = f.read().strip().splitlines()
            kib = float(txt[-1]) if txt else float("nan")
            return p.stdout, kib / 1024.0
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"bench_vs_torch: failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout, None


def csv_row(text):
    """The one data row of a header + row CSV output (other lines, e.g. warnings, are skipped)."""
    lines = [l for l in text.splitlines() if "," in l]
    hdr = next(i for i, l in enumerate(lines) if l.startswith(("experts.count,", "impl,")))
    return next(csv.DictReader(io.StringIO("\n".join(lines[hdr:hdr + 2]))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS,
                    help="names in configs/bench/ (or paths to YAML files)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impl", choices=("sparse", "dense"), default="sparse")
    ap.add_argument("--moesim", default=os.environ.get("MOESIM", os.path.join(REPO, "build/release/moe-sim")))
    ap.add_argument("--peer", default=os.environ.get(
        "TORCH_BENCH", os.path.join(REPO, "experiments", "torch_reference.py")))
    ap.add_argument("--python", default=os.environ.get("PYTHON", "python3"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for moe-sim (repeatable); the reference gets the same "
                         "model arguments from the resolved config, e.g. --set capacity.factor=0")
    ap.add_argument("--raw", default="", help="also write every raw row to this CSV file")
    ap.add_argument("--no-rss", action="store_true", help="do not measure peak RSS")
    ap.add_argument("--no-torch", action="store_true", help="run moe-sim only")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where both programs run (moe-sim's device key, the reference's --device)")
    a = ap.parse_args()
    a.set = a.set + [f"device={a.device}"]

    if not os.access(a.moesim, os.X_OK):
        sys.exit(f"bench_vs_torch: no moe-sim binary at {a.moesim} (build it, or pass --moesim / MOESIM)")
    with_torch = not a.no_torch
    if with_torch:
        if not os.path.exists(a.peer):
            sys.exit(f"bench_vs_torch: no PyTorch reference at {a.peer} (pass --peer or TORCH_BENCH)")
        probe = subprocess.run(
            [a.python, "-c", "import re, torch; m = re.search(r'BLAS_INFO=(\\w+)', torch.__config__.show()); "
             "print(torch.__version__, 'BLAS_INFO=' + (m.group(1) if m else '?'))"],
            capture_output=True, text=True)
        if probe.returncode != 0:
            sys.exit(f"bench_vs_torch: {a.python} cannot import torch; pass --python / PYTHON, "
                     "or --no-torch to run moe-sim only")
        torch_version = probe.stdout.strip()
    rss = not a.no_rss and shutil.which("/usr/bin/time") is not None

    raw = []   # dicts: config, program, round, ms_median, ms_min, ms_max, gflop, rss_mib
    info = {}
    for name in a.configs:
        path = name if name.endswith((".yaml", ".yml")) else os.path.join(REPO, "configs", "bench", name + ".yaml")
        label = os.path.splitext(os.path.basename(path))[0]
        cfg = resolved_config(a.moesim, path, a.set)
        info[label] = cfg
        moe_cmd = [a.moesim, "bench", path] + a.set + ["--csv", "--steps", str(a.steps), "--warmup",
                   str(a.warmup), "--threads", str(a.threads)]
        peer_cmd = [a.python, a.peer] + peer_args(cfg, a)
        T, k = int(cfg["train.batch_size"]), int(cfg["router.k"])
        for r in range(a.rounds):
            for prog in (("moe-sim", "torch") if with_torch else ("moe-sim",)):
                out, mib = run_timed(moe_cmd if prog == "moe-sim" else peer_cmd, rss)
                row = csv_row(out)
                raw.append({
                    "config": label, "program": prog, "round": r + 1,
                    "ms_median": float(row["ms_per_step_median"]),
                    "ms_min": float(row["ms_per_step_min"]),
                    "ms_max": float(row["ms_per_step_max"]),
                    "gflop": float(row["gflop_per_step"]) if prog == "moe-sim" else
                             counted_flops(cfg, T * k * (1.0 - float(row["drop_fraction"]))) * 1e-9,
                    "drop": float(row["drop_fraction"]) if prog == "torch" else
                            1.0 - assignments_from_flops(cfg, float(row["gflop_per_step"]) * 1e9) / (T * k),
                    "rss_mib": mib if mib is not None else float("nan"),
                    "blas": row.get("blas", ""),
                })
                print(f"  {label:8s} round {r + 1} {prog:7s} median {raw[-1]['ms_median']:9.3f} ms"
                      f"  min {raw[-1]['ms_min']:9.3f} ms", file=sys.stderr, flush=True)

    if a.raw:
        with open(a.raw, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(raw[0].keys()))
            w.writeheader()
            w.writerows(raw)

    def agg(label, prog, key, fn):
        v = [x[key] for x in raw if x["config"] == label and x["program"] == prog]
        return fn(v) if v else float("nan")

    print(f"\nmoe-sim: {a.moesim}; device {a.device}; threads {a.threads}; {a.rounds} rounds x {a.steps} timed steps "
          f"(+{a.warmup} warm-up), alternating; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    if with_torch:
        blas = {x["blas"] for x in raw if x["program"] == "torch"}
        print(f"PyTorch {torch_version} ({a.python}), --impl {a.impl}, blas as the reference "
              f"reports it: {', '.join(sorted(blas))}")
    print()
    hdr = ("| config | N | d_model | d_ff | tokens | moe-sim GFLOP/step | moe-sim drop % "
           "| moe-sim ms (med) | moe-sim ms (best) | moe-sim GFLOP/s |")
    sep = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    if with_torch:
        hdr += (" torch GFLOP/step | torch drop % | torch ms (med) | torch ms (best) | torch GFLOP/s "
                "| speedup (med) | speedup (best) |")
        sep += " ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    if rss:
        hdr += " moe-sim RSS MiB |" + (" torch RSS MiB |" if with_torch else "")
        sep += " ---: |" + (" ---: |" if with_torch else "")
    print(hdr)
    print(sep)
    summary = {}
    for label, cfg in info.items():
        gf = agg(label, "moe-sim", "gflop", statistics.mean)
        m_med = agg(label, "moe-sim", "ms_median", statistics.median)
        m_best = agg(label, "moe-sim", "ms_min", min)
        line = (f"| {label} | {cfg['experts.count']} | {cfg['model.d_model']} | {cfg['experts.d_ff']} "
                f"| {cfg['train.batch_size']} | {gf:.3f} | {max(0.0, 100 * agg(label, 'moe-sim', 'drop', statistics.mean)):.1f} "
                f"| {m_med:.2f} | {m_best:.2f} | {gf / m_med * 1e3:.1f} |")
        summary[label] = {"gflop": gf, "moe": m_med, "moe_best": m_best}
        if with_torch:
            tg = agg(label, "torch", "gflop", statistics.mean)
            t_med = agg(label, "torch", "ms_median", statistics.median)
            t_best = agg(label, "torch", "ms_min", min)
            summary[label].update(tgflop=tg, torch=t_med, torch_best=t_best)
            line += (f" {tg:.3f} | {max(0.0, 100 * agg(label, 'torch', 'drop', statistics.mean)):.1f} | {t_med:.2f} "
                     f"| {t_best:.2f} | {tg / t_med * 1e3:.1f} | {t_med / m_med:.2f}x | {t_best / m_best:.2f}x |")
        if rss:
            line += f" {agg(label, 'moe-sim', 'rss_mib', max):.1f} |"
            if with_torch:
                line += f" {agg(label, 'torch', 'rss_mib', max):.1f} |"
        print(line)

    if "n8" in summary and "n512" in summary:
        s8, s512 = summary["n8"], summary["n512"]
        fl = s512["gflop"] / s8["gflop"]
        print(f"\nScaling in N, n8 -> n512: moe-sim counted FLOPs x{fl:.2f}; moe-sim step time "
              f"x{s512['moe'] / s8['moe']:.2f} (median), x{s512['moe_best'] / s8['moe_best']:.2f} (best)"
              + (f"; torch counted FLOPs x{s512['tgflop'] / s8['tgflop']:.2f}, "
                 f"torch step time x{s512['torch'] / s8['torch']:.2f} (median), "
                 f"x{s512['torch_best'] / s8['torch_best']:.2f} (best)" if with_torch else ""))
        if "n64" in summary:
            s64 = summary["n64"]
            print(f"  n64: counted FLOPs x{s64['gflop'] / s8['gflop']:.2f}; moe-sim x{s64['moe'] / s8['moe']:.2f}"
                  + (f"; torch x{s64['torch'] / s8['torch']:.2f}" if with_torch else ""))


if __name__ == "__main__":
    main()
