"""Shared helpers of the moe-sim plotting scripts (tools/plot/run.py, tokens.py, sweep.py, compare.py).

Loading a run or sweep directory, flattening config.yaml into dotted keys, labels from the names
of METRICS.md, one-line errors (stderr, exit 2) and saving a figure by its extension.
Python 3 with matplotlib and pandas (Debian: python3-matplotlib python3-pandas).
"""

import csv
import math
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np  # noqa: E402
    import pandas as pd  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the machine
    # A python3 first on PATH (pyenv, a venv) without them: the system one may have Debian's.
    system = "/usr/bin/python3"
    if (os.path.realpath(sys.executable) != os.path.realpath(system) and os.access(system, os.X_OK)
            and not os.environ.get("MOESIM_PLOT_REEXEC") and sys.argv and os.path.isfile(sys.argv[0])):
        os.environ["MOESIM_PLOT_REEXEC"] = "1"
        os.execv(system, [system] + sys.argv)
    sys.stderr.write(
        f"{os.path.basename(sys.argv[0])}: error: {e}; install matplotlib and pandas "
        "(Debian: apt-get install python3-matplotlib python3-pandas, or tools/setup.sh)\n"
    )
    sys.exit(2)

def pyplot():
    """matplotlib.pyplot, imported only when a figure is drawn (errors come faster without it)."""
    import matplotlib.pyplot as plt

    return plt


PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "plot"

RUN_FILES = ("config.yaml", "metrics.csv", "layers.csv", "experts.csv", "specialization.csv",
             "events.csv", "summary.csv")

# Short labels for the columns of metrics.csv, layers.csv and summary.csv (names as METRICS.md).
STAT_LABELS = {
    "loss": "loss, task + aux",
    "task_loss": "task loss",
    "ideal_loss": "ideal loss",
    "aux_loss": "aux loss",
    "z_loss": "z-loss",
    "accuracy": "accuracy",
    "lr": "learning rate",
    "grad_norm": "gradient norm",
    "tokens_per_s": "tokens / s",
    "max_vio": "MaxVio",
    "load_cv": "load CV",
    "load_entropy": "load entropy",
    "effective_experts": "effective experts",
    "gini": "load Gini",
    "dead_experts": "dead experts",
    "min_load": "min expert load",
    "max_load": "max expert load",
    "drop_rate": "drop rate",
    "dropped_token_rate": "dropped-token rate",
    "router_entropy": "router entropy",
    "top1_prob": "top-1 router prob.",
    "flip_rate": "routing flip rate",
    "spec_nmi": "specialisation NMI",
    "dispatch_entropy": "dispatch entropy H(group | expert)",
    "spec_purity": "specialisation purity",
    "logit_lse2": "router logit scale",
    "router_grad_task": "router grad. norm, task",
    "router_grad_aux": "router grad. norm, aux",
    "router_grad_cos": "cos(task, aux) router grad.",
    "worst_max_vio": "worst train MaxVio, last 10%",
    "worst_drop_rate": "worst train drop rate, last 10%",
    "first_dead_step": "first dead-expert step",
    "dead_final": "dead experts at the end",
    "wall_s": "wall time, s",
    "steps": "steps",
}

# Short labels for config keys (SPEC.md section 2).
KEY_LABELS = {
    "seed": "seed",
    "balance.alpha": "aux-loss α",
    "balance.bias_rate": "bias rate u",
    "balance.z_loss": "z-loss coef.",
    "balance.loss": "aux loss",
    "capacity.factor": "capacity factor",
    "capacity.eval_factor": "eval capacity factor",
    "capacity.drop_policy": "drop policy",
    "experts.count": "experts N",
    "experts.d_ff": "expert width",
    "experts.shared": "shared experts",
    "router.k": "top-k",
    "router.type": "router",
    "router.noise": "gate noise",
    "router.score": "router score",
    "train.lr": "learning rate",
    "train.batch_size": "batch size",
    "train.steps": "steps",
    "data.clusters.imbalance": "cluster Zipf exponent",
    "model.layers": "blocks",
    "model.d_model": "d_model",
}


def die(message):
    """A clear one-line error on stderr and exit code 2 (bad usage, as moe-sim itself)."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(2)


def note(message):
    sys.stderr.write(f"{PROG}: note: {message}\n")


def stat_label(col, with_name=True):
    short = STAT_LABELS.get(col, col)
    return f"{short} ({col})" if with_name and short != col else short


def key_label(key):
    short = KEY_LABELS.get(key)
    return f"{short} ({key})" if short and short != key else key


def fmt_value(v):
    """A config value as a short string: 0.01 -> 0.01, 1e-05 -> 1e-05, 8.0 -> 8."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        if float(v).is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)


def available(columns, skip=()):
    return ", ".join(c for c in columns if c not in skip)


# ---------------------------------------------------------------------------------------------
# Reading files


def read_csv(path, required=False, raw=False):
    """A CSV file as a DataFrame; an empty one (with the header's columns) for a missing or
    header-only file (a run in progress). Duplicate column names (a sweep's swept key repeated in
    the run's own columns) keep their first occurrence. raw=True keeps every cell a string."""
    if not os.path.isfile(path):
        if required:
            die(f"{path}: no such file")
        return pd.DataFrame()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        try:
            df = pd.read_csv(path, header=None, skiprows=1, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            df = pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        die(f"{path}: cannot read it as CSV: {e}")
    if df.empty:
        return pd.DataFrame(columns=list(dict.fromkeys(header)))
    if len(header) != df.shape[1]:
        die(f"{path}: the header has {len(header)} columns but the rows have {df.shape[1]}")
    df.columns = header
    df = df.loc[:, ~df.columns.duplicated()]
    return df if raw else numeric_columns(df)


def numeric_columns(df):
    """Convert every column whose non-empty cells all parse as numbers; empty cells become NaN."""
    out = {}
    for c in df.columns:
        s = df[c]
        if s.dtype == object:
            stripped = s.fillna("").astype(str).str.strip()
            empty = stripped == ""
            num = pd.to_numeric(stripped.where(~empty), errors="coerce")
            if num[~empty].notna().all():
                s = num
            else:
                s = stripped.where(~empty)
        out[c] = s
    return pd.DataFrame(out, index=df.index)


def _scalar(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def flatten_yaml_text(text):
    """config.yaml as {dotted.key: string value}. Uses PyYAML where installed, else a small reader
    of the block style that moe-sim writes (two-space nesting, `key: value  # comment`)."""
    try:
        import yaml  # type: ignore

        data = yaml.safe_load(text) or {}
        out = {}

        def walk(prefix, node):
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}{k}.", v)
            else:
                out[prefix[:-1]] = fmt_value(node) if not isinstance(node, str) else node

        walk("", data)
        return out
    except ImportError:
        pass
    except Exception:  # malformed for PyYAML: try the simple reader
        pass
    out, stack = {}, []  # stack of (indent, key)
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or ":" not in line:
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, _, value = line.strip().partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key.strip()])
        if value.strip():
            out[path] = _scalar(value)
        else:
            stack.append((indent, key.strip()))
    return out


def config_int(cfg, key):
    """An integer config value (config.yaml flattened), or None when absent or not a number."""
    try:
        return int(float(cfg.get(key, "")))
    except (TypeError, ValueError):
        return None


def read_config(run_dir):
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return flatten_yaml_text(f.read())


# ---------------------------------------------------------------------------------------------
# Runs and sweeps


def is_run(d):
    return os.path.isfile(os.path.join(d, "metrics.csv")) or os.path.isfile(os.path.join(d, "layers.csv"))


def _first_header_cell(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip().split(",")[0]
    except OSError:
        return ""


def sweep_runs(d):
    """Subdirectories of d that are runs (a run's summary.csv, metrics.csv or layers.csv), sorted."""
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    out = []
    for n in names:
        sub = os.path.join(d, n)
        if not os.path.isdir(sub):
            continue
        summary = os.path.join(sub, "summary.csv")
        if is_run(sub) or (os.path.isfile(summary) and _first_header_cell(summary) != "run"):
            out.append(n)
    return out


def is_sweep(d):
    s = os.path.join(d, "summary.csv")
    if os.path.isfile(s) and _first_header_cell(s) == "run":
        return True
    return bool(sweep_runs(d)) and not is_run(d)


def require_run_dir(d):
    if not os.path.exists(d):
        die(f"{d}: no such directory")
    if not os.path.isdir(d):
        die(f"{d}: not a directory (expected a moe-sim run directory)")
    if is_run(d):
        return
    if is_sweep(d):
        runs = sweep_runs(d)
        eg = f", e.g. {os.path.join(d, runs[0])}" if runs else ""
        die(f"{d} is a sweep directory, not a run: pass one of its runs{eg}, or use tools/plot/sweep.py")
    die(f"{d} is not a moe-sim run directory: it has no metrics.csv or layers.csv "
        f"(`moe-sim run CONFIG --out {d}` writes them)")


class Run:
    """The CSV files of one run directory (empty DataFrames for files not written yet)."""

    def __init__(self, d):
        require_run_dir(d)
        self.dir = d
        self.config = read_config(d)
        self.metrics = read_csv(os.path.join(d, "metrics.csv"))
        self.layers = read_csv(os.path.join(d, "layers.csv"))
        self.experts = read_csv(os.path.join(d, "experts.csv"))
        self.spec = read_csv(os.path.join(d, "specialization.csv"))
        self.events = read_csv(os.path.join(d, "events.csv"))
        self.summary = read_csv(os.path.join(d, "summary.csv"))
        # token tasks only (markov, modular): empty otherwise
        self.tokens = read_csv(os.path.join(d, "tokens.csv"))
        self.position_experts = read_csv(os.path.join(d, "position_experts.csv"))

    @property
    def name(self):
        return self.config.get("name") or os.path.basename(os.path.normpath(self.dir))

    def summary_value(self, key):
        if not self.summary.empty and key in self.summary.columns:
            return self.summary[key].iloc[0]
        return None

    def layer_ids(self):
        if self.layers.empty or "layer" not in self.layers.columns:
            return []
        return sorted(int(v) for v in self.layers["layer"].dropna().unique())


def load_sweep(d):
    """The sweep's summary.csv as a DataFrame with a `run` column. Reads SWEEP/summary.csv; adds
    the rows of SWEEP/<run>/summary.csv for runs it does not list yet (a sweep in progress), and
    gathers them all when SWEEP/summary.csv is missing."""
    if not os.path.exists(d):
        die(f"{d}: no such directory")
    if not os.path.isdir(d):
        die(f"{d}: not a directory (expected a moe-sim sweep directory)")
    path = os.path.join(d, "summary.csv")
    runs = sweep_runs(d)
    df = pd.DataFrame()
    if os.path.isfile(path):
        df = read_csv(path, raw=True)
        if "run" not in df.columns:
            if is_run(d):
                die(f"{d} is a single run, not a sweep: use tools/plot/run.py {d}, "
                    "or pass the directory that holds several runs")
            die(f"{path}: not a sweep summary (its first column is not `run`)")
    elif not runs:
        if is_run(d):
            die(f"{d} is a single run, not a sweep: use tools/plot/run.py {d}")
        die(f"{d} is not a moe-sim sweep directory: it has no summary.csv and no <run>/summary.csv under it")
    listed = set(df["run"].astype(str)) if not df.empty else set()
    if df.empty or listed & set(runs):
        extra = []
        for r in runs:
            if r in listed:
                continue
            s = read_csv(os.path.join(d, r, "summary.csv"), raw=True)
            if s.empty or "run" in s.columns:
                continue
            s = s.copy()
            s.insert(0, "run", r)
            extra.append(s)
        if extra:
            if not df.empty:
                note(f"{len(extra)} run(s) not yet in {path} gathered from their own summary.csv")
            df = pd.concat([df] + extra, ignore_index=True, sort=False).fillna("")
    if df.empty:
        if not os.path.isfile(path) and not any(os.path.isfile(os.path.join(d, r, "summary.csv")) for r in runs):
            die(f"{d}: no run under it has finished yet (no <run>/summary.csv); "
                "tools/plot/compare.py plots runs in progress")
        die(f"{d}: the sweep has no finished runs yet (no rows in any summary.csv)")
    df["run"] = df["run"].astype(str)
    return numeric_columns(df)


def add_config_column(df, sweep_dir, key):
    """Add config key `key` to the sweep table from each run's config.yaml; False when absent."""
    values = []
    for r in df["run"]:
        cfg = read_config(os.path.join(sweep_dir, r))
        if key not in cfg:
            return False
        values.append(cfg[key])
    df[key] = values
    df[key] = numeric_columns(df[[key]])[key]
    return True


def resolve_column(name, columns, what, extra_hint=""):
    """An exact column name, else the unique column whose last dotted part is `name`."""
    if name in columns:
        return name
    matches = [c for c in columns if c.split(".")[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        die(f"{what} `{name}` is ambiguous: {', '.join(matches)}")
    return None


# ---------------------------------------------------------------------------------------------
# Figures


def parse_size(text):
    """'WxH' in pixels -> (w, h)."""
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
        if not (100 <= w <= 10000 and 100 <= h <= 10000):
            raise ValueError
        return w, h
    except ValueError:
        die(f"--size {text}: expected WIDTHxHEIGHT in pixels, each 100 to 10000 (e.g. 1200x800)")


DPI = 100


def new_figure(width_px, height_px):
    # + 1e-6: 10.2 * 100 is 1019.99... in floating point, and the renderer truncates
    fig = pyplot().figure(figsize=((width_px + 1e-6) / DPI, (height_px + 1e-6) / DPI), dpi=DPI, layout="constrained")
    return fig


def suptitle(fig, text, fontsize=12):
    """fig.suptitle, wrapped onto more lines when one line is wider than the figure (a long sweep
    name at the default 640 px width): the title is never cropped. Breaks at "  —  " first, then
    between words."""
    import textwrap

    title = fig.suptitle(text, fontsize=fontsize)
    avail = fig.get_figwidth() * fig.dpi * 0.96
    renderer = fig.canvas.get_renderer()
    if title.get_window_extent(renderer).width <= avail:
        return title
    parts = [p.strip() for p in text.split("  —  ")]
    lines = parts
    for _ in range(6):
        title.set_text("\n".join(lines))
        widest = title.get_window_extent(renderer).width
        if widest <= avail:
            return title
        longest = max(len(ln) for ln in lines)
        chars = max(10, int(longest * avail / widest) - 1)
        lines = [w for p in parts for w in textwrap.wrap(p, chars, break_on_hyphens=False)]
    title.set_text("\n".join(lines))
    return title


def check_output(path):
    """Fail early (before any drawing) for an output format matplotlib cannot write."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    supported = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif", "tiff",
                 "webp")  # what the Agg canvas writes
    if not ext:
        die(f"-o {path}: no file extension; use .png, .pdf or .svg")
    if ext not in supported:
        die(f"-o {path}: cannot write .{ext} files; use .png, .pdf or .svg "
            f"(supported: {', '.join(supported)})")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        die(f"-o {path}: the directory {parent} does not exist")


def add_output_args(p, default_help, size_help):
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"output file; the extension picks the format: .png, .pdf or .svg (default: {default_help})")
    p.add_argument("--size", metavar="WxH", help=f"image size in pixels (default: {size_help})")
    p.add_argument("--title", help="figure title (default: made from the data)")
    p.add_argument("--compact", action="store_true",
                   help="PNG with a 256-colour palette: about 3x smaller, for figures committed to docs/")


def save(fig, path, compact=False):
    """Write the figure; the format follows the extension. Prints the path on stdout."""
    ext = os.path.splitext(path)[1].lower()
    kwargs = {"dpi": DPI}
    if ext == ".png":
        kwargs["pil_kwargs"] = {"optimize": True}
    try:
        if ext == ".png" and compact:
            import io

            from PIL import Image

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
            buf.seek(0)
            img = Image.open(buf).convert("RGB")
            img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                path, optimize=True)
        else:
            fig.savefig(path, **kwargs)
    except OSError as e:
        die(f"cannot write {path}: {e.strerror or e}")
    pyplot().close(fig)
    print(path)


def style():
    pyplot().rcParams.update({
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
    })


def split_rows(df, split):
    """The rows of one split (train or eval) of a CSV with a `split` column; none when it has none."""
    if df.empty or "split" not in df.columns:
        return df.iloc[0:0]
    return df[df["split"] == split]


def few_points(n):
    """Line style additions for a series of n points: a line through 1 point draws nothing, so a run
    with one log row (or a few) gets markers."""
    return {"marker": "o", "ms": 4} if n <= 3 else {}


def empty_panel(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def share_heatmap(fig, ax, counts, xlabel, cbar_label, max_ticks=16):
    """Expert x column heatmap of shares: counts is a DataFrame (index expert, one column per group,
    token id, ...) of top-1 counts; each column is divided by its sum (the share of that column's
    tokens on each expert; a column with no tokens stays blank). Returns the shares (experts, columns)."""
    col_sum = counts.sum(axis=0).replace(0, np.nan)
    share = (counts / col_sum).to_numpy()
    im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.08)
    cb.set_label(cbar_label)
    cols, experts = counts.columns.to_numpy(), counts.index.to_numpy()
    step_c = 1 if len(cols) <= max_ticks else int(np.ceil(len(cols) / max_ticks))
    ax.set_xticks(range(0, len(cols), step_c))
    ax.set_xticklabels([str(int(g)) for g in cols[::step_c]], fontsize=8)
    step_e = 1 if len(experts) <= 16 else int(np.ceil(len(experts) / 16))
    ax.set_yticks(range(0, len(experts), step_e))
    ax.set_yticklabels([str(int(e)) for e in experts[::step_e]], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("expert (top-1)")
    ax.grid(False)
    return share


def layer_colors(n):
    cmap = pyplot().get_cmap("tab10")
    return [cmap(i % 10) for i in range(max(n, 1))]


def config_line(cfg):
    """One line describing a run's routing setup from its config."""
    if not cfg:
        return ""
    g = cfg.get
    parts = []
    if g("data.task"):
        parts.append(f"task {g('data.task')}")
    if g("experts.count"):
        parts.append(f"N={g('experts.count')}")
    if g("router.type"):
        parts.append(f"{g('router.type')} k={g('router.k', '?')}")
    if g("balance.loss"):
        parts.append(f"{g('balance.loss')} α={g('balance.alpha', '?')}")
    if g("balance.bias_rate") not in (None, "0", "0.0"):
        parts.append(f"bias u={g('balance.bias_rate')}")
    if g("balance.z_loss") not in (None, "0", "0.0"):
        parts.append(f"z={g('balance.z_loss')}")
    if g("capacity.factor"):
        parts.append(f"capacity {g('capacity.factor')}")
    if g("seed"):
        parts.append(f"seed {g('seed')}")
    return ", ".join(parts)
