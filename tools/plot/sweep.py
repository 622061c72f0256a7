#!/usr/bin/env python3
"""A statistic of a moe-sim sweep against a swept value: mean with an error band per hue value.

    tools/plot/sweep.py SWEEP_DIR --x KEY --y STAT[,STAT] [--hue KEY] [--col KEY]
                        [--err std|sem|ci95|minmax|none] [--logx auto|on|off] [--logy] [-o FILE]

Reads SWEEP_DIR/summary.csv (first column `run`, one row per run; a sweep still in progress, or
one without it, is gathered from SWEEP_DIR/*/summary.csv). KEY is a column of it (a swept config
key such as balance.alpha, or seed) or any config key of the runs' config.yaml; a unique last
part is enough (`alpha`). STAT is a summary column (loss, max_vio, drop_rate, dead_final, ...).
Runs that share x, hue and col values (other seeds, other swept keys) are averaged: the line is
their mean, the band --err (default std), the dots the single runs. The x axis is logarithmic
when its positive values span two decades or more (symlog when 0 is among them). Runs whose
status is not `completed` are left out unless --include-failed. Default output:
SWEEP_DIR/sweep_<STAT>_vs_<KEY>.png.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import np, pd  # noqa: E402

# two-sided 95% Student t quantiles by degrees of freedom (n - 1); larger df use the nearest below
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
ERR_TEXT = {"std": "± std", "sem": "± s.e.m.", "ci95": "95% CI", "minmax": "min–max", "none": ""}


def t95(df):
    keys = [k for k in T95 if k <= df]
    return T95[max(keys)] if keys else T95[1]


def band(values, how):
    v = np.asarray(values, dtype=float)
    n, mean = len(v), float(np.mean(v))
    if n < 2 or how == "none":
        return mean, mean, mean
    if how == "minmax":
        return mean, float(v.min()), float(v.max())
    sd = float(np.std(v, ddof=1))
    half = {"std": sd, "sem": sd / np.sqrt(n), "ci95": t95(n - 1) * sd / np.sqrt(n)}[how]
    return mean, mean - half, mean + half


def config_columns(df):
    """The config-key columns of a sweep summary: dotted keys plus the top-level seed, device, threads
    (the statistics' names have no dot)."""
    return [c for c in df.columns if "." in c or c in ("seed", "device", "threads")]


def resolve_key(df, sweep_dir, name, what):
    col = common.resolve_column(name, list(df.columns), what)
    if col is not None:
        return col
    if common.add_config_column(df, sweep_dir, name):
        return name
    # a unique last part among the runs' config keys (e.g. `lr` for train.lr)
    first = os.path.join(sweep_dir, df["run"].iloc[0])
    keys = [k for k in common.read_config(first) if k.split(".")[-1] == name]
    if len(keys) == 1 and common.add_config_column(df, sweep_dir, keys[0]):
        return keys[0]
    cfg = config_columns(df)
    common.die(f"{what} `{name}`: no such column in {os.path.join(sweep_dir, 'summary.csv')} nor config key "
               f"in its runs' config.yaml; config columns: {', '.join(cfg) or '(none)'}")


def sort_values(vals):
    vals = list(dict.fromkeys(vals))
    try:
        return sorted(vals, key=float)
    except (TypeError, ValueError):
        return sorted(vals, key=str)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: tools/plot/sweep.py sweeps/alpha --x balance.alpha "
                                       "--y max_vio,loss --hue experts.count")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a moe-sim sweep directory")
    p.add_argument("--x", required=True, metavar="KEY", help="config key on the x axis")
    p.add_argument("--y", required=True, metavar="STAT[,STAT]", help="summary.csv column(s), one row of panels each")
    p.add_argument("--hue", metavar="KEY", help="config key: one line per value")
    p.add_argument("--col", metavar="KEY", help="config key: one column of panels per value")
    p.add_argument("--err", default="std", choices=("std", "sem", "ci95", "minmax", "none"),
                   help="error band over the runs averaged into one point (default std)")
    p.add_argument("--logx", default="auto", choices=("auto", "on", "off"),
                   help="log x axis: auto = when the positive x values span 2 decades or more")
    p.add_argument("--logy", action="store_true", help="log-scale y axis")
    p.add_argument("--include-failed", action="store_true",
                   help="also use runs whose status is not completed (diverged, interrupted)")
    common.add_output_args(p, "SWEEP_DIR/sweep_<STAT>_vs_<KEY>.png", "(100 + 460 per col value) x (90 + 360 per STAT)")
    a = p.parse_args()

    df = common.load_sweep(a.sweep_dir)
    stats = [s.strip() for s in a.y.split(",") if s.strip()]
    if not stats:
        common.die("--y needs at least one statistic")
    cfg_cols = set(config_columns(df))
    resolved = []
    for s in stats:
        col = common.resolve_column(s, list(df.columns), "--y")
        numeric = [c for c in df.columns if c not in cfg_cols and c != "run" and pd.api.types.is_numeric_dtype(df[c])]
        if col is None:
            common.die(f"--y `{s}`: no such column in the sweep's summary.csv; statistics: {', '.join(numeric)}")
        if not pd.api.types.is_numeric_dtype(df[col]):
            common.die(f"--y `{s}` is not numeric (values like {df[col].dropna().iloc[0]!r}); statistics: "
                       f"{', '.join(numeric)}")
        resolved.append(col)
    stats = resolved
    x = resolve_key(df, a.sweep_dir, a.x, "--x")
    hue = resolve_key(df, a.sweep_dir, a.hue, "--hue") if a.hue else None
    colk = resolve_key(df, a.sweep_dir, a.col, "--col") if a.col else None
    used = [k for k in (x, hue, colk) if k]
    if len(set(used)) < len(used):
        common.die(f"--x, --hue and --col must be different keys (got {', '.join(used)})")

    if "status" in df.columns and not a.include_failed:
        bad = df[df["status"] != "completed"]
        if len(bad):
            kinds = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
            common.note(f"left out {len(bad)} run(s) not completed ({kinds}); --include-failed keeps them")
            df = df[df["status"] == "completed"]
    missing_x = df[x].isna()
    if missing_x.any():
        common.note(f"left out {int(missing_x.sum())} run(s) without a value of {x}")
        df = df[~missing_x]
    if df.empty:
        common.die(f"{a.sweep_dir}: no runs left to plot")

    averaged = [c for c in sorted(cfg_cols - set(used)) if c in df.columns and df[c].nunique(dropna=False) > 1]
    if averaged:
        common.note("averaging over " + ", ".join(f"{c} ({df[c].nunique()} values)" for c in averaged))

    x_numeric = pd.api.types.is_numeric_dtype(df[x])
    xs_all = sort_values(df[x].tolist())
    scale, linthresh = "linear", None
    if x_numeric:
        pos = np.array([v for v in xs_all if v > 0], dtype=float)
        span = len(pos) >= 2 and pos.max() / pos.min() >= 100
        if a.logx == "on" or (a.logx == "auto" and span):
            if len(pos) == 0:
                common.die(f"--logx on: {x} has no positive values")
            if any(v <= 0 for v in xs_all):
                scale, linthresh = "symlog", float(pos.min())
                common.note(f"{x} has values <= 0: symlog x axis, linear below {linthresh:g}")
            else:
                scale = "log"
    elif a.logx == "on":
        common.die(f"--logx on: {x} is not numeric")
    xpos = (lambda v: v) if x_numeric else (lambda v: xs_all.index(v))

    col_vals = sort_values(df[colk].tolist()) if colk else [None]
    hue_vals = sort_values(df[hue].tolist()) if hue else [None]
    if hue and pd.api.types.is_numeric_dtype(df[hue]) and len(hue_vals) > 2:
        cmap = common.pyplot().get_cmap("viridis")
        colors = [cmap(0.85 * i / (len(hue_vals) - 1)) for i in range(len(hue_vals))]
    else:
        colors = [f"C{i % 10}" for i in range(len(hue_vals))]

    out = a.output or os.path.join(a.sweep_dir, f"sweep_{'_'.join(stats)}_vs_{x}.png")
    common.check_output(out)
    common.style()
    width, height = (max(640, 100 + 460 * len(col_vals)), max(420, 90 + 360 * len(stats)))
    if a.size:
        width, height = common.parse_size(a.size)
    fig = common.new_figure(width, height)
    axes = fig.subplots(len(stats), len(col_vals), squeeze=False, sharex=True, sharey="row")
    max_n = 0
    for r, stat in enumerate(stats):
        for c, cv in enumerate(col_vals):
            ax = axes[r, c]
            sub = df if colk is None else df[df[colk] == cv]
            drawn = False
            for h, hv in enumerate(hue_vals):
                d = sub if hue is None else sub[sub[hue] == hv]
                d = d[[x, stat]].dropna()
                if d.empty:
                    continue
                pts = []
                for xv in sort_values(d[x].tolist()):
                    vals = d[d[x] == xv][stat].to_numpy(dtype=float)
                    max_n = max(max_n, len(vals))
                    pts.append((xpos(xv),) + band(vals, a.err))
                    ax.scatter([xpos(xv)] * len(vals), vals, s=12, color=colors[h], alpha=0.35, lw=0, zorder=2)
                px, mean, lo, hi = (np.array(t) for t in zip(*pts))
                label = common.fmt_value(hv) if hue else None
                ax.plot(px, mean, "o-", color=colors[h], ms=5, lw=1.8, label=label, zorder=3)
                if a.err != "none" and np.any(hi > lo):
                    ax.fill_between(px, lo, hi, color=colors[h], alpha=0.18, lw=0, zorder=1)
                drawn = True
            if not drawn:
                ax.text(0.5, 0.5, f"no values of {stat}", ha="center", va="center", transform=ax.transAxes,
                        color="0.4")
            if scale == "log":
                ax.set_xscale("log")
            elif scale == "symlog":
                ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
            if not x_numeric:
                ax.set_xticks(range(len(xs_all)))
                ax.set_xticklabels([common.fmt_value(v) for v in xs_all])
            elif len(xs_all) <= 8:
                ax.set_xticks([xpos(v) for v in xs_all])
                ax.set_xticklabels([common.fmt_value(v) for v in xs_all])
                ax.minorticks_off()
            if a.logy:
                ax.set_yscale("log")
            if c == 0:
                ax.set_ylabel(common.stat_label(stat))
            if r == len(stats) - 1:
                ax.set_xlabel(common.key_label(x) + ("  (symlog)" if scale == "symlog" else ""))
            if colk and r == 0:
                ax.set_title(f"{common.key_label(colk)} = {common.fmt_value(cv)}")
    if hue:
        axes[0, -1].legend(title=common.key_label(hue), loc="best")
    over = " + ".join(averaged) if averaged else "runs"
    how = f"mean {ERR_TEXT[a.err]} over {over}" if max_n > 1 else "one run per point"
    if a.err in ("ci95",) and max_n > 1:
        how = f"mean and 95% CI over {over}"
    name = os.path.basename(os.path.normpath(a.sweep_dir))
    common.suptitle(fig, a.title or f"{name}: {', '.join(stats)} vs {x}  —  {how}, {len(df)} runs", fontsize=12)
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
