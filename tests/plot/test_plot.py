#!/usr/bin/env python3
"""Tests of tools/plot/{run,sweep,compare}.py on a tiny real run and sweep made with the binary,
and of tools/plot/bench.py on a hand-written raw CSV of experiments/bench_vs_torch.py.

    python3 -m unittest discover -s tests/plot -v        # or: python3 tests/plot/test_plot.py -v
    MOESIM_BINARY=build/release/moe-sim (the default)    # the moe-sim binary to make the runs with
    MOESIM_KEEP_TMP=1                                    # keep the scratch directory and print its path

Use the interpreter the plot tools use (CTest does: the one with matplotlib and pandas, e.g.
/usr/bin/python3 with Debian's packages). Without matplotlib or pandas: under CI (CI=true in the
environment) the tests FAIL (exit 1), so that a CI image without them cannot pass by running
nothing; elsewhere they are skipped with a warning on stderr (exit 77, CTest: skipped).

Speed: each script's command line is run once as a process (TestCommandLines); every other case
calls the script's main() in this process (same argv, stdout, stderr and exit code), so that
matplotlib and pandas are imported once, not once per case.
"""

import contextlib
import csv
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLOT = os.path.join(ROOT, "tools", "plot")
BINARY = os.environ.get("MOESIM_BINARY") or os.path.join(ROOT, "build", "release", "moe-sim")
CONFIG = os.path.join(ROOT, "configs", "quickstart.yaml")
TINY = ["train.steps=30", "train.eval_every=10", "train.log_every=5", "data.eval_size=256",
        "data.train_size=2048", "experts.count=4", "model.layers=2", "model.moe_every=1"]
ALPHAS, SEEDS = ("0", "0.01"), ("1", "2")

TMP = None
SWEEP = None  # tmp/sweep: 4 runs + summary.csv with a run column


def deps_missing():
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing_message(missing):
    return (f"{missing} in {sys.executable}: install python3-matplotlib python3-pandas (tools/setup.sh), "
            "or run the tests with the interpreter that has them (CTest picks it at configure time)")


def png_size(path):
    """(width, height) from the PNG header (signature + IHDR chunk)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG file")
    return struct.unpack(">II", head[16:24])


def run_name(alpha, seed):
    return f"alpha={alpha}_seed={seed}"


def make_runs(sweep_dir):
    """The tiny runs of the sweep, two at a time, one thread each."""
    jobs = [(a, s) for a in ALPHAS for s in SEEDS]
    for i in range(0, len(jobs), 2):
        procs = []
        for a, s in jobs[i:i + 2]:
            out = os.path.join(sweep_dir, run_name(a, s))
            cmd = [BINARY, "run", CONFIG, *TINY, f"balance.alpha={a}", f"seed={s}", "--threads", "1",
                   "--out", out, "--quiet"]
            procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for cmd, p in procs:
            out, err = p.communicate(timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err.strip()}")


def write_sweep_summary(sweep_dir, swept=("balance.alpha", "seed"), rewrite=None):
    """SWEEP/summary.csv as `moe-sim sweep` writes it: run, the swept keys, then each run's row."""
    rows, header = [], None
    for a in ALPHAS:
        for s in SEEDS:
            name = run_name(a, s)
            with open(os.path.join(SWEEP, name, "summary.csv"), newline="") as f:
                r = list(csv.reader(f))
            header = r[0]
            values = dict(zip(r[0], r[1]))
            if rewrite:
                values = rewrite(values)
            rows.append([name] + [values[k] for k in swept] + [values[k] for k in header])
    with open(os.path.join(sweep_dir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *swept, *header])
        w.writerows(rows)


def setUpModule():
    global TMP, SWEEP
    missing = deps_missing()
    if missing and in_ci():
        raise RuntimeError(f"CI=true and {missing_message(missing)}")
    if missing:
        sys.stderr.write(f"\nWARNING: the plot tests are SKIPPED, none of them ran: {missing_message(missing)}\n\n")
        raise unittest.SkipTest(missing_message(missing))
    if not os.access(BINARY, os.X_OK):
        raise RuntimeError(f"moe-sim binary not found at {BINARY}: build it (cmake --build --preset release) "
                           "or set MOESIM_BINARY")
    if PLOT not in sys.path:
        sys.path.insert(0, PLOT)  # `import common` in the cases that draw with it directly
    TMP = tempfile.mkdtemp(prefix="moesim-plot-test-")
    SWEEP = os.path.join(TMP, "sweep")
    os.makedirs(SWEEP)
    make_runs(SWEEP)
    write_sweep_summary(SWEEP)


def tearDownModule():
    if TMP and os.environ.get("MOESIM_KEEP_TMP"):
        print(f"kept {TMP}", file=sys.stderr)
    elif TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def plot_process(script, *args):
    """The script as a user runs it: a process of its own."""
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, os.path.join(PLOT, script), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)


_MODULES = {}


def _script_module(script):
    if script not in _MODULES:
        if PLOT not in sys.path:
            sys.path.insert(0, PLOT)
        spec = importlib.util.spec_from_file_location("moesim_plot_" + script[:-3], os.path.join(PLOT, script))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[script] = module
    return _MODULES[script]


def plot(script, *args):
    """The script's main() with this argv, in this process: exit code, stdout and stderr as a process
    would give them (an uncaught exception: exit 1 and its traceback on stderr)."""
    module = _script_module(script)
    import common
    import matplotlib.pyplot as plt

    out, err = io.StringIO(), io.StringIO()
    argv, prog = sys.argv, common.PROG
    sys.argv = [os.path.join(PLOT, script), *map(str, args)]
    common.PROG = script
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    err.write(f"{e.code}\n")
            except Exception:  # noqa: BLE001 - reported as a process would report it
                code = 1
                err.write(traceback.format_exc())
    finally:
        sys.argv, common.PROG = argv, prog
        plt.close("all")
    return subprocess.CompletedProcess(sys.argv, code, out.getvalue(), err.getvalue())


class PlotCase(unittest.TestCase):
    def assertOk(self, p):
        self.assertEqual(p.returncode, 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")

    def assertPng(self, path, size):
        self.assertTrue(os.path.isfile(path), f"{path} was not written")
        self.assertGreater(os.path.getsize(path), 2000, f"{path} is (nearly) empty")
        self.assertEqual(png_size(path), size)

    def assertClearError(self, p, *needles):
        """Non-zero exit, one `<script>: error: ...` line on stderr naming the problem, no traceback."""
        self.assertEqual(p.returncode, 2, f"expected exit 2, got {p.returncode}\nstderr: {p.stderr}")
        self.assertNotIn("Traceback", p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if "error:" in ln]
        self.assertEqual(len(lines), 1, p.stderr)
        for n in needles:
            self.assertIn(n, lines[0])

    def out(self, name):
        return os.path.join(TMP, name)

    @staticmethod
    def run_dir(alpha="0.01", seed="1"):
        return os.path.join(SWEEP, run_name(alpha, seed))

    @staticmethod
    def moe_layers(run_dir):
        with open(os.path.join(run_dir, "layers.csv"), newline="") as f:
            return len({row["layer"] for row in csv.DictReader(f)})


class TestCommandLines(PlotCase):
    """Each script once as its own process: the command line, the exit codes, stdout and stderr."""

    def test_run(self):
        p = plot_process("run.py", self.run_dir(), "-o", self.out("proc_dash.png"))
        self.assertOk(p)
        self.assertEqual(p.stdout.strip(), self.out("proc_dash.png"))
        self.assertPng(self.out("proc_dash.png"), (1600, 980))
        self.assertClearError(plot_process("run.py", self.out("does_not_exist")), "run.py: error:", "no such directory")

    def test_sweep(self):
        p = plot_process("sweep.py", SWEEP, "--x", "balance.alpha", "--y", "max_vio", "-o", self.out("proc_sw.png"))
        self.assertOk(p)
        self.assertIn("averaging over seed (2 values)", p.stderr)
        self.assertPng(self.out("proc_sw.png"), (640, 450))

    def test_compare(self):
        self.assertClearError(plot_process("compare.py", self.run_dir(), "--y", "bogus"), "compare.py: error:",
                              "no column `bogus`")

    def test_bench(self):
        raw = write_bench_csv(self.out("proc_bench.csv"))
        self.assertClearError(plot_process("bench.py", raw, "--size", "big"), "bench.py: error:", "--size")


class TestRunDashboard(PlotCase):
    def test_png_of_the_default_size(self):
        layers = self.moe_layers(self.run_dir())
        self.assertEqual(layers, 2)
        p = plot("run.py", self.run_dir(), "-o", self.out("dash.png"))
        self.assertOk(p)
        self.assertEqual(p.stdout.strip(), self.out("dash.png"))
        self.assertPng(self.out("dash.png"), (1600, 380 + 300 * layers))

    def test_default_output_is_in_the_run_dir(self):
        run = os.path.join(TMP, "copy_for_default")
        shutil.copytree(self.run_dir(seed="2"), run)
        self.assertOk(plot("run.py", run))
        self.assertPng(os.path.join(run, "dashboard.png"), (1600, 980))

    def test_size_compact_pdf_svg(self):
        self.assertOk(plot("run.py", self.run_dir(), "--size", "900x700", "--compact", "-o", self.out("small.png")))
        self.assertPng(self.out("small.png"), (900, 700))
        self.assertOk(plot("run.py", self.run_dir(), "-o", self.out("dash.pdf")))
        with open(self.out("dash.pdf"), "rb") as f:
            self.assertEqual(f.read(5), b"%PDF-")
        self.assertOk(plot("run.py", self.run_dir(), "-o", self.out("dash.svg")))
        with open(self.out("dash.svg"), encoding="utf-8") as f:
            self.assertIn("<svg", f.read(2000))

    def test_run_in_progress(self):
        """A run still training: no summary.csv, no eval rows or specialisation yet."""
        run = os.path.join(TMP, "in_progress")
        shutil.copytree(self.run_dir(), run)
        os.remove(os.path.join(run, "summary.csv"))
        for name in ("specialization.csv", "experts.csv"):
            with open(os.path.join(run, name)) as f:
                header = f.readline()
            with open(os.path.join(run, name), "w") as f:
                f.write(header)
        self.assertOk(plot("run.py", run, "-o", self.out("progress.png")))
        self.assertPng(self.out("progress.png"), (1600, 980))

    def test_bad_inputs(self):
        self.assertClearError(plot("run.py", self.out("does_not_exist")), "no such directory")
        empty = self.out("empty_dir")
        os.makedirs(empty, exist_ok=True)
        self.assertClearError(plot("run.py", empty), "not a moe-sim run directory", "metrics.csv")
        self.assertClearError(plot("run.py", SWEEP), "is a sweep directory", "sweep.py")
        self.assertClearError(plot("run.py", self.run_dir(), "-o", self.out("x.nope")), "cannot write .nope", ".png")
        self.assertClearError(plot("run.py", self.run_dir(), "--size", "big", "-o", self.out("x.png")), "--size")
        p = plot("run.py")
        self.assertEqual(p.returncode, 2)
        self.assertIn("RUN_DIR", p.stderr)


class TestCosmetics(PlotCase):
    def test_one_row_run_draws_markers(self):
        """A run with one train log row: a line through one point draws nothing; markers show it."""
        run = os.path.join(TMP, "one_row")
        shutil.copytree(self.run_dir(), run)
        os.remove(os.path.join(run, "summary.csv"))
        for name in ("metrics.csv", "layers.csv", "experts.csv"):
            with open(os.path.join(run, name), newline="") as f:
                rows = list(csv.reader(f))
            first = rows[1][0]
            keep = [r for r in rows[1:] if r[0] == first and r[1] == "train"]
            self.assertTrue(keep)
            with open(os.path.join(run, name), "w", newline="") as f:
                csv.writer(f).writerows([rows[0]] + keep)
        for name in ("specialization.csv", "events.csv"):
            with open(os.path.join(run, name)) as f:
                header = f.readline()
            with open(os.path.join(run, name), "w") as f:
                f.write(header)
        self.assertOk(plot("run.py", run, "-o", self.out("one_row.png")))
        self.assertPng(self.out("one_row.png"), (1600, 980))

        run_py = _script_module("run.py")
        import common
        import matplotlib.pyplot as plt

        r = common.Run(run)
        fig, (a1, a2) = plt.subplots(1, 2)
        try:
            run_py.plot_loss(a1, r)
            run_py.plot_layer_stat(a2, r, "max_vio", "MaxVio")
            for ax in (a1, a2):
                self.assertTrue(ax.lines)
                for line in ax.lines:
                    if len(line.get_xdata()) == 1:
                        self.assertNotIn(line.get_marker(), ("None", "", " ", None), ax.get_title())
        finally:
            plt.close(fig)

    def test_long_titles_are_wrapped_not_cropped(self):
        import common
        import matplotlib.pyplot as plt

        text = ("a_sweep_with_a_long_name: max_vio, load_cv vs balance.alpha  —  mean ± std over seed + "
                "experts.count, 24 runs")
        for width in (640, 900):
            fig = common.new_figure(width, 450)
            try:
                fig.add_subplot(1, 1, 1)
                title = common.suptitle(fig, text, fontsize=12)
                fig.canvas.draw()
                box = title.get_window_extent(fig.canvas.get_renderer())
                self.assertGreaterEqual(box.x0, 0, width)
                self.assertLessEqual(box.x1, width, width)
                self.assertEqual(title.get_text().replace("\n", " ").replace("  —  ", " ").split(),
                                 text.replace("  —  ", " ").split())
            finally:
                plt.close(fig)
        # A short title stays one line.
        fig = common.new_figure(640, 450)
        try:
            self.assertEqual(common.suptitle(fig, "sweep: loss vs seed").get_text(), "sweep: loss vs seed")
        finally:
            plt.close(fig)

    def test_sweep_default_size_title_fits(self):
        d = os.path.join(TMP, "a_sweep_directory_with_quite_a_long_name_for_its_title")
        os.makedirs(d, exist_ok=True)
        write_sweep_summary(d)
        for a in ALPHAS:
            for s in SEEDS:
                shutil.copytree(self.run_dir(a, s), os.path.join(d, run_name(a, s)))
        p = plot("sweep.py", d, "--x", "balance.alpha", "--y", "max_vio", "-o", self.out("long_title.png"))
        self.assertOk(p)
        self.assertPng(self.out("long_title.png"), (640, 450))


class TestTokens(PlotCase):
    """tools/plot/tokens.py on a tiny markov run (2 MoE layers at blocks 0 and 1)."""

    @classmethod
    def setUpClass(cls):
        cls.markov = os.path.join(TMP, "markov")
        cmd = [BINARY, "run", os.path.join(ROOT, "configs", "markov.yaml"), "train.steps=20",
               "train.eval_every=10", "train.log_every=5", "data.eval_size=512", "data.markov.vocab=8",
               "experts.count=4", "--threads", "1", "--out", cls.markov, "--quiet"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")

    def test_default_size_and_output(self):
        p = plot_process("tokens.py", self.markov)
        self.assertOk(p)
        out = os.path.join(self.markov, "tokens.png")
        self.assertEqual(p.stdout.strip(), out)
        self.assertPng(out, (1600, 450))
        self.assertOk(plot("tokens.py", self.markov, "--layer", "0", "--size", "900x300", "--compact", "-o",
                           self.out("tok_small.png")))
        self.assertPng(self.out("tok_small.png"), (900, 300))

    def test_bad_inputs(self):
        self.assertClearError(plot("tokens.py", self.run_dir(), "-o", self.out("t.png")), "no tokens.csv",
                              "run.py")
        self.assertClearError(plot("tokens.py", self.markov, "--layer", "5", "-o", self.out("t.png")),
                              "--layer 5", "MoE layers: 0, 1")
        self.assertClearError(plot("tokens.py", self.out("does_not_exist")), "no such directory")

    def test_token_heatmap_shares_by_hand(self):
        """Token 3: 2 examples on expert 0, 2 on expert 1 (shares 0.5, 0.5); token 5: 3 on expert 1
        (0, 1); token 7: 1 on expert 0 (1, 0); expert 2 (no token) is a row of zeros. Columns are
        grouped by top-1 expert: token 7 (expert 0, share 1), token 3 (expert 0 by the lower index,
        0.5), token 5 (expert 1)."""
        import common
        import matplotlib.pyplot as plt

        tokens_py = _script_module("tokens.py")
        run = common.Run(self.markov)
        run.config = dict(run.config, **{"experts.count": "3"})
        run.tokens = common.pd.DataFrame({"step": [9] * 4 + [10] * 4, "layer": [1] * 8,
                                          "token": [3, 3, 5, 7, 3, 3, 5, 7], "expert": [0, 1, 1, 0] * 2,
                                          "tokens": [9, 9, 9, 9, 2, 2, 3, 1]})
        captured = {}
        real = common.share_heatmap

        def spy(fig, ax, counts, *args, **kwargs):
            captured["counts"] = counts
            captured["share"] = real(fig, ax, counts, *args, **kwargs)
            return captured["share"]

        common.share_heatmap = spy
        fig, ax = plt.subplots()
        try:
            tokens_py.plot_token_experts(fig, ax, run, 1)
        finally:
            common.share_heatmap = real
            plt.close(fig)
        self.assertEqual([int(c) for c in captured["counts"].columns], [7, 3, 5])
        self.assertEqual([int(e) for e in captured["counts"].index], [0, 1, 2])
        expected = [[1.0, 0.5, 0.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]
        self.assertEqual(captured["share"].tolist(), expected)


class TestBalanceTable(PlotCase):
    def test_columns_and_numbers_as_in_the_readme(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read().splitlines()
        start = next(i for i, ln in enumerate(readme) if ln.startswith("setting "))
        table = readme[start:start + 4]
        out = os.path.join(TMP, "balance_table")
        p = subprocess.run(["bash", os.path.join(ROOT, "experiments", "balance_table.sh"), out, *TINY, "--threads", "1"],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ, MOESIM=BINARY))
        self.assertOk(p)
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 4, p.stdout)
        self.assertEqual(lines[0], table[0])  # the same columns, the same layout
        for got, want in zip(lines[1:], table[1:]):
            g, w = got.split(), want.split()
            self.assertEqual(len(g), len(w), got)
            self.assertEqual(g[0], w[0])
            for gc, wc in zip(g[1:], w[1:]):
                self.assertEqual("." in gc, "." in wc, f"{got!r} vs README {want!r}")  # integers as integers
            self.assertEqual(len(got), len(want), f"{got!r} vs README {want!r}")


class TestRouters(PlotCase):
    """experiments/routers.sh (every preset on balanced and skewed clusters) and tools/plot/routers.py."""

    def test_every_preset_on_both_data_sets_then_the_figure(self):
        presets = subprocess.run([BINARY, "presets"], capture_output=True, text=True, check=True).stdout
        names = [ln.split()[0] for ln in presets.split("\n\n")[0].splitlines() if ln.strip()]
        self.assertGreaterEqual(len(names), 5)
        out = os.path.join(TMP, "routers")
        short = ["train.steps=20", "train.eval_every=10", "train.log_every=5", "data.eval_size=256",
                 "data.train_size=1024", "train.batch_size=64", "threads=1"]
        p = subprocess.run(["bash", os.path.join(ROOT, "experiments", "routers.sh"), out, *short],
                           capture_output=True, text=True, timeout=600, env=dict(os.environ, MOESIM=BINARY))
        self.assertOk(p)
        with open(os.path.join(out, "routers.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([(r["preset"], r["data"]) for r in rows],
                         [(n, d) for n in names for d in ("balanced", "skewed")])
        for r in rows:
            self.assertEqual(r["status"], "completed", r)
            for col in ("accuracy", "max_vio", "drop_rate", "dropped_token_rate", "spec_nmi"):
                self.assertTrue(0.0 <= float(r[col]) < 100.0, (r["preset"], col, r[col]))
        # the balanced runs have a balanced cluster mix, the skewed ones the presets' Zipf skew
        with open(os.path.join(out, names[0], "balanced", "config.yaml"), encoding="utf-8") as f:
            self.assertIn("imbalance: 0", f.read())
        table = p.stdout.splitlines()
        self.assertEqual(len(table), 1 + len(rows))
        self.assertTrue(table[0].startswith("preset"))
        p = plot("routers.py", os.path.join(out, "routers.csv"), "-o", self.out("routers.png"))
        self.assertOk(p)
        self.assertPng(self.out("routers.png"), (1000, 4 * 250 + 120))
        p = plot("routers.py", os.path.join(out, "routers.csv"), "--y", "nosuch", "-o", self.out("r2.png"))
        self.assertClearError(p, "nosuch")


class TestTorchReference(PlotCase):
    """experiments/torch_reference.py, the PyTorch side of experiments/bench_vs_torch.py. torch is not
    a dependency of the project: without it only the wiring is checked, the rest is skipped."""

    def bench_vs_torch(self):
        spec = importlib.util.spec_from_file_location("bench_vs_torch",
                                                      os.path.join(ROOT, "experiments", "bench_vs_torch.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def test_bench_vs_torch_uses_the_reference_in_the_repository(self):
        env = {k: v for k, v in os.environ.items() if k != "TORCH_BENCH"}
        p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "bench_vs_torch.py"), "--help"],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertOk(p)
        self.assertIn("experiments/torch_reference.py", p.stdout)
        self.assertTrue(os.path.isfile(os.path.join(ROOT, "experiments", "torch_reference.py")))
        import argparse
        a = argparse.Namespace(impl="sparse", threads=1, steps=2, warmup=1)
        cfg = self.bench_vs_torch().resolved_config(BINARY, os.path.join(ROOT, "configs", "bench", "tiny.yaml"), [])
        args = self.bench_vs_torch().peer_args(cfg, a)
        self.assertEqual(args[:2], ["--impl", "sparse"])
        self.assertIn("--capacity-factor", args)

    def test_reference_runs_and_its_impls_agree(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            self.skipTest("torch is not installed (not a dependency; pip install torch to run this case)")
        ref = os.path.join(ROOT, "experiments", "torch_reference.py")
        common_args = ["--d-in", "8", "--d-model", "16", "--d-ff", "32", "--experts", "4", "--k", "2",
                       "--batch", "64", "--classes", "4", "--threads", "1"]
        p = subprocess.run([sys.executable, ref, *common_args, "--verify"], capture_output=True, text=True, timeout=120)
        self.assertOk(p)
        self.assertIn("OK", p.stdout)
        for impl in ("sparse", "dense"):
            p = subprocess.run([sys.executable, ref, *common_args, "--impl", impl, "--steps", "3", "--warmup", "1",
                                "--header"], capture_output=True, text=True, timeout=120)
            self.assertOk(p)
            row = self.bench_vs_torch().csv_row(p.stdout)
            for col in ("ms_per_step_median", "ms_per_step_min", "ms_per_step_max", "drop_fraction"):
                self.assertGreaterEqual(float(row[col]), 0.0, col)
            self.assertEqual(row["impl"], impl)
            self.assertLess(float(row["final_loss"]), float(row["first_loss"]) + 1.0)


class TestSweep(PlotCase):
    def test_x_and_two_stats(self):
        p = plot("sweep.py", SWEEP, "--x", "balance.alpha", "--y", "max_vio,loss", "-o", self.out("sw.png"))
        self.assertOk(p)
        self.assertIn("averaging over seed (2 values)", p.stderr)
        self.assertPng(self.out("sw.png"), (640, 90 + 360 * 2))

    def test_hue_col_short_keys_and_default_output(self):
        p = plot("sweep.py", SWEEP, "--x", "seed", "--y", "max_vio", "--hue", "experts.count", "--col", "alpha",
                 "--err", "ci95")
        self.assertOk(p)
        self.assertPng(os.path.join(SWEEP, "sweep_max_vio_vs_seed.png"), (100 + 460 * 2, 450))

    def test_key_only_in_config_yaml(self):
        """data.train_size is not a summary column: it is read from each run's config.yaml."""
        p = plot("sweep.py", SWEEP, "--x", "data.train_size", "--y", "accuracy", "--hue", "balance.alpha",
                 "--size", "700x500", "-o", self.out("cfgkey.png"))
        self.assertOk(p)
        self.assertPng(self.out("cfgkey.png"), (700, 500))

    def test_decades_give_a_log_axis(self):
        d = os.path.join(TMP, "sweep_decades")
        for a in ALPHAS:
            for s in SEEDS:
                os.makedirs(os.path.join(d, run_name(a, s)), exist_ok=True)
        spread = {(0.0, "1"): "0", (0.0, "2"): "0.001", (0.01, "1"): "0.01", (0.01, "2"): "0.1"}

        def rewrite(v):
            v = dict(v)
            v["balance.alpha"] = spread[(float(v["balance.alpha"]), v["seed"])]
            return v

        write_sweep_summary(d, rewrite=rewrite)
        p = plot("sweep.py", d, "--x", "balance.alpha", "--y", "max_vio", "-o", self.out("decades.png"))
        self.assertOk(p)
        self.assertIn("symlog", p.stderr)
        self.assertPng(self.out("decades.png"), (640, 450))

    def test_gathers_runs_without_summary_csv(self):
        d = os.path.join(TMP, "shell_loop_sweep")
        for s in SEEDS:
            shutil.copytree(self.run_dir(seed=s), os.path.join(d, f"seed{s}"))
        p = plot("sweep.py", d, "--x", "seed", "--y", "dead_final", "-o", self.out("loop.png"))
        self.assertOk(p)
        self.assertPng(self.out("loop.png"), (640, 450))

    def test_bad_inputs(self):
        p = plot("sweep.py", SWEEP, "--x", "balance.alpha", "--y", "max_vioo")
        self.assertClearError(p, "max_vioo", "no such column", "max_vio, load_cv")
        p = plot("sweep.py", SWEEP, "--x", "balance.alphaa", "--y", "loss")
        self.assertClearError(p, "balance.alphaa", "balance.alpha")
        self.assertClearError(plot("sweep.py", SWEEP, "--x", "balance.alpha", "--y", "status"), "not numeric")
        self.assertClearError(plot("sweep.py", self.run_dir(), "--x", "seed", "--y", "loss"), "single run", "run.py")
        empty = self.out("empty_sweep")
        os.makedirs(empty, exist_ok=True)
        self.assertClearError(plot("sweep.py", empty, "--x", "seed", "--y", "loss"), "not a moe-sim sweep")
        self.assertClearError(plot("sweep.py", SWEEP, "--x", "seed", "--y", "loss", "--hue", "seed"), "different")


class TestCompare(PlotCase):
    def runs(self):
        return [self.run_dir("0", "1"), self.run_dir("0.01", "1"), self.run_dir("0.01", "2")]

    def test_layer_stat_mean_over_layers(self):
        p = plot("compare.py", *self.runs(), "--y", "max_vio", "-o", self.out("cmp.png"))
        self.assertOk(p)
        self.assertPng(self.out("cmp.png"), (900, 480))

    def test_eval_split_one_layer_two_stats(self):
        p = plot("compare.py", *self.runs(), "--y", "spec_nmi,loss", "--split", "eval", "--layer", "1",
                 "--smooth", "2", "-o", self.out("cmp2.png"))
        self.assertOk(p)
        self.assertPng(self.out("cmp2.png"), (900, 880))

    def test_labels_are_the_config_differences(self):
        sys.path.insert(0, PLOT)
        try:
            import common
            import compare
        finally:
            sys.path.remove(PLOT)
        labels, keys = compare.differing_labels([common.Run(d) for d in self.runs()])
        self.assertEqual(labels, ["balance.alpha=0, seed=1", "balance.alpha=0.01, seed=1",
                                  "balance.alpha=0.01, seed=2"])
        self.assertEqual(keys, "balance.alpha, seed")

    def test_bad_inputs(self):
        p = plot("compare.py", *self.runs(), "--y", "bogus")
        self.assertClearError(p, "no column `bogus`", "metrics.csv has: loss", "layers.csv has: max_vio")
        self.assertClearError(plot("compare.py", *self.runs(), "--y", "max_vio", "--layer", "7"), "--layer 7")
        self.assertClearError(plot("compare.py", *self.runs(), "--y", "max_vio", "--layer", "x"), "--layer x")
        self.assertClearError(plot("compare.py", self.run_dir(), SWEEP, "--y", "loss"), "is a sweep directory")
        p = plot("compare.py", self.run_dir())
        self.assertEqual(p.returncode, 2)
        self.assertIn("--y", p.stderr)


BENCH_COLUMNS = ["config", "program", "round", "ms_median", "ms_min", "ms_max", "gflop", "drop", "rss_mib", "blas"]
# config -> (moe-sim ms, torch ms, moe-sim GFLOP, torch GFLOP): hand-chosen, in the range of docs/performance.md
BENCH_NUMBERS = {"tiny": (1.2, 6.0, 0.06, 0.06), "small": (40.0, 56.0, 6.3, 6.3),
                 "n8": (20.0, 32.0, 3.4, 3.4), "n64": (27.0, 72.0, 3.3, 3.2), "n512": (112.0, 440.0, 4.0, 4.2)}


def write_bench_csv(path, programs=("moe-sim", "torch"), configs=tuple(BENCH_NUMBERS), columns=BENCH_COLUMNS,
                    rounds=(1, 2, 3)):
    """A raw CSV as experiments/bench_vs_torch.py --raw writes it: rounds x configs x programs."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for c in configs:
            moe_ms, torch_ms, moe_gf, torch_gf = BENCH_NUMBERS[c]
            for r in rounds:
                for prog in programs:
                    ms = (moe_ms if prog == "moe-sim" else torch_ms) * (1 + 0.05 * (r - 2))
                    row = {"config": c, "program": prog, "round": r, "ms_median": ms, "ms_min": 0.95 * ms,
                           "ms_max": 1.1 * ms, "gflop": moe_gf if prog == "moe-sim" else torch_gf,
                           "drop": 0.01, "rss_mib": "nan", "blas": "" if prog == "moe-sim" else "mkl"}
                    w.writerow([row[k] for k in columns])
    return path


class TestBench(PlotCase):
    def test_both_programs_size_and_default_output(self):
        d = self.out("bench_default")
        os.makedirs(d, exist_ok=True)
        raw = write_bench_csv(os.path.join(d, "raw.csv"))
        p = plot("bench.py", raw)
        self.assertOk(p)
        self.assertEqual(p.stdout.strip(), os.path.join(d, "bench_scaling.png"))
        self.assertPng(os.path.join(d, "bench_scaling.png"), (1300, 520))
        p = plot("bench.py", raw, "--size", "900x600", "--compact", "-o", self.out("bench_small.png"))
        self.assertOk(p)
        self.assertPng(self.out("bench_small.png"), (900, 600))
        self.assertOk(plot("bench.py", raw, "-o", self.out("bench.svg")))
        with open(self.out("bench.svg"), encoding="utf-8") as f:
            svg = f.read()
        self.assertIn("<svg", svg[:2000])

    def test_moe_sim_only(self):
        raw = write_bench_csv(self.out("bench_moesim.csv"), programs=("moe-sim",))
        p = plot("bench.py", raw, "--size", "800x500", "-o", self.out("bench_moesim.png"))
        self.assertOk(p)
        self.assertIn("no torch rows", p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        self.assertPng(self.out("bench_moesim.png"), (800, 500))

    def test_no_n_configs(self):
        raw = write_bench_csv(self.out("bench_no_n.csv"), configs=("tiny", "small"))
        p = plot("bench.py", raw, "-o", self.out("bench_no_n.png"))
        self.assertOk(p)
        self.assertIn("no config named n<digits>", p.stderr)
        self.assertPng(self.out("bench_no_n.png"), (720, 520))
        raw = write_bench_csv(self.out("bench_nothing.csv"), programs=("moe-sim",), configs=("tiny", "small"))
        self.assertClearError(plot("bench.py", raw, "-o", self.out("x.png")), "nothing to plot", "n<digits>")

    def test_torch_without_n8(self):
        """torch has no n8 row: its FLOPs line goes through its smallest N (n64), with a note."""
        raw = self.out("bench_no_n8_torch.csv")
        write_bench_csv(raw)
        with open(raw, newline="") as f:
            rows = [r for r in csv.reader(f) if not (r[0] == "n8" and r[1] == "torch")]
        with open(raw, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        p = plot("bench.py", raw, "-o", self.out("bench_no_n8_torch.png"))
        self.assertOk(p)
        self.assertIn("through n64", p.stderr)
        self.assertPng(self.out("bench_no_n8_torch.png"), (1300, 520))

    def test_bad_inputs(self):
        no_gflop = [c for c in BENCH_COLUMNS if c != "gflop"]
        raw = write_bench_csv(self.out("bench_no_gflop.csv"), columns=no_gflop)
        self.assertClearError(plot("bench.py", raw, "-o", self.out("x.png")), "no column `gflop`", "ms_median")
        raw = write_bench_csv(self.out("bench_no_program.csv"), columns=[c for c in BENCH_COLUMNS if c != "program"])
        self.assertClearError(plot("bench.py", raw, "-o", self.out("x.png")), "no column `program`")
        header_only = write_bench_csv(self.out("bench_header.csv"), configs=())
        self.assertClearError(plot("bench.py", header_only, "-o", self.out("x.png")), "no rows")
        self.assertClearError(plot("bench.py", self.out("bench_missing.csv")), "no such file")
        raw = write_bench_csv(self.out("bench_ok.csv"))
        self.assertClearError(plot("bench.py", raw, "-o", self.out("x.nope")), "cannot write .nope")
        self.assertClearError(plot("bench.py", raw, "--size", "big"), "--size")
        self.assertFalse(os.path.exists(self.out("x.png")))


if __name__ == "__main__":
    missing = deps_missing()
    if missing and in_ci():
        sys.stderr.write(f"test_plot.py: error: CI=true and {missing_message(missing)}\n")
        sys.exit(1)
    if missing:
        sys.stderr.write(f"\nWARNING: SKIPPED, no plot test ran: {missing_message(missing)}\n\n")
        sys.exit(77)
    unittest.main()
