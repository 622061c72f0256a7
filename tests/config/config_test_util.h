// Helpers shared by the config tests.
#pragma once

#include "config/config_load.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace moe::test {

// The diagnostics of the UserError thrown by f(), one formatted line each; fails the test when
// f() does not throw a UserError.
template <class F>
std::vector<std::string> diagnostics_of(F&& f) {
    try {
        f();
    } catch (const UserError& e) {
        std::vector<std::string> lines;
        for (const Diagnostic& d : e.diagnostics()) lines.push_back(d.format());
        return lines;
    }
    FAIL("expected a UserError");
    return {};
}

// Diagnostics of loading `yaml` (label "t.yaml") with `overrides`.
inline std::vector<std::string> load_errors(const std::string& yaml,
                                            const std::vector<std::string>& overrides = {}) {
    return diagnostics_of([&] { config_load_string(yaml, "t.yaml", overrides); });
}

// The only diagnostic of loading `yaml`; fails unless there is exactly one.
inline std::string load_error(const std::string& yaml,
                              const std::vector<std::string>& overrides = {}) {
    std::vector<std::string> lines = load_errors(yaml, overrides);
    REQUIRE_MESSAGE(lines.size() == 1, "got " << lines.size() << " diagnostics");
    return lines[0];
}

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A fresh scratch folder under MOESIM_TEST_TMP.
inline std::filesystem::path scratch_dir(const std::string& name) {
    std::filesystem::path p = std::filesystem::path(MOESIM_TEST_TMP) / "config" / name;
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p;
}

// A config with every field different from its default (where another legal value exists).
// Add a line here when a field is added to config.h.
inline Config nontrivial_config() {
    Config c;
    c.name = "exp-1.b_c";
    c.seed = 18446744073709551615ull;
    c.threads = 3;
    c.data.train_size = 0;
    c.data.eval_size = 1000;
    c.data.clusters.dim = 7;
    c.data.clusters.num_clusters = 5;
    c.data.clusters.num_classes = 3;
    c.data.clusters.spread = 0.1;
    c.data.clusters.imbalance = 1.3;
    c.data.clusters.teacher = Teacher::linear;
    c.data.clusters.label_noise = 0.05;
    // data.markov.*, data.modular.* and data.patch_clusters.* keep their defaults: the own keys of a task that is not
    // selected are not written to config.yaml (test_config_write.cpp has their own round trip)
    c.model.d_model = 48;
    c.model.layers = 6;
    c.model.moe_every = 2;
    c.model.heads = 6;
    c.model.tie_embeddings = true;
    c.model.output_softmax = true;  // data.task stays clusters, a classification task
    // model.kind stays `residual`: `transformer` needs data.task: markov (clusters here)
    c.experts.count = 8;
    c.experts.d_ff = 96;
    c.experts.activation = Activation::swiglu;
    c.experts.shared = 1;
    c.experts.shared_gate = SharedGate::sigmoid;
    // model.kind and experts.kind stay `residual` and `ffn`: moe_only and patch experts need each
    // other and data.task: patch_clusters; router.patch_tied stays false (it needs moe_only)
    c.experts.patch.activation = PatchActivation::linear;
    c.experts.patch.channels = 40;
    c.experts.patch.init_scale = 0.25;
    c.router.k = 1;
    c.router.score = ScoreFn::sigmoid;
    c.router.normalize = Normalize::no;
    c.router.noise = 0.3;
    c.router.scale = 2.5;
    c.router.jitter = 0.25;
    c.router.head = RouterHeadKind::cosine;
    c.router.cosine.dim = 8;
    c.router.cosine.temperature = 0.5;
    // router.init stays `normal`: `zero` needs router.head: linear (cosine is set above)
    // router.noise_kind stays `gaussian`: `uniform` refuses the shazeer loss (set below)
    // router.topk.second_expert stays `always`: `random` needs router.k = 2, the default
    // router.topk.noise stays `fixed`: `learned` needs router.noise = 0 and softmax scores
    c.router.topk.gate_logits = GateLogits::clean;  // needs router.noise > 0 (0.3 above)
    c.router.topk.groups = 4;
    c.router.topk.topk_groups = 2;
    c.capacity.factor = 0.0;
    c.capacity.drop_policy = DropPolicy::priority;
    c.capacity.min = 7;
    c.capacity.eval_factor = 2.5;
    // none: each loss is then free to be given in balance.losses (a loss is given once)
    c.balance.loss = BalanceLoss::none;
    c.balance.alpha = 1e-7;
    c.balance.z_loss = 0.001;
    c.balance.losses.switch_loss = 0.25;
    c.balance.losses.gshard = 0.125;
    c.balance.losses.shazeer = 1e-3;
    c.balance.bias_rate = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
    c.balance.bias_rule = BiasRule::mean_centred;
    c.balance.bias_warmup = 7;
    c.balance.bias_decay = BiasDecay::cosine;
    c.train.steps = 5'000'000'000;
    c.train.batch_size = 1;
    c.train.optimizer = OptimizerKind::sgd;
    c.train.lr = 0.1;
    c.train.router_lr = 0.5;
    c.train.router_optimizer = RouterOptimizer::adamw;
    c.train.weight_decay = 0.0;
    c.train.beta1 = 0.5;
    c.train.beta2 = 0.95;
    c.train.momentum = 0.9;
    c.train.grad_clip = 0.0;
    c.train.warmup_steps = 100;
    c.train.schedule = Schedule::cosine;
    c.train.min_lr = 1e-5;
    c.train.log_every = 1;
    c.train.eval_every = 5'000'000'000;
    c.train.checkpoint_every = 250;
    c.train.early_stop.loss_rise = 0.02;
    c.train.early_stop.loss_floor = 0.3;
    c.train.early_stop.after_step = 500;
    return c;
}

}  // namespace moe::test
