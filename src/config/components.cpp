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

constexpr std::string_view kTopkKeys[] = {"router.k",           "router.score",
                                          "router.normalize",   "router.noise",
                                          "router.scale",       "router.topk.second_expert",
                                          "router.topk.groups", "router.topk.topk_groups"};
const KeyRule kTopkRules[] = {
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
};

constexpr std::string_view kExpertChoiceKeys[] = {"router.k", "router.scale", "capacity.factor"};
const KeyRule kExpertChoiceRules[] = {
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
     "`router.type: expert_choice` refuses `balance.loss: shazeer`: its importance and load need "
     "k slots per token",
     [](const Config& c, const Show&) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer) return {};
         return "'shazeer' needs a token-choice router (k slots per token); expert_choice has "
                "none: use switch or none";
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

// ---- balancers (balance.loss, or switched on by their own key; used by model/) ----

constexpr std::string_view kAlphaKeys[] = {"balance.alpha"};
constexpr std::string_view kShazeerKeys[] = {"balance.alpha", "router.noise"};
const KeyRule kShazeerRules[] = {
    {"balance.loss",
     {"balance.loss", "router.noise"},
     "`balance.loss: shazeer` needs `router.noise` > 0: its load estimator divides by the noise "
     "std",
     [](const Config& c, const Show& s) -> std::string {
         if (c.router.noise > 0) return {};
         return fmt::format(
             "'shazeer' needs router.noise > 0 (its load estimator divides by the noise "
             "std), got router.noise = {}",
             s.value("router.noise"));
     }},
};
constexpr std::string_view kZLossKeys[] = {"balance.z_loss"};
constexpr std::string_view kBiasKeys[] = {"balance.bias_rate"};

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
         "and scaled, optional noisy gating, GShard's random 2nd expert, group-limited selection; "
         "Switch (k=1), GShard/Mixtral (k=2), DeepSeek (sigmoid + bias) are presets of it",
     .paper = "Shazeer et al. 2017; Fedus et al. 2021; Lepikhin et al. 2020; DeepSeek-AI 2024 "
              "(V3); Wang et al. 2024",
     .devices = kCpu,
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
     .devices = kCpu,
     .keys = kExpertChoiceKeys,
     .rules = kExpertChoiceRules},
    {.kind = K::router,
     .name = "soft",
     .choice_key = "router.type",
     .built = false,
     .summary =
         "soft MoE: each expert slot takes a weighted average of all tokens, nothing is dropped",
     .paper = "Puigcerver et al. 2023"},
    {.kind = K::router,
     .name = "hash",
     .choice_key = "router.type",
     .built = false,
     .summary = "a fixed hash of the token picks its expert; nothing is learned",
     .paper = "Roller et al. 2021"},
    {.kind = K::router,
     .name = "random",
     .choice_key = "router.type",
     .built = false,
     .summary =
         "each token goes to experts drawn at random: the baseline a learned router must beat",
     .paper = "—"},
    {.kind = K::router,
     .name = "hierarchical",
     .choice_key = "router.type",
     .built = false,
     .summary = "two levels: a token picks a group of experts, then experts within the group",
     .paper = "Shazeer et al. 2017"},

    {.kind = K::balancer,
     .name = "none",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::none),
     .built = true,
     .summary = "no auxiliary load-balancing loss",
     .paper = "—",
     .devices = kCpu},
    {.kind = K::balancer,
     .name = "switch",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::switch_loss),
     .built = true,
     .summary = "`N * sum_i f_i * Pbar_i`: fraction of tokens routed to expert i times its mean "
                "probability; 1 at perfect balance",
     .paper = "Fedus et al. 2021",
     .devices = kCpu,
     .keys = kAlphaKeys},
    {.kind = K::balancer,
     .name = "shazeer",
     .choice_key = "balance.loss",
     .id = int(BalanceLoss::shazeer),
     .built = true,
     .summary = "CV^2 of the importance plus CV^2 of the smooth load estimate under gating noise",
     .paper = "Shazeer et al. 2017",
     .devices = kCpu,
     .keys = kShazeerKeys,
     .rules = kShazeerRules},
    {.kind = K::balancer,
     .name = "z_loss",
     .on_when = "`balance.z_loss` > 0",
     .built = true,
     .summary = "router z-loss: mean squared log-sum-exp of the router logits, keeps them small",
     .paper = "Zoph et al. 2022 (ST-MoE)",
     .devices = kCpu,
     .keys = kZLossKeys},
    {.kind = K::balancer,
     .name = "bias",
     .on_when = "`balance.bias_rate` > 0",
     .built = true,
     .summary =
         "auxiliary-loss-free balancing: a per-expert bias on the selection scores, moved each "
         "step towards balance",
     .paper = "Wang et al. 2024",
     .devices = kCpu,
     .keys = kBiasKeys},

    {.kind = K::task,
     .name = "clusters",
     .choice_key = "data.task",
     .id = int(TaskKind::clusters),
     .built = true,
     .summary =
         "points from a Gaussian mixture, labelled by a random teacher network; group = cluster",
     .paper = "—",
     .devices = kCpu,
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
     .devices = kCpu,
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
     .devices = kCpu,
     .keys = kModularKeys,
     .rules = kModularRules},
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
