// The rules of the router-head options (router.jitter, router.head, router.cosine.*,
// router.topk.noise): each conflict is one diagnostic naming the key, and the legal combinations
// load.
#include <doctest/doctest.h>

#include <string>

#include "config/config_load.h"
#include "config/config_test_util.h"

using namespace moe;
using moe::test::load_error;

namespace {
Config load(const std::string& yaml) {
    return config_load_string(yaml, "t.yaml", {});
}
bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}
}  // namespace

TEST_SUITE("config") {
    TEST_CASE("router options: jitter is at least 0 and below 1") {
        CHECK(load("router: {jitter: 0.01}\n").router.jitter == 0.01);
        CHECK(load("router: {type: expert_choice, jitter: 0.5}\n").router.jitter == 0.5);
        CHECK(has(load_error("router: {jitter: 1.0}\n"), "router.jitter"));
        CHECK(has(load_error("router: {jitter: -0.1}\n"), "router.jitter"));
    }

    TEST_CASE("router options: learned noise needs softmax, no fixed noise and no z-loss") {
        const Config c = load("router: {topk: {noise: learned}}\nbalance: {loss: shazeer}\n");
        CHECK(c.router.topk.noise == TopkNoise::learned);
        CHECK(c.balance.loss == BalanceLoss::shazeer);  // shazeer accepts the learned noise
        const std::string sig = load_error("router: {score: sigmoid, topk: {noise: learned}}\n");
        CHECK(has(sig, "router.topk.noise: learned noise is Shazeer"));
        CHECK(has(sig, "router.score: softmax"));
        CHECK(has(load_error("router: {noise: 0.5, topk: {noise: learned}}\n"),
                  "router.noise must be 0, got router.noise = 0.5"));
        CHECK(has(load_error("router: {topk: {noise: learned}}\nbalance: {z_loss: 0.001}\n"),
                  "set balance.z_loss to 0"));
        // shazeer without any noise names both ways out
        CHECK(has(load_error("balance: {loss: shazeer}\n"),
                  "'shazeer' needs router.noise > 0 or router.topk.noise: learned"));
        // router.topk.* belongs to topk
        CHECK(has(load_error("router: {type: expert_choice, topk: {noise: learned}}\n"),
                  "router.topk.noise: only read by router.type: topk"));
    }

    TEST_CASE("router options: the cosine head, its keys, and no learned noise with it") {
        const Config c = load("router: {head: cosine, cosine: {dim: 4, temperature: 0.1}}\n");
        CHECK(c.router.head == RouterHeadKind::cosine);
        CHECK(c.router.cosine.dim == 4);
        CHECK(c.router.cosine.temperature == 0.1);
        CHECK(load("router: {type: expert_choice, head: cosine}\n").router.head ==
              RouterHeadKind::cosine);
        CHECK(has(load_error("router: {head: cosine, topk: {noise: learned}}\n"),
                  "router.head: the cosine head makes one score per expert"));
        CHECK(has(load_error("router: {cosine: {temperature: 0}}\n"), "router.cosine.temperature"));
        CHECK(has(load_error("router: {cosine: {dim: 0}}\n"), "router.cosine.dim"));
        CHECK(has(load_error("router: {head: cosin}\n"), "router.head"));
    }
    TEST_CASE("router options: router.topk.gate_logits needs fixed gating noise") {
        CHECK(Config{}.router.topk.gate_logits == GateLogits::noisy);
        const Config c =
            load("router: {noise: 1.0, noise_kind: uniform, k: 1, topk: {gate_logits: clean}}\n");
        CHECK(c.router.topk.gate_logits == GateLogits::clean);
        CHECK(load("router: {noise: 0.5, score: sigmoid, topk: {gate_logits: clean}}\n")
                  .router.topk.gate_logits == GateLogits::clean);
        // no noise: the clean logits are the noisy ones (load_error: exactly one diagnostic)
        const std::string none = load_error("router: {topk: {gate_logits: clean}}\n");
        CHECK(has(none,
                  "router.topk.gate_logits: 'clean' gates by the logits before the gating "
                  "noise"));
        CHECK(has(none, "got router.noise = 0.0 (the default)"));
        // learned noise: one diagnostic, about the learned noise (not about router.noise = 0)
        const std::string learned =
            load_error("router: {topk: {noise: learned, gate_logits: clean}}\n");
        CHECK(has(learned, "router.topk.gate_logits: learned noise (Shazeer et al.)"));
        // the routers without gating noise: router.topk.* belongs to topk
        CHECK(has(load_error("router: {type: expert_choice, topk: {gate_logits: clean}}\n"),
                  "router.topk.gate_logits: only read by router.type: topk"));
        CHECK(has(load_error("router: {noise: 1.0, topk: {gate_logits: soft}}\n"),
                  "router.topk.gate_logits"));
    }

    TEST_CASE("router options: router.init and router.noise_kind") {
        CHECK(Config{}.router.init == RouterInit::normal);
        CHECK(Config{}.router.noise_kind == NoiseKind::gaussian);
        const Config c = load("router: {init: zero, noise: 1.0, noise_kind: uniform, k: 1}\n");
        CHECK(c.router.init == RouterInit::zero);
        CHECK(c.router.noise_kind == NoiseKind::uniform);
        CHECK(load("router: {type: expert_choice, init: zero}\n").router.init == RouterInit::zero);
        CHECK(has(load_error("router: {init: zero, head: cosine}\n"),
                  "router.init: a zero projection and zero expert embeddings"));
        CHECK(has(load_error("router: {init: zero, head: cosine, type: expert_choice}\n"),
                  "router.init: a zero projection"));
        CHECK(has(load_error("router: {init: small}\n"), "router.init"));
        // the shazeer loss needs Gaussian noise, as balance.loss or in balance.losses
        CHECK(has(load_error("router: {noise: 1.0, noise_kind: uniform}\nbalance: {loss: "
                             "shazeer}\n"),
                  "router.noise_kind: the shazeer loss estimates the load"));
        CHECK(has(load_error("router: {noise: 1.0, noise_kind: uniform}\nbalance: {loss: none, "
                             "losses: {shazeer: 0.01}}\n"),
                  "router.noise_kind: the shazeer loss estimates the load"));
        CHECK(has(load_error("router: {noise_kind: uniform, topk: {noise: learned}}\n"),
                  "router.noise_kind: uniform noise is router.noise * U[0, 1)"));
    }

    TEST_CASE("train options: ngd and the router group") {
        const Config d{};
        CHECK(d.train.router_lr == 0.0);
        CHECK(d.train.router_optimizer == RouterOptimizer::same);
        const Config c =
            load("train: {optimizer: ngd, router_optimizer: sgd, router_lr: 0.1, lr: 0.001}\n");
        CHECK(c.train.optimizer == OptimizerKind::ngd);
        CHECK(c.train.router_optimizer == RouterOptimizer::sgd);
        CHECK(c.train.router_lr == 0.1);
        CHECK(has(load_error("train: {router_lr: -1}\n"), "train.router_lr"));
        CHECK(has(load_error("train: {router_optimizer: lion}\n"), "train.router_optimizer"));
    }
}
