#!/usr/bin/env python3
"""The table of experiments/routers.sh as a figure: one panel per statistic, one pair of bars per
preset (balanced and Zipf-skewed clusters).

    tools/plot/routers.py ROUTERS_CSV [--y STAT,STAT,...] [--size WxH] [--compact] [-o FILE]

ROUTERS_CSV is the routers.csv that experiments/routers.sh writes (columns preset, data, and the
final-evaluation statistics of summary.csv). Default --y: accuracy,max_vio,drop_rate,spec_nmi.
Default output: routers.png next to ROUTERS_CSV.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import np  # noqa: E402

DEFAULT_Y = "accuracy,max_vio,drop_rate,spec_nmi"
DATA_ORDER = ["balanced", "skewed"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", help="routers.csv of experiments/routers.sh")
    p.add_argument("--y", default=DEFAULT_Y, help=f"statistics, one panel each (default {DEFAULT_Y})")
    common.add_output_args(p, "routers.png next to ROUTERS_CSV", "1000x(250 per panel)")
    a = p.parse_args()
    if not os.path.isfile(a.csv):
        common.die(f"{a.csv}: no such file (experiments/routers.sh writes OUT/routers.csv)")
    df = common.read_csv(a.csv, required=True)
    for col in ("preset", "data"):
        if col not in df.columns:
            common.die(f"{a.csv}: no '{col}' column; is it the routers.csv of experiments/routers.sh?")
    stats = [s.strip() for s in a.y.split(",") if s.strip()]
    cols = [c for c in df.columns if c not in ("preset", "data", "router", "status")]
    for s in stats:
        if common.resolve_column(s, cols, "--y") is None:
            common.die(f"--y {s}: not a column of {a.csv} (columns: {common.available(cols)})")
    out = a.output or os.path.join(os.path.dirname(os.path.abspath(a.csv)), "routers.png")
    common.check_output(out)
    presets = list(dict.fromkeys(df["preset"]))
    datas = [d for d in DATA_ORDER if d in set(df["data"])] + sorted(set(df["data"]) - set(DATA_ORDER))
    w, h = common.parse_size(a.size) if a.size else (1000, 250 * len(stats) + 120)
    common.style()
    fig = common.new_figure(w, h)
    axes = fig.subplots(len(stats), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(len(presets))
    bar = 0.8 / max(len(datas), 1)
    colors = common.layer_colors(len(datas))
    for ax, stat in zip(axes, stats):
        top = 0.0
        for j, data in enumerate(datas):
            sub = df[df["data"] == data].set_index("preset")[stat]
            vals = [float(sub[pr]) if pr in sub.index else np.nan for pr in presets]
            ax.bar(x + (j - (len(datas) - 1) / 2) * bar, vals, bar, label=f"{data} clusters", color=colors[j])
            top = max([top] + [v for v in vals if v == v])
        if top > 0:
            ax.set_ylim(0, top * 1.25)  # room for the legend above the bars
        ax.set_ylabel(common.stat_label(stat, with_name=False))
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", ncol=len(datas), fontsize=8)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(presets, rotation=30, ha="right")
    common.suptitle(fig, a.title or "Every preset on the same clustered data (final evaluation)")
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
