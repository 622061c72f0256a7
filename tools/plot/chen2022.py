#!/usr/bin/env python3
"""Dispatch entropy over training for the runs of experiments/chen2022.sh (Chen et al. 2022's
exploration stage, then router learning).

    tools/plot/chen2022.py runs/chen2022 -o entropy.png [--split train|eval] [--settings 1 2]

One panel per setting; one line per MoE model (the mean over its seeds, the band one std), read
from each run's layers.csv: `dispatch_entropy` at the train rows (the training batch routed with
the gating noise, as the paper measures it; the default) or at the eval rows (held-out, no noise).
The single-expert baselines are left out (their entropy is ln K at every step).
Python 3 with matplotlib and pandas (tools/plot/common.py).
"""

import argparse
import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pyplot  # noqa: E402


def fail(msg):
    sys.stderr.write(f"chen2022.py: error: {msg}\n")
    sys.exit(2)


def series(run_dir, split):
    steps, values = [], []
    with open(os.path.join(run_dir, "layers.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == split and r["dispatch_entropy"] != "":
                steps.append(int(r["step"]))
                values.append(float(r["dispatch_entropy"]))
    return steps, values


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="the OUT_DIR of experiments/chen2022.sh")
    ap.add_argument("-o", "--output", required=True, help="figure file (.png, .pdf, .svg)")
    ap.add_argument("--split", choices=["train", "eval"], default="train")
    ap.add_argument("--settings", nargs="*", default=None, help="settings to draw (default: all)")
    a = ap.parse_args()
    if not os.path.isdir(a.out_dir):
        fail(f"no such directory: {a.out_dir}")
    settings = sorted(d[1:] for d in os.listdir(a.out_dir) if d.startswith("s") and d[1:].isdigit())
    if a.settings:
        settings = [s for s in settings if s in a.settings]
    if not settings:
        fail(f"no setting folders (s1, s2, ..) in {a.out_dir}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 3.6), squeeze=False)
    for ax, s in zip(axes[0], settings):
        sdir = os.path.join(a.out_dir, f"s{s}")
        for model in sorted(os.listdir(sdir)):
            if not model.startswith("moe_"):
                continue
            curves = []
            for seed in sorted(os.listdir(os.path.join(sdir, model))):
                d = os.path.join(sdir, model, seed)
                if os.path.isfile(os.path.join(d, "layers.csv")):
                    curves.append(series(d, a.split))
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            steps = curves[0][0][:n]
            mean = [sum(c[1][i] for c in curves) / len(curves) for i in range(n)]
            std = [math.sqrt(sum((c[1][i] - mean[i]) ** 2 for c in curves) / len(curves)) for i in range(n)]
            line, = ax.plot(steps, mean, label=f"{model} ({len(curves)} seeds)")
            ax.fill_between(steps, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                            color=line.get_color(), alpha=0.2)
        ax.axhline(math.log(4), color="grey", lw=0.8, ls=":")
        ax.set_title(f"setting {s}")
        ax.set_xlabel("step")
        ax.set_ylabel(f"dispatch entropy ({a.split}), nats")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.output)


if __name__ == "__main__":
    main()
