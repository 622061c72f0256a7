#!/usr/bin/env python3
"""Token-task figure of one moe-sim run (data.task markov or modular): do experts specialise by
domain or by token?

    tools/plot/tokens.py RUN_DIR [--layer L] [-o FILE.png|.pdf|.svg] [--size WxH] [--compact]

Three panels: the task loss over steps (train line, eval markers) against the exact ideal loss
the task logs, with the final gap; then, for one MoE layer at the last eval step, the expert x
domain heatmap (specialization.csv: the share of each domain's tokens whose top-1 expert is each
expert, with spec_nmi) and the expert x token heatmap (tokens.csv: the same share per token id,
with spec_nmi_token; token ids sorted by their most frequent expert, so that token-specialised
experts show as blocks). Default layer: the last MoE layer. Default output: RUN_DIR/tokens.png.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import run as dashboard  # noqa: E402 - tools/plot/run.py: the loss and specialisation panels
from common import empty_panel, np, split_rows  # noqa: E402


def layer_value(run, layer, step, col):
    ly = split_rows(run.layers, "eval")
    if ly.empty or col not in ly.columns:
        return None
    r = ly[(ly["layer"] == layer) & (ly["step"] == step)]
    if r.empty or np.isnan(r[col].iloc[0]):
        return None
    return float(r[col].iloc[0])


def plot_token_experts(fig, ax, run, layer):
    t = run.tokens
    d = t[t["layer"] == layer] if not t.empty and "layer" in t.columns else t.iloc[0:0]
    if d.empty:
        empty_panel(ax, f"no tokens.csv rows for layer {layer}\n(no eval step yet)")
        ax.set_title(f"layer {layer}: experts by token")
        return
    step = d["step"].max()
    d = d[d["step"] == step]
    m = d.pivot_table(index="expert", columns="token", values="tokens", aggfunc="sum").fillna(0)
    n = common.config_int(run.config, "experts.count")
    if n:  # every expert a row, even one no token chose
        m = m.reindex(range(n), fill_value=0)
    # token ids grouped by their most frequent expert, then by that expert's share (descending)
    share = (m / m.sum(axis=0)).to_numpy()
    top = share.argmax(axis=0)
    order = sorted(range(m.shape[1]), key=lambda j: (top[j], -share[top[j], j], m.columns[j]))
    m = m.iloc[:, order]
    common.share_heatmap(fig, ax, m, "token id (grouped by top-1 expert)", "share of token's examples",
                         max_ticks=40)
    ax.tick_params(axis="x", labelsize=7, rotation=90)
    nmi = layer_value(run, layer, step, "spec_nmi_token")
    title = f"layer {layer}: experts by token @ step {int(step)}"
    ax.set_title(title + (f", NMI {nmi:.2f}" if nmi is not None else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: tools/plot/tokens.py runs/markov -o markov_tokens.png")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a moe-sim run directory of a token task (markov, modular)")
    p.add_argument("--layer", type=int, help="the MoE layer (block index, as layers.csv; default: the last)")
    common.add_output_args(p, "RUN_DIR/tokens.png", "1600x450")
    a = p.parse_args()

    run = common.Run(a.run_dir)
    if not os.path.isfile(os.path.join(a.run_dir, "tokens.csv")):
        common.die(f"{a.run_dir}: no tokens.csv: not a token-task run (data.task markov or modular); "
                   "use tools/plot/run.py")
    out = a.output or os.path.join(a.run_dir, "tokens.png")
    common.check_output(out)
    layers = run.layer_ids()
    if a.layer is not None and layers and a.layer not in layers:
        common.die(f"--layer {a.layer}: not an MoE layer of this run (MoE layers: "
                   f"{', '.join(map(str, layers))})")
    layer = a.layer if a.layer is not None else (layers[-1] if layers else 0)
    width, height = common.parse_size(a.size) if a.size else (1600, 450)
    common.style()
    fig = common.new_figure(width, height)
    gs = fig.add_gridspec(1, 3, width_ratios=[1.1, 0.8, 1.6])
    dashboard.plot_loss(fig.add_subplot(gs[0, 0]), run, col="task_loss")
    group = {"markov": "domain", "modular": "operation"}.get(run.config.get("data.task"), "ground-truth group")
    dashboard.plot_specialization(fig, fig.add_subplot(gs[0, 1]), run, layer, group=group)
    plot_token_experts(fig, fig.add_subplot(gs[0, 2]), run, layer)
    head = a.title or f"{run.name}  —  {common.config_line(run.config)}"
    gap = split_rows(run.metrics, "eval")
    if not a.title and not gap.empty and "loss_gap" in gap.columns and gap["loss_gap"].notna().any():
        head += f"  —  final gap to the ideal loss {gap['loss_gap'].dropna().iloc[-1]:.3f} nats"
    common.suptitle(fig, head, fontsize=12)
    common.save(fig, out, a.compact)


if __name__ == "__main__":
    main()
