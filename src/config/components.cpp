// The component rows (see components.h): one row per router, balancer and task.
#include "config/components.h"

#include "config/config_load.h"
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>

#include <algorithm>

namespace moe {
namespace {

using detail::Show;

// ---- routers (router.type; factories in routing/router_registry.cpp) ----

// router.init: zero with the cosine head (the rule of every router that lists router.init).
std::string zero_init_cosine(const Config& c, const Show&) {
    if (c.router.init != RouterInit::zero || c.router.head == RouterHeadKind::linear) return {};
    return "a zero projection and zero expert embeddings give cosines of 0 and gradients of 0 "
           "for ever: use router.head: linear with router.init: zero";
}

constexpr std::string_view kTopkKeys[] = {"router.k",
                                          "router.score",
                                          "router.normalize",
                                          "router.noise",
                                          "router.noise_kind",
                                          "router.scale",
                                          "router.jitter",
                                          "router.head",
                                          "router.init",
                                          "router.cosine.dim",
                                          "router.cosine.temperature",
                                          "router.topk.second_expert",
                                          "router.topk.groups",
                                          "router.topk.topk_groups",
                                          "router.topk.noise",
                                          "router.topk.gate_logits"};
const KeyRule kTopkRules[] = {
    {"router.topk.gate_logits",
     {"router.topk.gate_logits", "router.noise"},
     "`router.type: topk` with `router.topk.gate_logits: clean` needs `router.noise` > 0: without "
     "gating noise the clean logits are the noisy ones",
     [](const Config& c, const Show& s) -> std::string {
         // learned noise has router.noise = 0 by its own rule: the rule below speaks for it
         if (c.router.topk.gate_logits != GateLogits::clean || c.router.noise > 0.0 ||
             c.router.topk.noise == TopkNoise::learned)
             return {};
         return fmt::format(
             "'clean' gates by the logits before the gating noise, which are the noisy ones when "
             "there is none: set router.noise > 0 or leave router.topk.gate_logits at noisy, got "
             "router.noise = {}",
             s.value("router.noise"));
     }},
    {"router.topk.gate_logits",
     {"router.topk.gate_logits", "router.topk.noise"},
     "`router.type: topk` with `router.topk.gate_logits: clean` needs `router.topk.noise: fixed`: "
     "learned noise learns its std through the noisy gates",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.topk.gate_logits != GateLogits::clean ||
             c.router.topk.noise == TopkNoise::fixed)
             return {};
         return "learned noise (Shazeer et al.) gets its task gradient only through the gates of "
                "the noisy logits: use router.topk.noise: fixed with router.topk.gate_logits: "
                "clean";
     }},
    {"router.init",
     {"router.init", "router.head"},
     "`router.type: topk` with `router.init: zero` needs `router.head: linear`: a zero cosine head "
     "is a saddle it never leaves (every cosine and every gradient is 0)",
     &zero_init_cosine},
    {"router.noise_kind",
     {"router.noise_kind", "router.topk.noise"},
     "`router.type: topk` with `router.noise_kind: uniform` needs `router.topk.noise: fixed`: the "
     "learned noise is Gaussian",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.noise_kind != NoiseKind::uniform || c.router.topk.noise == TopkNoise::fixed)
             return {};
         return "uniform noise is router.noise * U[0, 1); learned noise is softplus(x Wnoise) * "
                "N(0, 1): use router.topk.noise: fixed with router.noise_kind: uniform";
     }},
    {"router.noise_kind",
     {"router.noise_kind", "balance.loss"},
     "`router.type: topk` with `router.noise_kind: uniform` refuses `balance.loss: shazeer`: its "
     "load estimator is the Gaussian noise's CDF",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.noise_kind != NoiseKind::uniform || c.balance.loss != BalanceLoss::shazeer)
             return {};
         return "the shazeer loss estimates the load with the normal CDF of Gaussian gating "
                "noise: use router.noise_kind: gaussian with it";
     }},
    {"router.noise_kind",
     {"router.noise_kind", "balance.losses.shazeer"},
     "`router.type: topk` with `router.noise_kind: uniform` needs `balance.losses.shazeer` = 0: "
     "its load estimator is the Gaussian noise's CDF",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.noise_kind != NoiseKind::uniform || c.balance.losses.shazeer == 0.0)
             return {};
         return "the shazeer loss estimates the load with the normal CDF of Gaussian gating "
                "noise: use router.noise_kind: gaussian with it";
     }},
    {"router.k",
     {"router.k", "experts.count"},
     "`router.type: topk` needs `router.k` <= `experts.count`",
     [](const Config& c, const Show& s) -> std::string {
         if (!(c.router.k > c.experts.count)) return {};
         return fmt::format("{} is larger than experts.count {}", s.value("router.k"),
                            s.paren("experts.count"));
     }},
    {"router.topk.second_expert",
     {"router.topk.second_expert", "router.k"},
     "`router.type: topk` with `router.topk.second_expert: random` needs `router.k` = 2",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.topk.second_expert != SecondExpert::random || c.router.k == 2) return {};
         return fmt::format(
             "'random' decides on a second expert, so it needs router.k = 2, got "
             "router.k = {}",
             s.value("router.k"));
     }},
    {"router.topk.groups",
     {"router.topk.groups", "experts.count"},
     "`router.type: topk` needs `router.topk.groups` to divide `experts.count`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.count % c.router.topk.groups == 0) return {};
         return fmt::format("{} does not divide experts.count {}", s.value("router.topk.groups"),
                            s.paren("experts.count"));
     }},
    {"router.topk.topk_groups",
     {"router.topk.topk_groups", "router.topk.groups"},
     "`router.type: topk` needs `router.topk.topk_groups` <= `router.topk.groups`",
     [](const Config& c, const Show& s) -> std::string {
         if (!(c.router.topk.topk_groups > c.router.topk.groups)) return {};
         return fmt::format("{} is larger than router.topk.groups {}",
                            s.value("router.topk.topk_groups"), s.paren("router.topk.groups"));
     }},
    {"router.k",
     {"router.k", "router.topk.topk_groups"},
     "`router.type: topk` needs `router.k` <= `router.topk.topk_groups` * `experts.count` / "
     "`router.topk.groups`: the experts of the kept groups",
     [](const Config& c, const Show& s) -> std::string {
         const int groups = c.router.topk.groups, kept = c.router.topk.topk_groups;
         // groups = 1 is the rule above; a bad group count has its own diagnostic
         if (groups <= 1 || c.experts.count % groups != 0 || kept > groups ||
             c.router.k > c.experts.count)
             return {};
         const int experts = kept * (c.experts.count / groups);
         if (c.router.k <= experts) return {};
         return fmt::format(
             "{} is larger than the {} experts of the router.topk.topk_groups = {} "
             "kept groups of {}",
             s.value("router.k"), experts, kept, c.experts.count / groups);
     }},
    {"router.topk.noise",
     {"router.topk.noise", "router.score"},
     "`router.type: topk` with `router.topk.noise: learned` needs `router.score: softmax` (Shazeer "
     "et al.'s noisy top-k "
     "gating is a softmax)",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.topk.noise != TopkNoise::learned || c.router.score == ScoreFn::softmax)
             return {};
         return "learned noise is Shazeer et al.'s noisy top-k softmax gating: it needs "
                "router.score: softmax, got sigmoid";
     }},
    {"router.topk.noise",
     {"router.topk.noise", "router.noise"},
     "`router.type: topk` with `router.topk.noise: learned` needs `router.noise` = 0: the learned "
     "std replaces the fixed "
     "one",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.topk.noise != TopkNoise::learned || c.router.noise == 0.0) return {};
         return fmt::format(
             "learned noise has its std from the router (softplus of the noise logits), so "
             "router.noise must be 0, got router.noise = {}",
             s.value("router.noise"));
     }},
    {"router.topk.noise",
     {"router.topk.noise", "balance.z_loss"},
     "`router.type: topk` with `router.topk.noise: learned` needs `balance.z_loss` = 0 (the z-loss "
     "would count the noise "
     "logits)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.topk.noise != TopkNoise::learned || c.balance.z_loss == 0.0) return {};
         return fmt::format(
             "with learned noise the router makes 2N logits per token and the z-loss would "
             "count the N noise logits too: set balance.z_loss to 0, got {}",
             s.value("balance.z_loss"));
     }},
    {"router.head",
     {"router.head", "router.topk.noise"},
     "`router.type: topk` with `router.head: cosine` needs `router.topk.noise: fixed`: the "
     "cosine head makes expert scores only, no noise logits",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.head != RouterHeadKind::cosine || c.router.topk.noise != TopkNoise::learned)
             return {};
         return "the cosine head makes one score per expert (cosine / tau), not the noise logits "
                "of router.topk.noise: learned; use router.head: linear with learned noise, or "
                "router.noise for fixed noise";
     }},
};

constexpr std::string_view kExpertChoiceKeys[] = {"router.k",
                                                  "router.scale",
                                                  "router.jitter",
                                                  "router.head",
                                                  "router.init",
                                                  "router.cosine.dim",
                                                  "router.cosine.temperature",
                                                  "capacity.factor"};
const KeyRule kExpertChoiceRules[] = {
    {"router.init",
     {"router.init", "router.head"},
     "`router.type: expert_choice` with `router.init: zero` needs `router.head: linear`: a zero "
     "cosine head "
     "is a saddle it never leaves (every cosine and every gradient is 0)",
     &zero_init_cosine},
    {"capacity.factor",
     {"capacity.factor", "router.type"},
     "`router.type: expert_choice` needs `capacity.factor` > 0: each expert takes C = "
     "ceil(factor * T * k / N) tokens",
     [](const Config& c, const Show& s) -> std::string {
         if (c.capacity.factor > 0) return {};
         return fmt::format(
             "expert_choice needs a capacity (each expert takes ceil(factor * T * k "
             "/ N) tokens), got capacity.factor = {}",
             s.value("capacity.factor"));
     }},
    {"balance.loss",
     {"balance.loss", "router.type"},
     "`router.type: expert_choice` refuses `balance.loss: shazeer`, `gshard` and `sequence`: "
     "their importance, load and choices need k slots per token",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer && c.balance.loss != BalanceLoss::gshard &&
             c.balance.loss != BalanceLoss::sequence)
             return {};
         return fmt::format(
             "'{}' needs a token-choice router (k slots per token); expert_choice has "
             "none: use switch or none",
             to_string(c.balance.loss));
     }},
    {"balance.losses.shazeer",
     {"balance.losses.shazeer", "router.type"},
     "`router.type: expert_choice` needs `balance.losses.shazeer` = 0",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.losses.shazeer == 0.0) return {};
         return "the shazeer loss needs a token-choice router (k slots per token); expert_choice "
                "has none";
     }},
    {"balance.losses.gshard",
     {"balance.losses.gshard", "router.type"},
     "`router.type: expert_choice` needs `balance.losses.gshard` = 0",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.losses.gshard == 0.0) return {};
         return "the gshard loss counts each token's first choice; expert_choice has none";
     }},
    {"router.score",
     {"router.score", "router.type"},
     "`router.type: expert_choice` needs `router.score: softmax`",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.score == ScoreFn::softmax) return {};
         return "expert_choice scores with a softmax over the experts; 'sigmoid' is for topk";
     }},
    {"router.normalize",
     {"router.normalize", "router.type"},
     "`router.type: expert_choice` needs `router.normalize: auto`: its gate is the score itself",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.normalize == Normalize::auto_k) return {};
         return "expert_choice's gate is the token's softmax score itself (nothing to "
                "renormalise): leave router.normalize at auto";
     }},
    {"router.noise",
     {"router.noise", "router.type"},
     "`router.type: expert_choice` needs `router.noise` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise == 0.0) return {};
         return fmt::format("expert_choice has no gating noise, got router.noise = {}",
                            s.value("router.noise"));
     }},
};

// Rules shared by the routers that learn nothing (hash, random): nothing of the learned routers'
// options applies. `name` is the router's config name.
std::string fixed_no_noise(std::string_view name, const Config& c, const Show& s) {
    if (c.router.noise == 0.0) return {};
    return fmt::format("{} routing learns nothing and has no gating noise, got router.noise = {}",
                       name, s.value("router.noise"));
}
std::string fixed_softmax(std::string_view name, const Config& c, const Show&) {
    if (c.router.score == ScoreFn::softmax) return {};
    return fmt::format(
        "{} routing has no scores (its gates are 1/k): leave router.score at softmax", name);
}
std::string fixed_normalize(std::string_view name, const Config& c, const Show&) {
    if (c.router.normalize == Normalize::auto_k) return {};
    return fmt::format(
        "{} routing's gates are scale/k each (nothing to renormalise): leave router.normalize at "
        "auto",
        name);
}
std::string fixed_no_bias(std::string_view name, const Config& c, const Show& s) {
    if (c.balance.bias_rate == 0.0) return {};
    return fmt::format(
        "{} routing does not read a balancing bias (its assignment is fixed), got "
        "balance.bias_rate = {}",
        name, s.value("balance.bias_rate"));
}
std::string fixed_no_z_loss(std::string_view name, const Config& c, const Show& s) {
    if (c.balance.z_loss == 0.0) return {};
    return fmt::format(
        "{} routing does not read the router logits the z-loss acts on, got balance.z_loss = {}",
        name, s.value("balance.z_loss"));
}
std::string fixed_no_shazeer(std::string_view name, const Config& c, const Show&) {
    if (c.balance.loss != BalanceLoss::shazeer) return {};
    return fmt::format("'shazeer' needs noisy gating; {} routing has none: use switch or none",
                       name);
}

constexpr std::string_view kHashKeys[] = {"router.k", "router.scale", "router.hash.bits"};
constexpr std::string_view kRandomKeys[] = {"router.k", "router.scale"};

#define MOESIM_FIXED_RULES(NAME)                                                             \
    {"router.k",                                                                             \
     {"router.k", "experts.count"},                                                          \
     "`router.type: " NAME "` needs `router.k` <= `experts.count`",                          \
     [](const Config& c, const Show& s) -> std::string {                                     \
         if (!(c.router.k > c.experts.count)) return {};                                     \
         return fmt::format("{} is larger than experts.count {}", s.value("router.k"),       \
                            s.paren("experts.count"));                                       \
     }},                                                                                     \
        {"router.noise",                                                                     \
         {"router.noise", "router.type"},                                                    \
         "`router.type: " NAME "` needs `router.noise` = 0",                                 \
         [](const Config& c, const Show& s) { return fixed_no_noise(NAME, c, s); }},         \
        {"router.score",                                                                     \
         {"router.score", "router.type"},                                                    \
         "`router.type: " NAME "` needs `router.score: softmax` (it has no scores)",         \
         [](const Config& c, const Show& s) { return fixed_softmax(NAME, c, s); }},          \
        {"router.normalize",                                                                 \
         {"router.normalize", "router.type"},                                                \
         "`router.type: " NAME "` needs `router.normalize: auto` (its gates are scale/k)",   \
         [](const Config& c, const Show& s) { return fixed_normalize(NAME, c, s); }},        \
        {"balance.bias_rate",                                                                \
         {"balance.bias_rate", "router.type"},                                               \
         "`router.type: " NAME "` needs `balance.bias_rate` = 0 (a fixed assignment)",       \
         [](const Config& c, const Show& s) { return fixed_no_bias(NAME, c, s); }},          \
        {"balance.z_loss",                                                                   \
         {"balance.z_loss", "router.type"},                                                  \
         "`router.type: " NAME "` needs `balance.z_loss` = 0 (it does not read the logits)", \
         [](const Config& c, const Show& s) { return fixed_no_z_loss(NAME, c, s); }},        \
    {                                                                                        \
        "balance.loss", {"balance.loss", "router.type"},                                     \
            "`router.type: " NAME "` refuses `balance.loss: shazeer` (no gating noise)",     \
            [](const Config& c, const Show& s) { return fixed_no_shazeer(NAME, c, s); }      \
    }

const KeyRule kHashRules[] = {MOESIM_FIXED_RULES("hash")};
const KeyRule kRandomRules[] = {MOESIM_FIXED_RULES("random")};
#undef MOESIM_FIXED_RULES

constexpr std::string_view kSinkhornKeys[] = {"router.k", "router.normalize", "router.scale",
                                              "router.sinkhorn.iterations"};
const KeyRule kSinkhornRules[] = {
    {"router.k",
     {"router.k", "experts.count"},
     "`router.type: sinkhorn` needs `router.k` <= `experts.count`",
     [](const Config& c, const Show& s) -> std::string {
         if (!(c.router.k > c.experts.count)) return {};
         return fmt::format("{} is larger than experts.count {}", s.value("router.k"),
                            s.paren("experts.count"));
     }},
    {"router.noise",
     {"router.noise", "router.type"},
     "`router.type: sinkhorn` needs `router.noise` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise == 0.0) return {};
         return fmt::format("sinkhorn has no gating noise, got router.noise = {}",
                            s.value("router.noise"));
     }},
    {"router.score",
     {"router.score", "router.type"},
     "`router.type: sinkhorn` needs `router.score: softmax`",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.score == ScoreFn::softmax) return {};
         return "sinkhorn balances exp(logits) and gates with the softmax; 'sigmoid' is for topk";
     }},
    {"balance.bias_rate",
     {"balance.bias_rate", "router.type"},
     "`router.type: sinkhorn` needs `balance.bias_rate` = 0 (the Sinkhorn scalings balance)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.balance.bias_rate == 0.0) return {};
         return fmt::format(
             "sinkhorn balances with its Sinkhorn scalings and reads no bias, got "
             "balance.bias_rate = {}",
             s.value("balance.bias_rate"));
     }},
    {"balance.loss",
     {"balance.loss", "router.type"},
     "`router.type: sinkhorn` refuses `balance.loss: shazeer` (no gating noise)",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer) return {};
         return "'shazeer' needs noisy gating; sinkhorn has none: use switch or none";
     }},
};

constexpr std::string_view kBaseKeys[] = {"router.k", "router.scale"};
const KeyRule kBaseRules[] = {
    {"router.k",
     {"router.k", "router.type"},
     "`router.type: base` needs `router.k` = 1 (a balanced assignment of one expert per token)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.k == 1) return {};
         return fmt::format("base assigns each token exactly one expert, got router.k = {}",
                            s.value("router.k"));
     }},
    {"router.noise",
     {"router.noise", "router.type"},
     "`router.type: base` needs `router.noise` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise == 0.0) return {};
         return fmt::format("base has no gating noise, got router.noise = {}",
                            s.value("router.noise"));
     }},
    {"router.score",
     {"router.score", "router.type"},
     "`router.type: base` needs `router.score: softmax` (its gate is the sigmoid of the logit)",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.score == ScoreFn::softmax) return {};
         return "base gates with the sigmoid of the assigned logit and reports softmax "
                "probabilities; leave router.score at softmax";
     }},
    {"router.normalize",
     {"router.normalize", "router.type"},
     "`router.type: base` needs `router.normalize: auto` (its gate is the sigmoid of the logit)",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.normalize == Normalize::auto_k) return {};
         return "base's gate is sigmoid(logit) of its one expert (nothing to renormalise): leave "
                "router.normalize at auto";
     }},
    {"balance.bias_rate",
     {"balance.bias_rate", "router.type"},
     "`router.type: base` needs `balance.bias_rate` = 0 (balanced by construction)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.balance.bias_rate == 0.0) return {};
         return fmt::format(
             "base is balanced by its assignment and reads no bias, got balance.bias_rate = {}",
             s.value("balance.bias_rate"));
     }},
    {"balance.loss",
     {"balance.loss", "router.type"},
     "`router.type: base` refuses `balance.loss: shazeer` (no gating noise)",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer) return {};
         return "'shazeer' needs noisy gating; base has none: use switch or none";
     }},
};

constexpr std::string_view kHierarchicalKeys[] = {"router.k", "router.normalize", "router.scale",
                                                  "router.hierarchical.branches",
                                                  "router.hierarchical.k_branches"};
const KeyRule kHierarchicalRules[] = {
    {"router.hierarchical.branches",
     {"router.hierarchical.branches", "experts.count"},
     "`router.type: hierarchical` needs `router.hierarchical.branches` to divide `experts.count`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.count % c.router.hierarchical.branches == 0) return {};
         return fmt::format("{} does not divide experts.count {}",
                            s.value("router.hierarchical.branches"), s.paren("experts.count"));
     }},
    {"router.hierarchical.k_branches",
     {"router.hierarchical.k_branches", "router.hierarchical.branches"},
     "`router.type: hierarchical` needs `router.hierarchical.k_branches` <= "
     "`router.hierarchical.branches`",
     [](const Config& c, const Show& s) -> std::string {
         if (!(c.router.hierarchical.k_branches > c.router.hierarchical.branches)) return {};
         return fmt::format("{} is larger than router.hierarchical.branches {}",
                            s.value("router.hierarchical.k_branches"),
                            s.paren("router.hierarchical.branches"));
     }},
    {"router.k",
     {"router.k", "router.hierarchical.branches"},
     "`router.type: hierarchical` needs `router.k` <= `experts.count` / "
     "`router.hierarchical.branches`: the experts of a branch",
     [](const Config& c, const Show& s) -> std::string {
         const int b = c.router.hierarchical.branches;
         if (c.experts.count % b != 0 || c.router.k <= c.experts.count / b) return {};
         return fmt::format("{} is larger than the {} experts of a branch", s.value("router.k"),
                            c.experts.count / b);
     }},
    {"router.noise",
     {"router.noise", "router.type"},
     "`router.type: hierarchical` needs `router.noise` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise == 0.0) return {};
         return fmt::format("hierarchical has no gating noise, got router.noise = {}",
                            s.value("router.noise"));
     }},
    {"router.score",
     {"router.score", "router.type"},
     "`router.type: hierarchical` needs `router.score: softmax`",
     [](const Config& c, const Show&) -> std::string {
         if (c.router.score == ScoreFn::softmax) return {};
         return "hierarchical scores with a softmax at each level; 'sigmoid' is for topk";
     }},
    {"balance.bias_rate",
     {"balance.bias_rate", "router.type"},
     "`router.type: hierarchical` needs `balance.bias_rate` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.balance.bias_rate == 0.0) return {};
         return fmt::format("hierarchical reads no balancing bias, got balance.bias_rate = {}",
                            s.value("balance.bias_rate"));
     }},
    {"balance.loss",
     {"balance.loss", "router.type"},
     "`router.type: hierarchical` refuses `balance.loss: shazeer` (no gating noise)",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer) return {};
         return "'shazeer' needs noisy gating; hierarchical has none: use switch or none";
     }},
};

// ---- the dense routers: soft (Jacobs et al. 1991) and soft_slots (Puigcerver et al. 2023) ----
// Every expert sees every token (soft) or a weighted mix of all of them (soft_slots): nothing is
// routed past a capacity, there is no selection for noise, bias or k to act on, and the routed
// counts the Switch and Shazeer losses balance are constant. Those keys are refused, not ignored.

constexpr std::string_view router_name(RouterType r) {
    return r == RouterType::soft ? "soft" : "soft_slots";
}

template <RouterType R>
std::string dense_capacity(const Config& c, const Show& s) {
    if (c.capacity.factor == 0) return {};
    return fmt::format(
        "{} sends every token to every expert (nothing can be dropped): set capacity.factor to 0, "
        "got {}",
        router_name(R), s.value("capacity.factor"));
}
template <RouterType R>
std::string dense_eval_capacity(const Config& c, const Show& s) {
    if (c.capacity.eval_factor == 0) return {};
    return fmt::format(
        "{} sends every token to every expert (nothing can be dropped): set "
        "capacity.eval_factor to 0, got {}",
        router_name(R), s.value("capacity.eval_factor"));
}
template <RouterType R>
std::string dense_drop_policy(const Config& c, const Show&) {
    if (c.capacity.drop_policy == DropPolicy::position && c.capacity.min == 0) return {};
    return fmt::format("{} drops nothing: leave capacity.drop_policy and capacity.min unset",
                       router_name(R));
}
template <RouterType R>
std::string dense_balance(const Config& c, const Show& s) {
    if (c.balance.loss == BalanceLoss::none) return {};
    return fmt::format(
        "{} has no routed counts to balance (every expert gets every token, so the loss would "
        "be a constant): set balance.loss to none, got {}",
        router_name(R), s.value("balance.loss"));
}
template <RouterType R>
std::string dense_bias(const Config& c, const Show& s) {
    if (c.balance.bias_rate == 0) return {};
    return fmt::format(
        "{} selects nothing for a balancing bias to steer: got balance.bias_rate = {}",
        router_name(R), s.value("balance.bias_rate"));
}
template <RouterType R>
std::string dense_noise(const Config& c, const Show& s) {
    if (c.router.noise == 0) return {};
    return fmt::format("{} has no gating noise (there is no selection), got router.noise = {}",
                       router_name(R), s.value("router.noise"));
}
template <RouterType R>
std::string dense_score(const Config& c, const Show&) {
    if (c.router.score == ScoreFn::softmax) return {};
    return fmt::format("{} weighs experts by a softmax; 'sigmoid' is for topk", router_name(R));
}
template <RouterType R>
std::string dense_normalize(const Config& c, const Show&) {
    if (c.router.normalize == Normalize::auto_k) return {};
    return fmt::format(
        "{}'s weights are softmaxes (nothing to renormalise): leave router.normalize "
        "at auto",
        router_name(R));
}

template <RouterType R, double BalanceLossesConfig::*coef>
std::string dense_losses(const Config& c, const Show&) {
    if (c.balance.losses.*coef == 0.0) return {};
    return fmt::format(
        "{} has no routed counts to balance (every expert gets every token): leave "
        "balance.losses at 0",
        router_name(R));
}

// The rules both dense routers share (their texts name both, so the reference lists each once).
template <RouterType R>
constexpr std::array<KeyRule, 11> dense_rules() {
    return {{
        {"capacity.factor",
         {"capacity.factor", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `capacity.factor` = 0: every "
         "expert sees every "
         "token",
         &dense_capacity<R>},
        {"capacity.eval_factor",
         {"capacity.eval_factor", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `capacity.eval_factor` = 0",
         &dense_eval_capacity<R>},
        {"capacity.drop_policy",
         {"capacity.drop_policy", "capacity.min"},
         "`router.type: soft` and `router.type: soft_slots` refuse `capacity.drop_policy` and "
         "`capacity.min`: "
         "they drop nothing",
         &dense_drop_policy<R>},
        {"balance.loss",
         {"balance.loss", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `balance.loss: none`: their "
         "routed counts are "
         "constant",
         &dense_balance<R>},
        {"balance.losses.switch",
         {"balance.losses.switch", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `balance.losses.switch` = 0",
         &dense_losses<R, &BalanceLossesConfig::switch_loss>},
        {"balance.losses.gshard",
         {"balance.losses.gshard", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `balance.losses.gshard` = 0",
         &dense_losses<R, &BalanceLossesConfig::gshard>},
        {"balance.losses.shazeer",
         {"balance.losses.shazeer", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `balance.losses.shazeer` = 0",
         &dense_losses<R, &BalanceLossesConfig::shazeer>},
        {"balance.bias_rate",
         {"balance.bias_rate", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `balance.bias_rate` = 0: they "
         "select nothing",
         &dense_bias<R>},
        {"router.noise",
         {"router.noise", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `router.noise` = 0",
         &dense_noise<R>},
        {"router.score",
         {"router.score", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `router.score: softmax`",
         &dense_score<R>},
        {"router.normalize",
         {"router.normalize", "router.type"},
         "`router.type: soft` and `router.type: soft_slots` need `router.normalize: auto`",
         &dense_normalize<R>},
    }};
}

constexpr std::string_view kSoftKeys[] = {"router.scale"};
constexpr std::array<KeyRule, 11> kSoftRules = dense_rules<RouterType::soft>();

std::string soft_slots_scale(const Config& c, const Show& s) {
    if (c.router.scale == 1.0) return {};
    return fmt::format(
        "soft_slots has no gate scale (its combine weights sum to 1), got router.scale = {}",
        s.value("router.scale"));
}
constexpr std::string_view kSoftSlotsKeys[] = {"router.soft_slots.slots"};
constexpr std::array<KeyRule, 12> kSoftSlotsRules = [] {
    std::array<KeyRule, 12> out{};
    const std::array<KeyRule, 11> shared = dense_rules<RouterType::soft_slots>();
    for (size_t i = 0; i < shared.size(); ++i) out[i] = shared[i];
    out[11] = {"router.scale",
               {"router.scale", "router.type"},
               "`router.type: soft_slots` needs `router.scale` = 1",
               &soft_slots_scale};
    return out;
}();

// ---- balancers (balance.loss, or switched on by their own key; used by model/) ----

constexpr std::string_view kSwitchKeys[] = {"balance.alpha", "balance.losses.switch"};
constexpr std::string_view kGshardKeys[] = {"balance.alpha", "balance.losses.gshard"};
constexpr std::string_view kSequenceKeys[] = {"balance.alpha", "data.task"};
const KeyRule kSequenceRules[] = {
    {"balance.loss",
     {"balance.loss", "data.task"},
     "`balance.loss: sequence` needs `data.task: markov`: the only task whose examples come in "
     "sequences",
     [](const Config& c, const Show& s) -> std::string {
         if (c.data.task == TaskKind::markov) return {};
         return fmt::format(
             "'sequence' balances within each sequence; only data.task: markov has sequences, "
             "got data.task = {}",
             s.value("data.task"));
     }},
};
constexpr std::string_view kShazeerKeys[] = {"balance.alpha", "balance.losses.shazeer",
                                             "router.noise"};
const KeyRule kShazeerRules[] = {
    {"balance.loss",
     {"balance.loss", "router.noise"},
     "`balance.loss: shazeer` needs `router.noise` > 0 or `router.topk.noise: learned`: its load "
     "estimator divides by the noise std",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise > 0 || c.router.topk.noise == TopkNoise::learned) return {};
         return fmt::format(
             "'shazeer' needs router.noise > 0 or router.topk.noise: learned (its load "
             "estimator divides by the noise std), got router.noise = {}",
             s.value("router.noise"));
     }},
};
// balance.losses.<name>: a loss named twice (balance.loss too) is an error; the rules of a loss
// switched on here are those of its own row.
template <double BalanceLossesConfig::*coef>
std::string named_twice(const Config& c, const Show& s, BalanceLoss loss) {
    if (c.balance.loss != loss || c.balance.losses.*coef == 0.0) return {};
    return fmt::format(
        "'{0}' is already balance.loss {1}, weighted by balance.alpha: give each loss once "
        "(to give every loss in balance.losses, set balance.loss: none)",
        to_string(loss), s.paren("balance.loss"));
}
constexpr std::string_view kLossesKeys[] = {"balance.losses.switch", "balance.losses.gshard",
                                            "balance.losses.shazeer"};
const KeyRule kLossesRules[] = {
    {"balance.losses.switch",
     {"balance.losses.switch", "balance.loss"},
     "`balance.losses.switch` = 0 with `balance.loss: switch`: each loss is given once",
     [](const Config& c, const Show& s) {
         return named_twice<&BalanceLossesConfig::switch_loss>(c, s, BalanceLoss::switch_loss);
     }},
    {"balance.losses.gshard",
     {"balance.losses.gshard", "balance.loss"},
     "`balance.losses.gshard` = 0 with `balance.loss: gshard`: each loss is given once",
     [](const Config& c, const Show& s) {
         return named_twice<&BalanceLossesConfig::gshard>(c, s, BalanceLoss::gshard);
     }},
    {"balance.losses.shazeer",
     {"balance.losses.shazeer", "balance.loss"},
     "`balance.losses.shazeer` = 0 with `balance.loss: shazeer`: each loss is given once",
     [](const Config& c, const Show& s) {
         return named_twice<&BalanceLossesConfig::shazeer>(c, s, BalanceLoss::shazeer);
     }},
    {"balance.losses.shazeer",
     {"balance.losses.shazeer", "router.noise"},
     "`balance.losses.shazeer` > 0 needs `router.noise` > 0: its load estimator divides by the "
     "noise std",
     [](const Config& c, const Show& s) -> std::string {
         if (c.balance.losses.shazeer == 0.0 || c.router.noise > 0) return {};
         return fmt::format(
             "the shazeer loss needs router.noise > 0 (its load estimator divides by the noise "
             "std), got router.noise = {}",
             s.value("router.noise"));
     }},
};
constexpr std::string_view kZLossKeys[] = {"balance.z_loss"};
constexpr std::string_view kBiasKeys[] = {"balance.bias_rate", "balance.bias_rule",
                                          "balance.bias_warmup", "balance.bias_decay"};
const KeyRule kBiasRules[] = {
    {"balance.bias_warmup",
     {"balance.bias_warmup", "train.steps"},
     "`balance.bias_warmup` <= `train.steps`",
     [](const Config& c, const Show& s) -> std::string {
         if (!(c.balance.bias_warmup > c.train.steps)) return {};
         return fmt::format("{} is larger than train.steps {}", s.value("balance.bias_warmup"),
                            s.paren("train.steps"));
     }},
};

// ---- tasks (data.task; factories in tasks/task_registry.cpp) ----

constexpr std::string_view kClustersKeys[] = {
    "data.clusters.dim",        "data.clusters.num_clusters", "data.clusters.num_classes",
    "data.clusters.spread",     "data.clusters.imbalance",    "data.clusters.teacher",
    "data.clusters.label_noise"};

constexpr std::string_view kMarkovKeys[] = {"data.markov.domains",       "data.markov.vocab",
                                            "data.markov.order",         "data.markov.branching",
                                            "data.markov.concentration", "data.markov.imbalance",
                                            "data.markov.seq_len",       "data.markov.context"};
const KeyRule kMarkovRules[] = {
    {"data.markov.branching",
     {"data.markov.branching", "data.markov.vocab"},
     "`data.task: markov` needs `data.markov.branching` <= `data.markov.vocab`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.data.markov.branching <= c.data.markov.vocab) return {};
         return fmt::format(
             "{} is larger than data.markov.vocab {}: a token has at most vocab "
             "distinct successors",
             s.value("data.markov.branching"), s.paren("data.markov.vocab"));
     }},
    {"data.markov.context",
     {"data.markov.context", "data.markov.seq_len"},
     "`data.task: markov` needs `data.markov.context` < `data.markov.seq_len`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.data.markov.context < c.data.markov.seq_len) return {};
         return fmt::format(
             "{} must be below data.markov.seq_len {}: the last token predicted "
             "has seq_len - 1 tokens before it",
             s.value("data.markov.context"), s.paren("data.markov.seq_len"));
     }},
    {"data.markov.context",
     {"data.markov.context", "data.markov.order"},
     "`data.task: markov` needs `data.markov.context` >= `data.markov.order`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.data.markov.context >= c.data.markov.order) return {};
         return fmt::format(
             "{} is below data.markov.order {}: the window must hold a whole "
             "context of the chain",
             s.value("data.markov.context"), s.paren("data.markov.order"));
     }},
    {"data.markov.branching",
     {"data.markov.branching", "data.markov.order"},
     "`data.task: markov` needs `data.markov.domains` * `data.markov.vocab`^`data.markov.order` "
     "* `data.markov.branching` <= 2^24 (the transition tables)",
     [](const Config& c, const Show& s) -> std::string {
         const MarkovConfig& m = c.data.markov;
         double entries = double(m.domains) * m.branching;
         for (int i = 0; i < m.order; ++i) entries *= m.vocab;
         if (entries <= double(1 << 24)) return {};
         return fmt::format(
             "{} makes transition tables of {:.3g} entries (domains * "
             "vocab^order * branching), more than 2^24",
             s.value("data.markov.branching"), entries);
     }},
    {"data.markov.context",
     {"data.markov.context", "data.markov.vocab"},
     "`data.task: markov` needs `data.markov.context` * `data.markov.vocab` <= 65536 (the input "
     "width)",
     [](const Config& c, const Show& s) -> std::string {
         if (int64_t{c.data.markov.context} * c.data.markov.vocab <= 65536) return {};
         return fmt::format(
             "{} times data.markov.vocab {} is an input of more than 65536 one-hot "
             "slots",
             s.value("data.markov.context"), s.paren("data.markov.vocab"));
     }},
};

constexpr std::string_view kModularKeys[] = {"data.modular.p", "data.modular.ops",
                                             "data.modular.train_fraction"};
const KeyRule kModularRules[] = {
    {"data.modular.ops",
     {"data.modular.ops", "data.modular.p"},
     "`data.task: modular` with `div` in `data.modular.ops` needs a prime `data.modular.p`",
     [](const Config& c, const Show& s) -> std::string {
         const auto ops = modular_ops_parse(c.data.modular.ops);
         if (!ops || std::find(ops->begin(), ops->end(), ModularOp::div) == ops->end()) return {};
         const int p = c.data.modular.p;
         bool prime = p >= 2;
         for (int d = 2; d * d <= p && prime; ++d) prime = p % d != 0;
         if (prime) return {};
         return fmt::format(
             "'div' needs every b != 0 to be invertible mod p, so a prime "
             "data.modular.p, got {}",
             s.value("data.modular.p"));
     }},
};

constexpr std::string_view kPatchClustersKeys[] = {
    "data.patch_clusters.num_clusters", "data.patch_clusters.patches", "data.patch_clusters.dim",
    "data.patch_clusters.gamma_max",    "data.patch_clusters.sigma_p", "data.patch_clusters.scale"};
const KeyRule kPatchClustersRules[] = {
    {"data.patch_clusters.num_clusters",
     {"data.patch_clusters.num_clusters", "data.patch_clusters.dim"},
     "`data.task: patch_clusters` needs 2 * `data.patch_clusters.num_clusters` <= "
     "`data.patch_clusters.dim` (2K orthonormal vectors in R^d)",
     [](const Config& c, const Show& s) -> std::string {
         const PatchClustersConfig& p = c.data.patch_clusters;
         if (2 * p.num_clusters <= p.dim) return {};
         return fmt::format(
             "{}: the 2K features and centres must be orthonormal in R^d, so 2K <= "
             "data.patch_clusters.dim {}",
             s.value("data.patch_clusters.num_clusters"), s.paren("data.patch_clusters.dim"));
     }},
    {"data.patch_clusters.patches",
     {"data.patch_clusters.patches", "data.patch_clusters.dim"},
     "`data.task: patch_clusters` needs `data.patch_clusters.patches` * "
     "`data.patch_clusters.dim` <= 65536 (the input width)",
     [](const Config& c, const Show& s) -> std::string {
         const PatchClustersConfig& p = c.data.patch_clusters;
         if (int64_t{p.patches} * p.dim <= 65536) return {};
         return fmt::format("{} times data.patch_clusters.dim {} is an input wider than 65536",
                            s.value("data.patch_clusters.patches"),
                            s.paren("data.patch_clusters.dim"));
     }},
};

using K = ComponentKind;

// Rows name only the fields they set; the others keep their defaults (components.h). GCC before 14
// warns about the fields a designated initializer leaves out, which here is the point.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const ComponentRow kRows[] = {
    {.kind = K::router,
     .name = "topk",
     .choice_key = "router.type",
     .id = int(RouterType::topk),
     .built = true,
     .summary =
         "token choice: each token picks its k best experts (s + bias), gates renormalised or not "
         "and scaled, fixed or learned noisy gating, GShard's random 2nd expert, group-limited "
         "selection; logits from a linear or a cosine (X-MoE) head, optional input jitter; Switch "
         "(k=1), GShard/Mixtral (k=2), DeepSeek (sigmoid + bias) are presets of it",
     .paper = "Shazeer et al. 2017; Fedus et al. 2021; Lepikhin et al. 2020; DeepSeek-AI 2024 "
              "(V3); Wang et al. 2024; Chi et al. 2022",
     .devices = kCpu | kCuda,
     .keys = kTopkKeys,
     .rules = kTopkRules},
    {.kind = K::router,
     .name = "expert_choice",
     .choice_key = "router.type",
     .id = int(RouterType::expert_choice),
     .built = true,
     .summary = "expert choice: each expert picks its C = ceil(factor * T * k / N) tokens of "
                "highest softmax score, gate = that score; a token gets 0..N experts, one chosen "
                "by none is dropped",
     .paper = "Zhou et al. 2022",
     .devices = kCpu | kCuda,
     .keys = kExpertChoiceKeys,
     .rules = kExpertChoiceRules},
    {.kind = K::router,
     .name = "soft",
     .choice_key = "router.type",
     .id = int(RouterType::soft),
     .built = true,
     .summary = "dense mixture: every expert runs on every token, y = sum_i p_i(x) E_i(x) with p "
                "the softmax of the router logits (times router.scale); nothing is dropped",
     .paper = "Jacobs et al. 1991",
     .devices = kCpu | kCuda,
     .keys = kSoftKeys,
     .rules = kSoftRules},
    {.kind = K::router,
     .name = "soft_slots",
     .choice_key = "router.type",
     .id = int(RouterType::soft_slots),
     .built = true,
     .summary = "Soft MoE: each expert has S slots, each slot a softmax-over-tokens weighted "
                "average of the batch's tokens; each token's output a softmax-over-slots weighted "
                "average of the slot outputs; nothing is dropped",
     .paper = "Puigcerver et al. 2023",
     .devices = kCpu | kCuda,
     .keys = kSoftSlotsKeys,
     .rules = kSoftSlotsRules},
    {.kind = K::router,
     .name = "hash",
     .choice_key = "router.type",
     .id = int(RouterType::hash),
     .built = true,
     .summary = "a fixed hash of the token picks its k experts, gates 1/k; nothing is learned. "
                "Token ids: a random hash of the id; clusters: a locality-sensitive hash (the "
                "sign pattern of router.hash.bits random projections of the raw input)",
     .paper = "Roller et al. 2021",
     .devices = kCpu | kCuda,
     .keys = kHashKeys,
     .rules = kHashRules},
    {.kind = K::router,
     .name = "random",
     .choice_key = "router.type",
     .id = int(RouterType::random),
     .built = true,
     .summary = "each distinct input (token id, or the raw input's bytes) gets k uniformly random "
                "experts, the same at every step, gates 1/k: the baseline a learned router must "
                "beat",
     .paper = "Roller et al. 2021 (random hash)",
     .devices = kCpu | kCuda,
     .keys = kRandomKeys,
     .rules = kRandomRules},
    {.kind = K::router,
     .name = "sinkhorn",
     .choice_key = "router.type",
     .id = int(RouterType::sinkhorn),
     .built = true,
     .summary = "training: Sinkhorn iterations balance exp(logits) so every expert gets T k / N "
                "mass, top-k of the balanced matrix, gate = the softmax probability; evaluation: "
                "plain top-k",
     .paper = "Clark et al. 2022 (S-BASE)",
     .devices = kCpu | kCuda,
     .keys = kSinkhornKeys,
     .rules = kSinkhornRules},
    {.kind = K::router,
     .name = "base",
     .choice_key = "router.type",
     .id = int(RouterType::base),
     .built = true,
     .summary = "training: a balanced linear assignment (every expert exactly T/N tokens) "
                "maximising the summed logits, gate = sigmoid of the logit; evaluation: greedy "
                "top-1",
     .paper = "Lewis et al. 2021",
     .devices = kCpu | kCuda,
     .keys = kBaseKeys,
     .rules = kBaseRules},
    {.kind = K::router,
     .name = "hierarchical",
     .choice_key = "router.type",
     .id = int(RouterType::hierarchical),
     .built = true,
     .summary = "two levels: a token picks its k_branches best branches (softmax over branch "
                "logits), then its k best experts in each (softmax within the group); gate = the "
                "product of the two probabilities",
     .paper = "Jordan & Jacobs 1994; Shazeer et al. 2017",
     .devices = kCpu | kCuda,
     .keys = kHierarchicalKeys,
     .rules = kHierarchicalRules},

    {.kind = K::balancer,
     .name = "none",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::none),
     .built = true,
     .summary = "no auxiliary load-balancing loss",
     .paper = "—",
     .devices = kCpu | kCuda},
    {.kind = K::balancer,
     .name = "switch",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::switch_loss),
     .built = true,
     .summary = "`N * sum_i f_i * Pbar_i`: fraction of tokens routed to expert i times its mean "
                "probability; 1 at perfect balance",
     .paper = "Fedus et al. 2021",
     .devices = kCpu | kCuda,
     .keys = kSwitchKeys},
    {.kind = K::balancer,
     .name = "gshard",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::gshard),
     .built = true,
     .summary = "switch with f_i counting only each token's first choice (top-1 of its k): `N * "
                "sum_i f1_i * Pbar_i`; equals switch for k = 1",
     .paper = "Lepikhin et al. 2020",
     .devices = kCpu | kCuda,
     .keys = kGshardKeys},
    {.kind = K::balancer,
     .name = "shazeer",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::shazeer),
     .built = true,
     .summary = "CV^2 of the importance plus CV^2 of the smooth load estimate under gating noise",
     .paper = "Shazeer et al. 2017",
     .devices = kCpu | kCuda,
     .keys = kShazeerKeys,
     .rules = kShazeerRules},
    {.kind = K::balancer,
     .name = "sequence",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::sequence),
     .built = true,
     .summary = "sequence-wise balance loss: the switch form computed within each sequence of the "
                "batch and averaged over them (data.task: markov)",
     .paper = "DeepSeek-AI 2024 (V2, V3)",
     .devices = kCpu | kCuda,
     .keys = kSequenceKeys,
     .rules = kSequenceRules},
    {.kind = K::balancer,
     .name = "losses",
     .on_when = "any of `balance.losses.switch`, `balance.losses.gshard`, "
                "`balance.losses.shazeer` > 0",
     .built = true,
     .summary = "several auxiliary losses at once: each key of `balance.losses` adds its loss, "
                "with its own coefficient, to `balance.loss`",
     .paper = "—",
     .devices = kCpu | kCuda,
     .keys = kLossesKeys,
     .rules = kLossesRules},
    {.kind = K::balancer,
     .name = "z_loss",
     .on_when = "`balance.z_loss` > 0",
     .built = true,
     .summary = "router z-loss: mean squared log-sum-exp of the router logits, keeps them small",
     .paper = "Zoph et al. 2022 (ST-MoE)",
     .devices = kCpu | kCuda,
     .keys = kZLossKeys},
    {.kind = K::balancer,
     .name = "bias",
     .on_when = "`balance.bias_rate` > 0",
     .built = true,
     .summary =
         "auxiliary-loss-free balancing: a per-expert bias on the selection scores, moved each "
         "step towards balance by a rule (sign, proportional, mean_centred) at a rate with "
         "optional warmup and cosine decay",
     .paper = "Wang et al. 2024; proportional after Han & Zhong 2025",
     .devices = kCpu | kCuda,
     .keys = kBiasKeys,
     .rules = kBiasRules},

    {.kind = K::task,
     .name = "clusters",
     .choice_key = "data.task",
     .id = int(TaskKind::clusters),
     .built = true,
     .summary =
         "points from a Gaussian mixture, labelled by a random teacher network; group = cluster",
     .paper = "—",
     .devices = kCpu | kCuda,
     .keys = kClustersKeys},
    {.kind = K::task,
     .name = "markov",
     .choice_key = "data.task",
     .id = int(TaskKind::markov),
     .built = true,
     .summary =
         "a toy language of random sparse Markov chains, one per domain: predict the next token "
         "from a window of previous ones, with the exact ideal loss; group = domain",
     .paper = "—",
     .devices = kCpu | kCuda,
     .keys = kMarkovKeys,
     .rules = kMarkovRules},
    {.kind = K::task,
     .name = "modular",
     .choice_key = "data.task",
     .id = int(TaskKind::modular),
     .built = true,
     .summary = "a OP b = c (mod p) with several operations, train/eval split over the (op, a, b) "
                "triples; ideal loss 0; group = operation",
     .paper = "Power et al. 2022 (grokking)",
     .devices = kCpu | kCuda,
     .keys = kModularKeys,
     .rules = kModularRules},
    {.kind = K::task,
     .name = "patch_clusters",
     .choice_key = "data.task",
     .id = int(TaskKind::patch_clusters),
     .built = true,
     .summary = "binary labels on K clusters of P patches: a feature signal, a cluster centre, "
                "another cluster's feature as noise and Gaussian patches, in random order; group = "
                "cluster",
     .paper = "Chen et al. 2022 (Definition 3.1)",
     .devices = kCpu | kCuda,
     .keys = kPatchClustersKeys,
     .rules = kPatchClustersRules},
};
#pragma GCC diagnostic pop

}  // namespace

std::span<const ComponentRow> components() {
    return kRows;
}

const ComponentRow* find_component(std::string_view choice_key, int id) {
    if (id < 0) return nullptr;
    for (const ComponentRow& r : kRows)
        if (r.choice_key == choice_key && r.id == id) return &r;
    return nullptr;
}

const ComponentRow* find_component(ComponentKind kind, std::string_view name) {
    for (const ComponentRow& r : kRows)
        if (r.kind == kind && r.name == name) return &r;
    return nullptr;
}

const ComponentRow* selected_component(const Config& cfg, std::string_view choice_key) {
    const schema::Key* key = schema::find_key(choice_key);
    if (!key || key->type != schema::Type::choice) return nullptr;
    return find_component(choice_key, int(std::get<int64_t>(key->get(cfg))));
}

std::string_view to_string(ComponentKind kind) {
    switch (kind) {
        case ComponentKind::router:
            return "router";
        case ComponentKind::balancer:
            return "balancer";
        case ComponentKind::task:
            return "task";
    }
    return "?";
}

std::string own_section(const ComponentRow& row) {
    if (row.choice_key.empty()) return {};
    std::string_view section = schema::parent_of(row.choice_key);
    return section.empty() ? std::string(row.name) : fmt::format("{}.{}", section, row.name);
}

const ComponentRow* owner_of_key(std::string_view key) {
    for (const ComponentRow& r : kRows) {
        std::string section = own_section(r);
        if (section.empty()) continue;
        if (key.size() > section.size() && key.substr(0, section.size()) == section &&
            key[section.size()] == '.')
            return &r;
    }
    return nullptr;
}

std::string devices_text(DeviceSet devices) {
    std::string out;
    for (Device d : {Device::cpu, Device::cuda}) {
        if ((devices & device_bit(d)) == 0) continue;
        out += fmt::format("{}{}", out.empty() ? "" : ", ", to_string(d));
    }
    return out.empty() ? "—" : out;
}

std::string not_selected_message(const ComponentRow& owner, const ComponentRow& selected) {
    return fmt::format("only read by {}: {}, but {} is {}", owner.choice_key, owner.name,
                       selected.choice_key, selected.name);
}

std::string components_markdown() {
    std::string out =
        "| name | kind | selected by | summary | paper | devices | status |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n";
    for (const ComponentRow& r : kRows) {
        std::string selected_by = r.choice_key.empty()
                                      ? std::string(r.on_when)
                                      : fmt::format("`{}: {}`", r.choice_key, r.name);
        out += fmt::format("| `{}` | {} | {} | {} | {} | {} | {} |\n", r.name, to_string(r.kind),
                           selected_by, detail::md(r.summary), detail::md(r.paper),
                           devices_text(r.devices), r.built ? "built" : "not built yet");
    }
    return out;
}

}  // namespace moe
