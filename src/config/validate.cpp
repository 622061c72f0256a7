// Cross-key rules, one line each (mlpack's Require* style). A rule runs only when every key it
// reads passed its own checks, so one mistake gives one diagnostic. The diagnostic is about the
// rule's first key and sits at that key's line; when that key was not given (it holds its
// default) it sits at the line of the other key that was, and the message says "(the default)".
// Single-key rules (ranges, choices, the run name) live in the schema (schema.cpp).
#include "config/config_load.h"
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>

#include <array>

namespace moe::detail {
namespace {

// How a rule shows the values it talks about.
struct Show {
    const LoadState& st;
    // "20", or "2 (the default)" when the key was not given.
    std::string value(std::string_view key) const {
        std::string v = config_value_string(st.cfg, key);
        return st.given(key) ? v : v + " (the default)";
    }
    // "(16)", or "(16, the default)".
    std::string paren(std::string_view key) const {
        std::string v = config_value_string(st.cfg, key);
        return st.given(key) ? "(" + v + ")" : "(" + v + ", the default)";
    }
};

struct Rule {
    std::string_view key;                             // the key the diagnostic is about
    std::array<std::string_view, 2> reads;            // the keys the rule reads (key included)
    std::string_view text;                            // the rule in words, for the reference
    std::string (*check)(const Config&, const Show&); // "" when satisfied, else the message
};

// "<a> is larger than <b> (<value of b>)" when a > b.
template <class T>
std::string not_larger(T a, T b, std::string_view a_key, std::string_view b_key, const Show& s,
                       std::string_view why = {}) {
    if (!(a > b)) return {};
    return fmt::format("{} is larger than {} {}{}", s.value(a_key), b_key, s.paren(b_key), why);
}

const Rule kRules[] = {
    {"router.k",
     {"router.k", "experts.count"},
     "`router.k` <= `experts.count`",
     [](const Config& c, const Show& s) {
         return not_larger(c.router.k, c.experts.count, "router.k", "experts.count", s);
     }},
    {"model.moe_every",
     {"model.moe_every", "model.layers"},
     "`model.moe_every` <= `model.layers`: at least one block has an MoE layer",
     [](const Config& c, const Show& s) {
         return not_larger(c.model.moe_every, c.model.layers, "model.moe_every", "model.layers", s,
                           ", so no block would have an MoE layer");
     }},
    {"train.log_every",
     {"train.log_every", "train.steps"},
     "`train.log_every` <= `train.steps`",
     [](const Config& c, const Show& s) {
         return not_larger(c.train.log_every, c.train.steps, "train.log_every", "train.steps", s);
     }},
    {"train.eval_every",
     {"train.eval_every", "train.steps"},
     "`train.eval_every` <= `train.steps`",
     [](const Config& c, const Show& s) {
         return not_larger(c.train.eval_every, c.train.steps, "train.eval_every", "train.steps", s);
     }},
    {"train.warmup_steps",
     {"train.warmup_steps", "train.steps"},
     "`train.warmup_steps` <= `train.steps`",
     [](const Config& c, const Show& s) {
         return not_larger(c.train.warmup_steps, c.train.steps, "train.warmup_steps", "train.steps",
                           s);
     }},
    {"train.min_lr",
     {"train.min_lr", "train.lr"},
     "`train.min_lr` <= `train.lr`",
     [](const Config& c, const Show& s) {
         return not_larger(c.train.min_lr, c.train.lr, "train.min_lr", "train.lr", s);
     }},
    {"balance.loss",
     {"balance.loss", "router.noise"},
     "`balance.loss: shazeer` needs `router.noise` > 0: its load estimator divides by the noise "
     "std",
     [](const Config& c, const Show& s) -> std::string {
         if (c.balance.loss != BalanceLoss::shazeer || c.router.noise > 0) return {};
         return fmt::format(
             "'shazeer' needs router.noise > 0 (its load estimator divides by the noise "
             "std), got router.noise = {}",
             s.value("router.noise"));
     }},
};

} // namespace

void validate_each_key(LoadState& st) {
    for (const schema::Key& key : schema::keys()) {
        schema::Value v = key.get(st.cfg);
        std::string message = schema::check_value(key, v, schema::value_text(key, v));
        if (message.empty()) continue;
        st.error(Source{st.label}, key.path, std::move(message));
        st.mark_bad(key.path);
    }
}

void validate_cross_keys(LoadState& st) {
    Show show{st};
    for (const Rule& rule : kRules) {
        bool runnable = true;
        for (std::string_view k : rule.reads) runnable = runnable && !st.bad(k);
        if (!runnable) continue;
        std::string message = rule.check(st.cfg, show);
        if (message.empty()) continue;
        Source at{st.label};
        for (std::string_view k : rule.reads) {
            if (const Source* s = st.given(k)) {
                at = *s;
                break;
            }
        }
        st.error(at, rule.key, std::move(message));
    }
}

std::vector<std::string> cross_key_rules_text() {
    std::vector<std::string> out;
    for (const Rule& rule : kRules) out.emplace_back(rule.text);
    return out;
}

} // namespace moe::detail
