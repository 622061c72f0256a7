#!/usr/bin/env python3
"""Step time of moe-sim and the PyTorch reference from experiments/bench_vs_torch.py --raw FILE.

    tools/plot/bench.py RAW.csv [-o FILE] [--size WxH] [--title TEXT] [--compact]

RAW.csv has one row per config, program (moe-sim, torch) and round, with the columns config,
program, round, ms_median (that round's median ms per training step), ms_min, ms_max, gflop (the
program's counted GFLOP per step), drop, rss_mib, blas; bench.py needs config, program, ms_median
and gflop. Left panel, for the configs named n<digits> (N experts, from the name: n8, n64,
n512): ms per training step against N, log-log, the median over the rounds of ms_median per
program (bars: the lowest and highest round), and dashed, each program's counted FLOPs scaled
to pass through its point at the smallest N: how far its time grows beyond its FLOPs. Right
panel, when the file has torch rows: the speedup torch ms / moe-sim ms per config (> 1: moe-sim
faster). Default output: bench_scaling.png next to RAW.csv.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import np, pd  # noqa: E402

REQUIRED = ("config", "program", "ms_median", "gflop")
NUMERIC = ("ms_median", "gflop")
MOESIM, TORCH = "moe-sim", "torch"
N_CONFIG = re.compile(r"^n(\d+)$")


def load(path):
    """The raw rows: config and program as strings, ms_median and gflop as floats."""
    if os.path.isdir(path):
        common.die(f"{path}: a directory; pass the CSV that experiments/bench_vs_torch.py --raw FILE writes")
    df = common.read_csv(path, required=True, raw=True)
    for col in REQUIRED:
        if col not in df.columns:
            common.die(f"{path}: no column `{col}` (bench.py needs {', '.join(REQUIRED)}; the file has: "
                       f"{common.available(df.columns) or '(no header)'}); "
                       "experiments/bench_vs_torch.py --raw FILE writes it")
    if df.empty:
        common.die(f"{path}: no rows under the header (the benchmark wrote nothing yet?)")
    df = df.copy()
    df["config"] = df["config"].astype(str).str.strip()
    df["program"] = df["program"].astype(str).str.strip()
    for col in NUMERIC:
        text = df[col].astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna() & ~text.str.lower().isin(("", "nan"))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            common.die(f"{path}: column `{col}` is not numeric (row {i + 2}: {text.iloc[i]!r})")
        df[col] = num
    missing = df["ms_median"].isna()
    if missing.any():
        common.note(f"left out {int(missing.sum())} row(s) without a value of ms_median")
        df = df[~missing]
        if df.empty:
            common.die(f"{path}: no row has a value of ms_median")
    return df


def program_order(programs):
    known = [p for p in (MOESIM, TORCH) if p in programs]
    return known + sorted(p for p in programs if p not in known)


def aggregate(df):
    """Per (config, program): median, min and max over the rounds of ms_median, the mean counted
    GFLOP per step, and the number of rounds."""
    g = df.groupby(["config", "program"], sort=False)
    return pd.DataFrame({
        "ms": g["ms_median"].median(),
        "lo": g["ms_median"].min(),
        "hi": g["ms_median"].max(),
        "gflop": g["gflop"].mean(),
        "rounds": g["ms_median"].size(),
    })


def ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def fmt_ratio(x):
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def draw_scaling(ax, agg, programs, nconfigs, colors):
    """ms per step against N (log-log) and the FLOPs-proportional dashed line of each program."""
    ns = [n for _, n in nconfigs]
    handles = []
    for prog in programs:
        pts = [(n, agg.loc[(c, prog)]) for c, n in nconfigs if (c, prog) in agg.index]
        if not pts:
            continue
        x = np.array([n for n, _ in pts], dtype=float)
        y = np.array([r["ms"] for _, r in pts])
        lo = np.array([r["lo"] for _, r in pts])
        hi = np.array([r["hi"] for _, r in pts])
        gf = np.array([r["gflop"] for _, r in pts])
        color = colors[prog]
        (ref_n, ref), (last_n, last) = pts[0], pts[-1]
        growth = f" (n{ref_n}→n{last_n}: {fmt_ratio(last['ms'] / ref['ms'])})" if len(pts) > 1 else ""
        handles.append(ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", color=color, ms=6, lw=2, capsize=3,
                                   label=f"{prog}, measured{growth}", zorder=3))
        if len(pts) < 2:
            continue
        if not (np.isfinite(ref["gflop"]) and ref["gflop"] > 0):
            common.note(f"{prog}: no counted GFLOP at n{ref_n}: no FLOPs-proportional line")
            continue
        if ref_n != ns[0]:
            common.note(f"{prog} has no row for n{ns[0]}: its FLOPs line goes through n{ref_n}")
        prop = ref["ms"] * gf / ref["gflop"]
        ok = np.isfinite(prop)
        f_growth = f", {fmt_ratio(last['gflop'] / ref['gflop'])}" if np.isfinite(last["gflop"]) else ""
        handles += ax.plot(x[ok], prop[ok], "--", color=color, lw=1.5, alpha=0.8, zorder=2,
                           label=f"{prog}, ∝ its counted FLOPs (through n{ref_n}{f_growth})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.xaxis.set_minor_locator(ticker().NullLocator())
    # ms ticks at 1, 2, 5 x 10^k as plain numbers (a log axis over less than a decade has none)
    ax.yaxis.set_major_locator(ticker().LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker().FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker().LogLocator(base=10, subs=np.arange(1, 10)))
    ax.yaxis.set_minor_formatter(ticker().NullFormatter())
    if len(ns) == 1:
        ax.set_xlim(ns[0] / 2, ns[0] * 2)
    ax.set_xlabel("experts N (from the config name)")
    ax.set_ylabel("ms per training step (median over rounds)")
    ax.set_title("Scaling in experts N: " + ", ".join(c for c, _ in nconfigs))
    ylo, yhi = ax.get_ylim()  # headroom above the lines for the legend
    ax.set_ylim(ylo, yhi * (yhi / ylo) ** 0.45)
    ax.legend(handles=handles, loc="upper left", fontsize=8.5, title="bars: lowest and highest round",
              title_fontsize=8.5)


def draw_speedup(ax, agg, configs):
    pairs = [(c, agg.loc[(c, TORCH), "ms"] / agg.loc[(c, MOESIM), "ms"]) for c in configs
             if (c, TORCH) in agg.index and (c, MOESIM) in agg.index]
    x = np.arange(len(pairs))
    vals = np.array([s for _, s in pairs])
    colors = ["C2" if s >= 1 else "C3" for s in vals]
    ax.bar(x, vals, color=colors, width=0.65, zorder=2)
    ax.axhline(1.0, color="0.2", lw=1.2, zorder=3)
    for xi, s in zip(x, vals):
        ax.annotate(fmt_ratio(s), (xi, s), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=9)
    ax.set_xticks(x)
    ax.set_xticklabels([c for c, _ in pairs])
    ax.set_ylim(0, max(1.0, float(vals.max()) if len(vals) else 1.0) * 1.15)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("config")
    ax.set_ylabel("speedup: torch ms / moe-sim ms (> 1: moe-sim faster)")
    ax.set_title("Speedup over the PyTorch reference")
    return len(pairs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: experiments/bench_vs_torch.py --raw bench.csv && "
                                       "tools/plot/bench.py bench.csv")
    p.add_argument("raw", metavar="RAW.csv", help="the CSV of experiments/bench_vs_torch.py --raw FILE")
    common.add_output_args(p, "bench_scaling.png next to RAW.csv",
                           "1300x520 with both panels, 720x520 with one")
    a = p.parse_args()

    df = load(a.raw)
    programs = program_order(set(df["program"]))
    configs = list(dict.fromkeys(df["config"]))
    agg = aggregate(df)
    nconfigs = sorted(((c, int(m.group(1))) for c in configs
                       if (m := N_CONFIG.match(c)) and int(m.group(1)) > 0), key=lambda t: t[1])
    has_speedup = TORCH in programs and MOESIM in programs and any(
        (c, TORCH) in agg.index and (c, MOESIM) in agg.index for c in configs)
    if not nconfigs:
        if not has_speedup:
            common.die(f"{a.raw}: nothing to plot: no config named n<digits> (n8, n64, n512) for the scaling "
                       f"panel (configs: {', '.join(configs)}) and no moe-sim and torch rows of one config "
                       f"for the speedup panel (programs: {', '.join(programs)})")
        common.note(f"no config named n<digits> (configs: {', '.join(configs)}): "
                    "no scaling panel, only the speedup")
    elif TORCH not in programs:
        common.note("no torch rows: no speedup panel")
    elif not has_speedup:
        common.note("no config has both moe-sim and torch rows: no speedup panel")

    out = a.output or os.path.join(os.path.dirname(os.path.abspath(a.raw)), "bench_scaling.png")
    common.check_output(out)
    common.style()
    panels = (["scaling"] if nconfigs else []) + (["speedup"] if has_speedup else [])
    width, height = (1300, 520) if len(panels) == 2 else (720, 520)
    if a.size:
        width, height = common.parse_size(a.size)
    fig = common.new_figure(width, height)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {prog: f"C{i % 10}" for i, prog in enumerate(programs)}
    colors.update({MOESIM: "C0", TORCH: "C1"})
    for ax, panel in zip(axes, panels):
        if panel == "scaling":
            draw_scaling(ax, agg, programs, nconfigs, colors)
        else:
            draw_speedup(ax, agg, configs)
    rounds = sorted(set(int(r) for r in agg["rounds"]))
    rounds_text = (f"{rounds[0]} round{'s' if rounds[0] > 1 else ''}" if len(rounds) == 1
                   else f"{rounds[0]}–{rounds[-1]} rounds")
    name = os.path.basename(a.raw)
    common.suptitle(fig, a.title or f"{name}: ms per training step, median over {rounds_text} of each round's median",
                    fontsize=12)
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
