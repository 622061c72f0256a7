// Golden runs: two tiny configs trained for 20 steps through the public train_run(), compared
// step by step with numbers recorded from an earlier version (the idea of llm.c's test_gpt2).
// Any change that moves the training loss, the gradient norm or the per-expert routed token
// counts fails here, so a refactor that claims "results unchanged" can prove it.
//
// The tables below were produced by the code of the commit that added this file; they are a
// regression reference, not ground truth. When a change is MEANT to move the numbers, say so in
// its commit message and regenerate the tables:
//   MOESIM_GOLDEN_PRINT=1 moesim_tests -tc="golden*"
// prints every table in source form (paste them over the old ones) and FAILS on purpose, so
// that a CI job can never pass in print mode.
//
// The configs set every key that can move a number explicitly, so a change of a default (for
// example of router.normalize, or of what sigmoid scores mean) does not move them; only the
// code can.
//
// Tolerances. One build on one instruction set gives byte-identical numbers, but the vector
// width and FMA change the order of float reductions. Measured on an AVX-512 machine (AMD EPYC,
// GCC 12, 1 thread) between three builds of the same commit: -march=native (AVX-512),
// -march=x86-64-v3 (AVX2+FMA) and plain x86-64 (SSE2, no FMA); largest relative difference over
// the 20 steps of both configs, any pair of builds:
//   loss       5.5e-8   (per step 3e-10 .. 5.5e-8: float rounding, not growing with the steps)
//   grad_norm  2.6e-7   (per step 6e-10 .. 2.6e-7)
//   tokens     no count moved in any step, layer or expert
// The tolerances are about 10 times those: relative 5e-7 on the loss and 2e-6 on the gradient
// norm. Token counts must match exactly: the smallest gap between the last selected and the
// first unselected score (p + b) over both runs is 1.1e-5, about 100 times the score drift, so
// no selection is near a flip. A real change moves far more: a different seed, capacity factor
// 1.25 instead of 1.0, alpha 0.02 instead of 0.01, z_loss 0.002, bias_rate 0.02, two shared
// experts or router.normalize true each move the loss by 2% to 15% and the token counts by
// 24 to 48; even lr 0.0101 instead of 0.01 moves the loss by 1% and 13 tokens.
#include <doctest/doctest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::scratch_dir;

namespace {

constexpr int kSteps = 20;

// See the measurements at the top of this file.
constexpr double kLossRelTol = 5e-7;
constexpr double kGradNormRelTol = 2e-6;
constexpr int64_t kTokensAbsTol = 0;

// Top-2 softmax router with a capacity factor of 1.0 that drops tokens (Zipf-skewed clusters),
// the Switch balancing loss (alpha 0.01) and a z-loss.
const char* const kTop2CapacityYaml = R"(
name: golden-top2-capacity
seed: 7
device: cpu
threads: 1
data:
  task: clusters
  train_size: 2048
  eval_size: 128
  clusters:
    dim: 8
    num_clusters: 8
    num_classes: 4
    spread: 0.35
    imbalance: 1.0
    teacher: linear
    label_noise: 0.0
model:
  d_model: 16
  layers: 2
  moe_every: 1
experts:
  count: 8
  d_ff: 16
  activation: gelu
  shared: 0
router:
  type: topk
  k: 2
  score: softmax
  normalize: false
  noise: 0.0
capacity:
  factor: 1.0
  drop_policy: position
  eval_factor: 0.0
balance:
  loss: switch
  alpha: 0.01
  z_loss: 0.001
  bias_rate: 0.0
train:
  steps: 20
  batch_size: 64
  optimizer: adam
  lr: 0.01
  weight_decay: 0.0
  beta1: 0.9
  beta2: 0.999
  momentum: 0.0
  grad_clip: 1.0
  warmup_steps: 0
  schedule: constant
  min_lr: 0.0
  log_every: 1
  eval_every: 20
)";

// Top-1 dropless softmax router with auxiliary-loss-free bias balancing and one shared expert.
const char* const kTop1BiasSharedYaml = R"(
name: golden-top1-bias-shared
seed: 11
device: cpu
threads: 1
data:
  task: clusters
  train_size: 2048
  eval_size: 128
  clusters:
    dim: 8
    num_clusters: 8
    num_classes: 4
    spread: 0.35
    imbalance: 1.0
    teacher: linear
    label_noise: 0.0
model:
  d_model: 16
  layers: 2
  moe_every: 1
experts:
  count: 6
  d_ff: 16
  activation: swiglu
  shared: 1
router:
  type: topk
  k: 1
  score: softmax
  normalize: false
  noise: 0.0
capacity:
  factor: 0.0
  drop_policy: position
  eval_factor: 0.0
balance:
  loss: none
  alpha: 0.0
  z_loss: 0.0
  bias_rate: 0.01
train:
  steps: 20
  batch_size: 64
  optimizer: adamw
  lr: 0.01
  weight_decay: 0.01
  beta1: 0.9
  beta2: 0.999
  momentum: 0.0
  grad_clip: 1.0
  warmup_steps: 0
  schedule: constant
  min_lr: 0.0
  log_every: 1
  eval_every: 20
)";

// What one run recorded, per train log step 1..kSteps. Per-expert columns are laid out layer
// by layer: index = layer * experts + expert.
struct Trace {
    std::vector<double> loss, grad_norm;
    std::vector<std::vector<int64_t>> tokens, dropped;
    std::vector<std::vector<double>> bias;
};

struct Golden {
    std::vector<double> loss, grad_norm;
    std::vector<std::vector<int64_t>> tokens;
};

using moe::test::Row;

// The rows of a CSV file the run must have written.
std::vector<Row> read_csv(const std::filesystem::path& p) {
    REQUIRE_MESSAGE(std::ifstream(p).good(), "cannot read " << p.string());
    return moe::test::read_csv(p);
}

Trace run_golden(const std::string& name, const std::string& yaml,
                 const std::vector<std::string>& overrides = {}) {
    const auto dir = scratch_dir("golden_" + name);
    const Config cfg = config_load_string(yaml, name + ".yaml", overrides);
    RunOptions opts;
    opts.out_dir = dir;
    const RunResult r = train_run(cfg, opts);
    const int64_t steps = cfg.train.steps;
    REQUIRE(r.status == RunStatus::completed);
    REQUIRE(r.steps_done == steps);

    Trace t;
    for (const Row& row : read_csv(dir / "metrics.csv")) {
        if (row.at("split") != "train") continue;
        REQUIRE(std::stoll(row.at("step")) == int64_t(t.loss.size()) + 1);
        t.loss.push_back(std::stod(row.at("loss")));
        t.grad_norm.push_back(std::stod(row.at("grad_norm")));
    }
    REQUIRE(int64_t(t.loss.size()) == steps);

    // (step, layer, expert) -> row; layers are numbered by block index, experts from 0.
    std::map<int64_t, std::map<std::pair<int, int>, Row>> by_step;
    for (const Row& row : read_csv(dir / "experts.csv")) {
        if (row.at("split") != "train") continue;
        by_step[std::stoll(row.at("step"))]
               [{std::stoi(row.at("layer")), std::stoi(row.at("expert"))}] = row;
    }
    REQUIRE(int64_t(by_step.size()) == steps);
    const size_t cells = by_step.begin()->second.size();
    for (const auto& [step, rows] : by_step) {
        REQUIRE(step == int64_t(t.tokens.size()) + 1);
        REQUIRE(rows.size() == cells);
        std::vector<int64_t> tok, drop;
        std::vector<double> bias;
        for (const auto& [key, row] : rows) {
            tok.push_back(std::stoll(row.at("tokens")));
            drop.push_back(std::stoll(row.at("dropped")));
            bias.push_back(std::stod(row.at("bias")));
        }
        t.tokens.push_back(tok);
        t.dropped.push_back(drop);
        t.bias.push_back(bias);
    }
    return t;
}

std::string shortest(double v) {
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, res.ptr);
}

// The trace as the source of a Golden initializer: 4 numbers a line, one line of token counts
// per step (the tables sit between clang-format off/on, so they keep this layout).
std::string as_source(const std::string& var, const Trace& t) {
    std::ostringstream s;
    auto numbers = [&](const char* what, const std::vector<double>& v) {
        s << "    // " << what << "\n    {";
        for (size_t i = 0; i < v.size(); ++i)
            s << (i == 0 ? "" : i % 4 == 0 ? ",\n     " : ", ") << shortest(v[i]);
        s << "},\n";
    };
    s << "const Golden " << var << " = {\n";
    numbers("loss", t.loss);
    numbers("grad_norm", t.grad_norm);
    s << "    // tokens: one row per step, layer by layer, expert by expert\n    {\n";
    for (const auto& row : t.tokens) {
        s << "        {";
        for (size_t j = 0; j < row.size(); ++j) s << (j ? ", " : "") << row[j];
        s << "},\n";
    }
    s << "    },\n};\n";
    return s.str();
}

bool print_mode() {
    const char* v = std::getenv("MOESIM_GOLDEN_PRINT");
    return v && std::string(v) == "1";
}

double rel_diff(double got, double want) {
    const double scale = std::max(std::abs(got), std::abs(want));
    return scale > 0 ? std::abs(got - want) / scale : 0.0;
}

// Checks a trace against its golden table; in print mode prints the table and fails instead.
void check_golden(const std::string& var, const Trace& t, const Golden& g) {
    if (print_mode()) {
        MESSAGE("MOESIM_GOLDEN_PRINT=1: golden table of this build:\n" << as_source(var, t));
        FAIL_CHECK(
            "MOESIM_GOLDEN_PRINT=1 prints the golden tables and checks nothing: "
            "this run fails on purpose");
        return;
    }
    REQUIRE(g.loss.size() == size_t(kSteps));
    REQUIRE(g.grad_norm.size() == size_t(kSteps));
    REQUIRE(g.tokens.size() == size_t(kSteps));
    double worst_loss = 0, worst_grad = 0;
    int64_t worst_tokens = 0;
    for (int i = 0; i < kSteps; ++i) {
        CAPTURE(i + 1);
        const double dl = rel_diff(t.loss[i], g.loss[i]);
        const double dg = rel_diff(t.grad_norm[i], g.grad_norm[i]);
        CHECK_MESSAGE(dl <= kLossRelTol, "step " << i + 1 << " loss " << shortest(t.loss[i])
                                                 << ", golden " << shortest(g.loss[i]));
        CHECK_MESSAGE(dg <= kGradNormRelTol, "step " << i + 1 << " grad_norm "
                                                     << shortest(t.grad_norm[i]) << ", golden "
                                                     << shortest(g.grad_norm[i]));
        REQUIRE(t.tokens[i].size() == g.tokens[i].size());
        for (size_t j = 0; j < g.tokens[i].size(); ++j) {
            const int64_t d = std::abs(t.tokens[i][j] - g.tokens[i][j]);
            CHECK_MESSAGE(d <= kTokensAbsTol, "step " << i + 1 << " cell " << j << " tokens "
                                                      << t.tokens[i][j] << ", golden "
                                                      << g.tokens[i][j]);
            worst_tokens = std::max(worst_tokens, d);
        }
        worst_loss = std::max(worst_loss, dl);
        worst_grad = std::max(worst_grad, dg);
    }
    MESSAGE(var << ": largest relative difference from golden: loss " << worst_loss
                << ", grad_norm " << worst_grad << "; largest token difference " << worst_tokens);
}

// GOLDEN TABLES: generated by MOESIM_GOLDEN_PRINT=1 (see the top of this file).
// clang-format off
const Golden kTop2Capacity = {
    // loss
    {1.4940133343500435, 1.4607846608005945, 1.5243832226016851, 1.4717207874944986,
     1.549633814852177, 1.5326398454692416, 1.4355742761175956, 1.3962166290525406,
     1.4612403716081217, 1.4448952448083183, 1.3824167640558875, 1.3555975165421152,
     1.411399467091347, 1.4205459184874132, 1.4323865312353423, 1.3962410196217914,
     1.396985079988926, 1.449108762621638, 1.4471060853991227, 1.3391766924518074},
    // grad_norm
    {0.5799706008236568, 0.8054793978983127, 0.8486171077983817, 0.49831797908260816,
     0.6821898372319414, 0.7463756783281628, 0.7242871051021275, 0.3682429055956107,
     0.7720480803052293, 0.7435991915307454, 0.5754131596747487, 0.39709597876435737,
     0.6201993654437472, 0.4765841851735057, 0.6287451521233185, 0.4850271920918536,
     0.462242323032813, 0.5454256264926612, 0.6672637894605247, 0.5477464067727649},
    // tokens: one row per step, layer by layer, expert by expert
    {
        {23, 27, 0, 12, 13, 29, 18, 6, 6, 8, 47, 0, 8, 7, 18, 34},
        {17, 38, 2, 9, 8, 36, 9, 9, 9, 11, 4, 7, 41, 4, 15, 37},
        {16, 32, 4, 13, 2, 41, 14, 6, 17, 9, 1, 12, 29, 5, 11, 44},
        {21, 27, 1, 25, 4, 35, 11, 4, 15, 13, 0, 1, 41, 9, 16, 33},
        {20, 26, 4, 23, 9, 26, 13, 7, 12, 10, 7, 2, 38, 21, 9, 29},
        {20, 27, 12, 15, 13, 22, 19, 0, 16, 11, 10, 3, 37, 16, 9, 26},
        {18, 32, 14, 16, 8, 23, 17, 0, 24, 4, 16, 6, 36, 7, 9, 26},
        {13, 41, 11, 9, 5, 20, 29, 0, 31, 9, 3, 27, 26, 5, 8, 19},
        {15, 39, 13, 14, 3, 2, 41, 1, 29, 4, 3, 27, 32, 3, 8, 22},
        {17, 33, 21, 13, 5, 1, 38, 0, 25, 7, 2, 25, 33, 6, 12, 18},
        {20, 30, 23, 13, 4, 3, 35, 0, 23, 10, 2, 19, 33, 9, 13, 19},
        {22, 34, 21, 11, 7, 1, 32, 0, 11, 9, 18, 15, 31, 9, 16, 19},
        {23, 31, 25, 9, 6, 0, 33, 1, 0, 9, 17, 22, 30, 19, 17, 14},
        {23, 33, 22, 11, 7, 1, 18, 13, 0, 10, 12, 20, 30, 19, 20, 17},
        {30, 25, 30, 11, 8, 0, 10, 14, 0, 16, 7, 19, 28, 25, 21, 12},
        {37, 33, 19, 7, 5, 0, 13, 14, 0, 9, 10, 29, 21, 34, 12, 13},
        {38, 25, 26, 12, 6, 0, 6, 15, 1, 9, 7, 34, 13, 30, 17, 17},
        {42, 36, 20, 12, 3, 0, 7, 8, 0, 8, 1, 33, 16, 34, 13, 23},
        {40, 35, 14, 15, 1, 0, 10, 13, 1, 13, 1, 29, 14, 39, 8, 23},
        {46, 33, 16, 10, 2, 0, 15, 6, 1, 10, 2, 35, 10, 37, 13, 20},
    },
};
const Golden kTop1BiasShared = {
    // loss
    {1.656271104120015, 1.57218777051489, 1.4817384420010473, 1.3301804889307425,
     1.4169193620577902, 1.4034955392000616, 1.2451495176869836, 1.375934776847721,
     1.4060605755070188, 1.350161263121253, 1.2661077574513635, 1.3332467380171422,
     1.2374116273597682, 1.220720162822081, 1.3187047822599764, 1.2157017750944397,
     1.2369405683240082, 1.2199067523712332, 1.1520145340980492, 1.1451674824617637},
    // grad_norm
    {1.6006529931617848, 1.3572987010801432, 1.1195750753763742, 0.8451066865382358,
     1.0535388785288085, 1.0415813267557785, 0.8113291520459154, 1.2968429223285936,
     0.7632759626192628, 0.8348646523850789, 0.9712872517919731, 0.8458573030246052,
     0.6471206980151386, 0.7200883604990607, 0.9079667152526255, 1.0842353185295919,
     1.2920860156470348, 0.9510102127955246, 0.8610376310360002, 0.7991795703793536},
    // tokens: one row per step, layer by layer, expert by expert
    {
        {7, 2, 14, 1, 35, 5, 11, 3, 7, 24, 5, 14},
        {3, 22, 0, 2, 31, 6, 1, 29, 16, 0, 17, 1},
        {12, 10, 0, 3, 7, 32, 21, 10, 4, 7, 11, 11},
        {3, 9, 0, 15, 31, 6, 3, 15, 10, 27, 5, 4},
        {14, 9, 2, 1, 10, 28, 21, 9, 18, 2, 7, 7},
        {3, 19, 27, 4, 10, 1, 13, 10, 4, 7, 14, 16},
        {3, 19, 0, 10, 11, 21, 14, 8, 5, 20, 13, 4},
        {18, 13, 2, 10, 2, 19, 10, 16, 21, 8, 4, 5},
        {4, 11, 20, 17, 12, 0, 12, 12, 15, 12, 7, 6},
        {13, 14, 0, 13, 3, 21, 8, 1, 8, 5, 14, 28},
        {16, 13, 8, 4, 12, 11, 12, 4, 12, 17, 12, 7},
        {6, 15, 19, 9, 10, 5, 8, 2, 9, 23, 15, 7},
        {6, 16, 2, 16, 15, 9, 12, 5, 13, 9, 16, 9},
        {10, 7, 13, 6, 5, 23, 9, 7, 5, 14, 10, 19},
        {15, 14, 4, 15, 4, 12, 19, 12, 6, 2, 14, 11},
        {13, 11, 9, 9, 13, 9, 16, 4, 12, 13, 12, 7},
        {1, 5, 15, 14, 0, 29, 10, 20, 4, 0, 10, 20},
        {7, 11, 7, 14, 9, 16, 22, 10, 2, 3, 14, 13},
        {24, 6, 9, 5, 11, 9, 19, 18, 3, 5, 10, 9},
        {13, 6, 11, 6, 3, 25, 15, 15, 8, 13, 4, 9},
    },
};
// clang-format on

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("golden run: top-2 softmax with capacity drops and the switch loss") {
        const Trace t = run_golden("top2_capacity", kTop2CapacityYaml);
        // The config exercises what it claims: tokens are dropped, no bias is learnt, and every
        // step routes exactly T * k = 64 * 2 assignments per layer.
        int64_t dropped = 0;
        for (const auto& step : t.dropped)
            for (int64_t d : step) dropped += d;
        CHECK(dropped > 0);
        for (double b : t.bias.back()) CHECK(b == 0.0);
        for (const auto& step : t.tokens) {
            REQUIRE(step.size() % 2 == 0);
            int64_t layer0 = 0, layer1 = 0;
            for (size_t j = 0; j < step.size(); ++j)
                (j < step.size() / 2 ? layer0 : layer1) += step[j];
            CHECK(layer0 == 128);
            CHECK(layer1 == 128);
        }
        check_golden("kTop2Capacity", t, kTop2Capacity);
    }

    TEST_CASE("golden run: top-1 dropless with bias balancing and a shared expert") {
        const Trace t = run_golden("top1_bias_shared", kTop1BiasSharedYaml);
        // The config exercises what it claims: nothing is dropped, the balancing bias has moved,
        // and the shared expert contributes (without it the very first loss differs).
        for (const auto& step : t.dropped)
            for (int64_t d : step) CHECK(d == 0);
        int nonzero_bias = 0;
        for (double b : t.bias.back()) nonzero_bias += b != 0.0;
        CHECK(nonzero_bias > 0);
        const Trace no_shared =
            run_golden("top1_bias_no_shared", kTop1BiasSharedYaml,
                       {"experts.shared=0", "train.steps=1", "train.eval_every=1"});
        CHECK(rel_diff(no_shared.loss[0], t.loss[0]) > 1e-3);
        check_golden("kTop1BiasShared", t, kTop1BiasShared);
    }

}  // TEST_SUITE
