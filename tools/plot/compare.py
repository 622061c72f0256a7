#!/usr/bin/env python3
"""The same statistic over steps for several moe-sim runs, one line each.

    tools/plot/compare.py RUN_DIR RUN_DIR ... --y STAT[,STAT] [--split train|eval] [--layer L|mean]
                          [--smooth W] [--logy] [--labels A,B,...] [-o FILE]

STAT is a column of metrics.csv (loss, accuracy, ...) or layers.csv (max_vio, drop_rate,
spec_nmi, ...; see docs/metrics.md). Each line is labelled by what differs between the runs'
config.yaml files (e.g. `balance.alpha=0` vs `balance.alpha=0.01`). --split defaults to train
where the statistic has train rows, else eval; --layer defaults to the mean over MoE layers.
Default output: compare_<STAT>.png in the current directory.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import np  # noqa: E402

KEY_COLS = {"step", "split", "layer"}
MAX_LABEL_KEYS = 4


def differing_labels(runs):
    """Labels from the config keys whose values differ between the runs (name only if nothing
    else differs); the run directory name when the configs are equal or missing."""
    configs = [r.config for r in runs]
    keys = sorted(set().union(*configs)) if configs else []
    diff = [k for k in keys if len({c.get(k, "—") for c in configs}) > 1]
    ignore = {"name", "threads"}
    main = [k for k in diff if k not in ignore] or [k for k in diff if k == "name"]
    if not main:
        return [os.path.basename(os.path.normpath(r.dir)) for r in runs], ""
    labels = []
    for c in configs:
        parts = [f"{k}={c.get(k, '—')}" for k in main[:MAX_LABEL_KEYS]]
        if len(main) > MAX_LABEL_KEYS:
            parts.append("…")
        labels.append(", ".join(parts))
    if len(set(labels)) < len(labels):  # identical after truncation: add the directory
        labels = [f"{lab} ({os.path.basename(os.path.normpath(r.dir))})" for lab, r in zip(labels, runs)]
    return labels, ", ".join(main)


def series(run, stat, split, layer):
    """(steps, values, source file, split used) of one statistic of one run."""
    if stat in run.metrics.columns and stat not in KEY_COLS:
        df, source = run.metrics, "metrics.csv"
    elif stat in run.layers.columns and stat not in KEY_COLS:
        df, source = run.layers, "layers.csv"
    else:
        return None
    if df.empty:
        return np.array([]), np.array([]), source, split or "train"
    if split is None:
        tr = df[df["split"] == "train"]
        split = "train" if (not tr.empty and tr[stat].notna().any()) else "eval"
    d = df[df["split"] == split]
    if source == "layers.csv":
        if layer == "mean":
            d = d.groupby("step", as_index=False)[stat].mean()
        else:
            d = d[d["layer"] == layer]
    d = d[["step", stat]].dropna().sort_values("step")
    return d["step"].to_numpy(), d[stat].to_numpy(dtype=float), source, split


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: tools/plot/compare.py runs/a0 runs/a1e-2 runs/bias --y max_vio,loss")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="moe-sim run directories")
    p.add_argument("--y", required=True, metavar="STAT[,STAT]",
                   help="column(s) of metrics.csv or layers.csv, one panel each")
    p.add_argument("--split", choices=("train", "eval"), help="rows to plot (default: train where present, else eval)")
    p.add_argument("--layer", default="mean", metavar="L|mean",
                   help="MoE layer index for layers.csv statistics, or mean over layers (default)")
    p.add_argument("--smooth", type=int, default=1, metavar="W",
                   help="centred rolling mean over W log rows (default 1: none)")
    p.add_argument("--logy", action="store_true", help="log-scale y axis")
    p.add_argument("--labels", metavar="A,B,...", help="line labels, one per run (default: the config differences)")
    common.add_output_args(p, "compare_<STAT>.png", "900 x 430 per statistic")
    a = p.parse_args()

    stats = [s.strip() for s in a.y.split(",") if s.strip()]
    if not stats:
        common.die("--y needs at least one statistic")
    if a.layer != "mean":
        try:
            a.layer = int(a.layer)
        except ValueError:
            common.die(f"--layer {a.layer}: expected a layer index (0, 1, ...) or `mean`")
    if a.smooth < 1:
        common.die(f"--smooth {a.smooth}: expected a window of 1 or more rows")
    runs = [common.Run(d) for d in a.runs]
    labels, _ = differing_labels(runs)
    if a.labels:
        labels = [s.strip() for s in a.labels.split(",")]
        if len(labels) != len(runs):
            common.die(f"--labels has {len(labels)} labels for {len(runs)} runs")

    for stat in stats:
        for r in runs:
            if stat in KEY_COLS or (stat not in r.metrics.columns and stat not in r.layers.columns):
                m = [c for c in r.metrics.columns if c not in KEY_COLS]
                ly = [c for c in r.layers.columns if c not in KEY_COLS]
                common.die(f"no column `{stat}` in {r.dir}; metrics.csv has: {', '.join(m) or '(nothing yet)'}; "
                           f"layers.csv has: {', '.join(ly) or '(nothing yet)'}")
        if a.layer != "mean":
            for r in runs:
                if stat in r.layers.columns and stat not in r.metrics.columns and a.layer not in r.layer_ids():
                    common.die(f"--layer {a.layer}: {r.dir} has MoE layers {r.layer_ids() or 'none'}")

    out = a.output or f"compare_{'_'.join(stats)}.png"
    common.check_output(out)
    common.style()
    width, height = (900, 80 + 400 * len(stats))
    if a.size:
        width, height = common.parse_size(a.size)
    fig = common.new_figure(width, height)
    axes = fig.subplots(len(stats), 1, squeeze=False)[:, 0]
    for ax, stat in zip(axes, stats):
        split_used = set()
        source = ""
        drawn = 0
        for i, (r, lab) in enumerate(zip(runs, labels)):
            steps, vals, source, split = series(r, stat, a.split, a.layer)
            split_used.add(split)
            if len(vals) == 0:
                common.note(f"{r.dir}: no {split} values of {stat}")
                continue
            if a.smooth > 1:
                vals = np.convolve(np.pad(vals, (a.smooth // 2, (a.smooth - 1) // 2), mode="edge"),
                                   np.ones(a.smooth) / a.smooth, mode="valid")
            few = len(vals) <= 12
            ax.plot(steps, vals, "o-" if few else "-", ms=4, lw=1.5, color=f"C{i % 10}", label=lab)
            drawn += 1
        where = "/".join(sorted(split_used))
        if source == "layers.csv":
            where += ", mean over MoE layers" if a.layer == "mean" else f", MoE layer {a.layer}"
        if a.smooth > 1:
            where += f", smoothed over {a.smooth} rows"
        ax.set_title(f"{common.STAT_LABELS.get(stat, stat)}  ({where})")
        ax.set_ylabel(common.stat_label(stat))
        ax.set_xlabel("step")
        if a.logy:
            ax.set_yscale("log")
        if drawn:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, f"no {where.split(',')[0]} values of {stat}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
    if a.title:
        common.suptitle(fig, a.title, fontsize=12)
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
