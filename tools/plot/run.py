#!/usr/bin/env python3
"""Dashboard of one moe-sim run.

    tools/plot/run.py RUN_DIR [-o FILE.png|.pdf|.svg] [--size WxH]

Top row: train/eval loss (and the ideal loss where the task logs one), drop rate, MaxVio and
effective experts over steps, one colour per MoE layer (train: line, eval: markers). Then one row
per MoE layer: expert x step heatmap of the load relative to the ideal 1/N (white = balanced,
blue = starved, red = overloaded; X = dead event, ^ = revived), and the final expert x group
specialisation matrix (share of each ground-truth group's tokens whose top-1 expert is that
expert). Default output: RUN_DIR/dashboard.png. Works on a run still in progress.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import empty_panel, few_points, np, split_rows  # noqa: E402

MAX_LAYER_ROWS = 8


def plot_loss(ax, run, col="loss"):
    """Train (line) and eval (markers) `col` of metrics.csv over steps, and the ideal loss where the
    task logs one (col task_loss: the loss the ideal loss is comparable to)."""
    m = run.metrics
    if m.empty or col not in m.columns:
        empty_panel(ax, "no metrics.csv rows yet")
        ax.set_title("loss" if col == "loss" else common.stat_label(col, False))
        return
    tr, ev = split_rows(m, "train"), split_rows(m, "eval")
    ax.plot(tr["step"], tr[col], color="C0", lw=1.3, label="train", **few_points(len(tr)))
    if not ev.empty:
        ax.plot(ev["step"], ev[col], "o--", color="C3", ms=4, lw=1, label="eval")
    for ideal in [c for c in m.columns if "ideal" in c]:
        vals = m[["step", ideal]].dropna()
        if not vals.empty:
            ax.plot(vals["step"], vals[ideal], ":", color="0.3", lw=1.2, label=common.stat_label(ideal, False),
                    **few_points(len(vals)))
    title = "loss" if col == "loss" else common.stat_label(col, False)
    if not ev.empty:
        last = ev.iloc[-1]
        title += f"  (final eval {last[col]:.3g}"
        if "accuracy" in ev.columns and not np.isnan(last["accuracy"]):
            title += f", acc. {last['accuracy']:.3g}"
        title += ")"
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend(loc="upper right")


def plot_layer_stat(ax, run, col, title, reference=None, legend=True):
    from matplotlib.lines import Line2D

    ly = run.layers
    if ly.empty or col not in ly.columns:
        empty_panel(ax, f"no {col} in layers.csv" if not ly.empty else "no layers.csv rows yet")
        ax.set_title(title)
        return
    layers = run.layer_ids()
    colors = common.layer_colors(len(layers))
    has_train = has_eval = False
    for i, layer in enumerate(layers):
        d = ly[ly["layer"] == layer]
        tr, ev = split_rows(d, "train"), split_rows(d, "eval")
        if not tr.empty and tr[col].notna().any():
            ax.plot(tr["step"], tr[col], color=colors[i], lw=1.2, **few_points(int(tr[col].notna().sum())))
            has_train = True
        if not ev.empty and ev[col].notna().any():
            ax.plot(ev["step"], ev[col], "o", color=colors[i], ms=4, mec="white", mew=0.5)
            has_eval = True
    if reference is not None:
        ax.axhline(reference[0], color="0.4", ls=":", lw=1)
        ax.annotate(reference[1], (0, reference[0]), xycoords=("axes fraction", "data"),
                    xytext=(3, -11), textcoords="offset points", color="0.3", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("step")
    handles = []
    if len(layers) > 1:
        handles += [Line2D([], [], color=colors[i], lw=2, label=f"layer {layer}") for i, layer in enumerate(layers)]
    if has_train:
        handles.append(Line2D([], [], color="0.35", lw=1.2, label="train"))
    if has_eval:
        handles.append(Line2D([], [], color="0.35", ls="", marker="o", ms=4, label="eval"))
    if handles and legend:
        ax.legend(handles=handles, loc="best", fontsize=8, ncol=1 + (len(handles) > 4))


def plot_load_heatmap(fig, ax, run, layer, n_experts):
    from matplotlib.colors import TwoSlopeNorm

    e = run.experts
    if e.empty or "load" not in e.columns:
        empty_panel(ax, "no experts.csv rows yet")
        ax.set_title(f"MoE layer {layer}: expert load")
        return
    split = "train" if (e["split"] == "train").any() else "eval"
    d = e[(e["split"] == split) & (e["layer"] == layer)]
    if d.empty:
        empty_panel(ax, f"no experts.csv rows for layer {layer}")
        return
    grid = d.pivot_table(index="expert", columns="step", values="load", aggfunc="mean")
    n = n_experts or grid.shape[0]
    rel = grid.to_numpy() * n  # load relative to ideal 1/N
    vmax = max(2.0, float(np.nanmax(rel)) if rel.size else 2.0)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=vmax)
    steps = grid.columns.to_numpy(dtype=float)
    experts = grid.index.to_numpy(dtype=float)
    ax.grid(False)
    mesh = ax.pcolormesh(steps, experts, rel, cmap="RdBu_r", norm=norm, shading="nearest", rasterized=True)
    cb = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label("load × N  (1 = balanced)")
    ev = run.events
    if not ev.empty and {"layer", "event"} <= set(ev.columns):
        ev = ev[ev["layer"] == layer]
        for kind, marker, color in (("dead", "X", "yellow"), ("revived", "^", "lime")):
            k = ev[ev["event"] == kind]
            if not k.empty:
                ax.scatter(k["step"], k["expert"], marker=marker, facecolor=color, edgecolor="black", s=55,
                           lw=0.8, label=f"{kind} ({len(k)})", zorder=3)
        if len(ev):
            ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_ylim(experts.min() - 0.5, experts.max() + 0.5)
    ax.invert_yaxis()
    if len(experts) <= 16:
        ax.set_yticks(experts)
    ax.set_ylabel("expert")
    ax.set_xlabel("step")
    ax.grid(False)
    dead = ""
    ly = split_rows(run.layers, split)
    if not ly.empty and "dead_experts" in ly.columns:
        last = ly[ly["layer"] == layer]
        if not last.empty:
            dead = f", {int(last['dead_experts'].iloc[-1])} dead at the end"
    ax.set_title(f"MoE layer {layer}: {split} load per expert over steps{dead}")


def plot_specialization(fig, ax, run, layer, group="ground-truth group"):
    s = run.spec
    if s.empty or "tokens" not in s.columns:
        empty_panel(ax, "no specialization.csv rows\n(no eval step yet)")
        ax.set_title(f"layer {layer}: specialisation")
        return
    d = s[s["layer"] == layer]
    if d.empty:
        empty_panel(ax, f"no rows for layer {layer}")
        return
    step = d["step"].max()
    d = d[d["step"] == step]
    m = d.pivot_table(index="expert", columns="group", values="tokens", aggfunc="sum").fillna(0)
    common.share_heatmap(fig, ax, m, group, "share of group's tokens")
    nmi = ""
    ly = split_rows(run.layers, "eval")
    if not ly.empty and "spec_nmi" in ly.columns:
        r = ly[(ly["layer"] == layer) & (ly["step"] == step)]
        if not r.empty and not np.isnan(r["spec_nmi"].iloc[0]):
            nmi = f", NMI {r['spec_nmi'].iloc[0]:.2f}"
    ax.set_title(f"layer {layer}: specialisation @ step {int(step)}{nmi}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: tools/plot/run.py runs/quickstart -o quickstart.png")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a moe-sim run directory (moe-sim run --out DIR)")
    common.add_output_args(p, "RUN_DIR/dashboard.png", "1600 x (380 + 300 per MoE layer)")
    a = p.parse_args()

    run = common.Run(a.run_dir)
    out = a.output or os.path.join(a.run_dir, "dashboard.png")
    common.check_output(out)
    common.style()

    layers = run.layer_ids()
    if len(layers) > MAX_LAYER_ROWS:
        common.note(f"{len(layers)} MoE layers: the heatmaps show the first {MAX_LAYER_ROWS} "
                    "(the line plots show all)")
    shown = layers[:MAX_LAYER_ROWS]
    nrows = 1 + max(len(shown), 1)
    width, height = (1600, 380 + 300 * max(len(shown), 1))
    if a.size:
        width, height = common.parse_size(a.size)

    fig = common.new_figure(width, height)
    gs = fig.add_gridspec(nrows, 4, height_ratios=[1.15] + [1] * (nrows - 1))
    n_experts = common.config_int(run.config, "experts.count")
    if n_experts is None and not run.experts.empty:
        n_experts = int(run.experts["expert"].max()) + 1

    plot_loss(fig.add_subplot(gs[0, 0]), run)
    plot_layer_stat(fig.add_subplot(gs[0, 1]), run, "drop_rate", "drop rate (share of assignments dropped)")
    plot_layer_stat(fig.add_subplot(gs[0, 2]), run, "max_vio", "MaxVio  (max load / mean load − 1)",
                    legend=False)
    plot_layer_stat(fig.add_subplot(gs[0, 3]), run, "effective_experts", "effective experts exp(H(load))",
                    reference=(n_experts, f"N = {n_experts}") if n_experts else None, legend=False)
    if not shown:
        empty_panel(fig.add_subplot(gs[1, :]), "no MoE layer statistics yet (layers.csv has no rows)")
    for row, layer in enumerate(shown, start=1):
        plot_load_heatmap(fig, fig.add_subplot(gs[row, 0:3]), run, layer, n_experts)
        plot_specialization(fig, fig.add_subplot(gs[row, 3]), run, layer)

    status = run.summary_value("status")
    steps = run.summary_value("steps")
    head = a.title or f"{run.name}  —  {common.config_line(run.config)}"
    if status is not None and not a.title:
        head += f"  —  {status}, {common.fmt_value(steps)} steps"
    elif not a.title and not run.metrics.empty:
        head += f"  —  in progress, step {int(run.metrics['step'].max())}"
    common.suptitle(fig, head, fontsize=12)
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
