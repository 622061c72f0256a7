// Cross-key rules, one line each (mlpack's Require* style). A rule runs only when every key it
// reads passed its own checks, so one mistake gives one diagnostic. The diagnostic is about the
// rule's first key and sits at that key's line; when that key was not given (it holds its
// default) it sits at the line of the other key that was, and the message says "(the default)".
// When an override set a key the rule reads, the diagnostic sits at that override (it is what
// broke the rule: an override changes its own key and nothing else, so train.steps=20 does not
// scale train.eval_every down), a value set in the file says its line (Show), and when the
// override is not of the rule's own key the message says to override that key as well.
// Single-key rules (ranges, choices, the run name) live in the schema (schema.cpp); the rules of
// one router, balancer or task live in its row (components.cpp) and run only while it is selected.
#include "config/components.h"
#include "config/config_load.h"
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>

#include <algorithm>

namespace moe::detail {
namespace {

// "<a> is larger than <b> (<value of b>)" when a > b.
template <class T>
std::string not_larger(T a, T b, std::string_view a_key, std::string_view b_key, const Show& s,
                       std::string_view why = {}) {
    if (!(a > b)) return {};
    return fmt::format("{} is larger than {} {}{}", s.value(a_key), b_key, s.paren(b_key), why);
}

const KeyRule kRules[] = {
    {"model.moe_every",
     {"model.moe_every", "model.layers"},
     "`model.moe_every` <= `model.layers`: at least one block has an MoE layer",
     [](const Config& c, const Show& s) {
         return not_larger(c.model.moe_every, c.model.layers, "model.moe_every", "model.layers", s,
                           ", so no block would have an MoE layer");
     }},
    {"experts.shared_gate",
     {"experts.shared_gate", "experts.shared"},
     "`experts.shared_gate: sigmoid` needs `experts.shared` > 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.shared_gate == SharedGate::none || c.experts.shared > 0) return {};
         return fmt::format("'sigmoid' gates the shared experts, but experts.shared = {}",
                            s.value("experts.shared"));
     }},
    {"model.kind",
     {"model.kind", "data.task"},
     "`model.kind: transformer` needs a task with token sequences (`data.task: markov` or "
     "`modular`)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.model.kind != ModelKind::transformer || c.data.task == TaskKind::markov ||
             c.data.task == TaskKind::modular)
             return {};
         return fmt::format(
             "'transformer' reads token sequences; data.task = {} has none (use data.task: "
             "markov or modular, or model.kind: residual)",
             s.value("data.task"));
     }},
    {"model.kind",
     {"model.kind", "device"},
     "`model.kind: transformer` runs on `device: cpu` only (not built for cuda yet)",
     [](const Config& c, const Show&) -> std::string {
         if (c.device == Device::cpu || c.model.kind != ModelKind::transformer) return {};
         return "'transformer' is not built for device: cuda yet; use device: cpu";
     }},
    {"model.output_softmax",
     {"model.output_softmax", "data.task"},
     "`model.output_softmax: true` needs a classification task (`data.task: clusters` or "
     "`patch_clusters`)",
     [](const Config& c, const Show& s) -> std::string {
         if (!c.model.output_softmax || c.data.task == TaskKind::clusters ||
             c.data.task == TaskKind::patch_clusters)
             return {};
         return fmt::format(
             "a softmax before the loss's own is for classification; data.task = {} scores its "
             "loss against an ideal loss that the second softmax would make meaningless",
             s.value("data.task"));
     }},
    {"model.heads",
     {"model.heads", "model.d_model"},
     "`model.kind: transformer` needs `model.d_model` divisible by `model.heads`",
     [](const Config& c, const Show& s) -> std::string {
         if (c.model.kind != ModelKind::transformer || c.model.d_model % c.model.heads == 0)
             return {};
         return fmt::format(
             "{} does not divide model.d_model {}: each head has d_model / heads "
             "dimensions",
             s.value("model.heads"), s.paren("model.d_model"));
     }},
    {"train.batch_size",
     {"train.batch_size", "data.markov.seq_len"},
     "`model.kind: transformer` on `data.task: markov` needs `train.batch_size` (tokens per step) "
     "to be a multiple of `data.markov.seq_len` - 1 (whole sequences)",
     [](const Config& c, const Show& s) -> std::string {
         const int S = c.data.markov.seq_len - 1;
         if (c.model.kind != ModelKind::transformer || c.data.task != TaskKind::markov ||
             c.train.batch_size % S == 0)
             return {};
         return fmt::format(
             "{} is not a multiple of data.markov.seq_len - 1 = {}: the transformer takes whole "
             "sequences, and each gives seq_len - 1 tokens",
             s.value("train.batch_size"), S);
     }},
    {"data.eval_size",
     {"data.eval_size", "data.markov.seq_len"},
     "`model.kind: transformer` on `data.task: markov` needs `data.eval_size` (tokens) to be a "
     "multiple of `data.markov.seq_len` - 1 (whole sequences)",
     [](const Config& c, const Show& s) -> std::string {
         const int S = c.data.markov.seq_len - 1;
         if (c.model.kind != ModelKind::transformer || c.data.task != TaskKind::markov ||
             c.data.eval_size % S == 0)
             return {};
         return fmt::format(
             "{} is not a multiple of data.markov.seq_len - 1 = {}: the transformer takes whole "
             "sequences, and each gives seq_len - 1 tokens",
             s.value("data.eval_size"), S);
     }},
    {"train.batch_size",
     {"train.batch_size", "data.task"},
     "`model.kind: transformer` on `data.task: modular` needs `train.batch_size` (tokens per "
     "step) to be a multiple of 4 (whole sequences `a OP b =`)",
     [](const Config& c, const Show& s) -> std::string {
         const int S = sequence_shape(c.data).positions;
         if (c.model.kind != ModelKind::transformer || c.data.task != TaskKind::modular ||
             c.train.batch_size % S == 0)
             return {};
         return fmt::format(
             "{} is not a multiple of {}: the transformer takes whole sequences, and each "
             "'a OP b =' gives {} tokens",
             s.value("train.batch_size"), S, S);
     }},
    {"data.eval_size",
     {"data.eval_size", "data.task"},
     "`model.kind: transformer` on `data.task: modular` needs `data.eval_size` (tokens) to be a "
     "multiple of 4 (whole sequences `a OP b =`)",
     [](const Config& c, const Show& s) -> std::string {
         const int S = sequence_shape(c.data).positions;
         if (c.model.kind != ModelKind::transformer || c.data.task != TaskKind::modular ||
             c.data.eval_size % S == 0)
             return {};
         return fmt::format(
             "{} is not a multiple of {}: the transformer takes whole sequences, and each "
             "'a OP b =' gives {} tokens",
             s.value("data.eval_size"), S, S);
     }},
    {"model.kind",
     {"model.kind", "experts.kind"},
     "`model.kind: moe_only` needs `experts.kind: patch` (its MoE layer's output is the logits)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.model.kind != ModelKind::moe_only || c.experts.kind == ExpertKind::patch) return {};
         return fmt::format(
             "'moe_only' makes the logits from the MoE layer's output, which only patch experts "
             "give (experts.kind = {})",
             s.value("experts.kind"));
     }},
    {"experts.kind",
     {"experts.kind", "model.kind"},
     "`experts.kind: patch` needs `model.kind: moe_only` (a patch expert's output is the 2 class "
     "scores)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.kind == ExpertKind::ffn || c.model.kind == ModelKind::moe_only) return {};
         return fmt::format(
             "'patch' experts output the 2 class scores, not the residual stream; they need "
             "model.kind: moe_only (model.kind = {})",
             s.value("model.kind"));
     }},
    {"experts.kind",
     {"experts.kind", "data.task"},
     "`experts.kind: patch` needs `data.task: patch_clusters` (its P patches of dimension d, 2 "
     "classes)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.kind == ExpertKind::ffn || c.data.task == TaskKind::patch_clusters)
             return {};
         return fmt::format(
             "'patch' experts read data.patch_clusters' patches and its 2 classes; data.task = {}",
             s.value("data.task"));
     }},
    {"experts.kind",
     {"experts.kind", "device"},
     "`experts.kind: patch` runs on `device: cpu` only (not built for cuda yet)",
     [](const Config& c, const Show&) -> std::string {
         if (c.device == Device::cpu || c.experts.kind == ExpertKind::ffn) return {};
         return "'patch' experts are not built for device: cuda yet (their activation runs on the "
                "host); use device: cpu";
     }},
    {"experts.kind",
     {"experts.kind", "experts.shared"},
     "`experts.kind: patch` needs `experts.shared` = 0",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.kind == ExpertKind::ffn || c.experts.shared == 0) return {};
         return fmt::format("'patch' experts have no shared experts; experts.shared = {}",
                            s.value("experts.shared"));
     }},
    {"experts.kind",
     {"experts.kind", "router.type"},
     "`experts.kind: patch` needs a router with a sparse plan (not soft or soft_slots)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.experts.kind == ExpertKind::ffn ||
             (c.router.type != RouterType::soft && c.router.type != RouterType::soft_slots))
             return {};
         return fmt::format(
             "'patch' experts run on the token-expert path; router.type = {} mixes tokens into "
             "slots",
             s.value("router.type"));
     }},
    {"router.patch_tied",
     {"router.patch_tied", "model.kind"},
     "`router.patch_tied: true` needs `model.kind: moe_only` (the router reads the raw patches)",
     [](const Config& c, const Show& s) -> std::string {
         if (!c.router.patch_tied || c.model.kind == ModelKind::moe_only) return {};
         return fmt::format(
             "a tied router reads the input's raw patches, which only moe_only gives it; "
             "model.kind = {}",
             s.value("model.kind"));
     }},
    {"router.patch_tied",
     {"router.patch_tied", "router.head"},
     "`router.patch_tied: true` needs `router.head: linear`",
     [](const Config& c, const Show&) -> std::string {
         if (!c.router.patch_tied || c.router.head == RouterHeadKind::linear) return {};
         return "only the linear head can tie its weight across patches; use router.head: linear";
     }},
    {"router.head",
     {"router.head", "device"},
     "`router.head: cosine` runs on `device: cpu` only (not built for cuda yet)",
     [](const Config& c, const Show&) -> std::string {
         if (c.device == Device::cpu || c.router.head == RouterHeadKind::linear) return {};
         return "'cosine' is not built for device: cuda yet (its normalisation runs on the "
                "host); use router.head: linear or device: cpu";
     }},
    {"router.jitter",
     {"router.jitter", "device"},
     "`router.jitter` > 0 runs on `device: cpu` only (not built for cuda yet)",
     [](const Config& c, const Show& s) -> std::string {
         if (c.device == Device::cpu || c.router.jitter == 0.0) return {};
         return fmt::format(
             "input jitter ({}) is not built for device: cuda yet (it runs on the host); use "
             "router.jitter: 0 or device: cpu",
             s.value("router.jitter"));
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
};

void run_rule(LoadState& st, const KeyRule& rule, std::string_view choice_key) {
    if (!choice_key.empty() && st.bad(choice_key)) return;
    for (std::string_view k : rule.reads)
        if (!k.empty() && st.bad(k)) return;
    const Source* place = nullptr;  // the first override among the keys read, else the first given
    for (int pass = 0; pass < 2 && !place; ++pass) {
        for (std::string_view k : rule.reads) {
            const Source* s = k.empty() ? nullptr : st.given(k);
            if (s && (pass == 1 || s->group == Source::in_override)) {
                place = s;
                break;
            }
        }
    }
    const Source at = place ? *place : Source{st.label};
    std::string message = rule.check(st.cfg, Show{st, &at});
    if (message.empty()) return;
    const Source* own = st.given(rule.key);
    if (at.group == Source::in_override && !(own && same_place(*own, at)))
        message += fmt::format("; to keep this override, also override {}", rule.key);
    st.error(at, rule.key, std::move(message));
}

// A key of a component's own sub-section (router.expert_choice.*) given while another component
// is selected: an error at that key. Only keys that were given count (defaults are not "used").
void check_own_keys(LoadState& st) {
    for (const schema::Key& key : schema::keys()) {
        const Source* at = st.given(key.path);
        const ComponentRow* owner = owner_of_key(key.path);
        if (!at || !owner || st.bad(owner->choice_key)) continue;
        const ComponentRow* chosen = selected_component(st.cfg, owner->choice_key);
        if (chosen && chosen != owner)
            st.error(*at, key.path, not_selected_message(*owner, *chosen));
    }
}

// Every selected component runs on the chosen device.
void check_devices(LoadState& st) {
    if (st.bad("device")) return;
    for (const ComponentRow& row : components()) {
        if (row.choice_key.empty() || st.bad(row.choice_key)) continue;
        if (selected_component(st.cfg, row.choice_key) != &row || runs_on(row, st.cfg.device))
            continue;
        const Source* at = st.given(row.choice_key);
        if (!at) at = st.given("device");
        st.error(at ? *at : Source{st.label}, row.choice_key,
                 fmt::format("'{}' does not run on device {} (it runs on: {})", row.name,
                             to_string(st.cfg.device), devices_text(row.devices)));
    }
}

}  // namespace

namespace {

// Where a key was set, as seen from a diagnostic reported at `at`: "" in the same place (the same
// file, the same override), "at run.yaml:46:15", "from override 'train.steps=20'".
std::string elsewhere(const Source& set, const Source* at) {
    if (!at || same_place(set, *at)) return {};
    if (set.group == Source::in_override) return "from " + set.file;
    if (set.group == Source::in_file && set.line > 0)
        return set.column > 0 ? fmt::format("at {}:{}:{}", set.file, set.line, set.column)
                              : fmt::format("at {}:{}", set.file, set.line);
    return {};
}

}  // namespace

bool same_place(const Source& a, const Source& b) {
    return a.group == b.group && a.file == b.file &&
           (a.group != Source::in_override || a.order == b.order);
}

std::string Show::value(std::string_view key) const {
    std::string v = config_value_string(st.cfg, key);
    const Source* set = st.given(key);
    if (!set) return v + " (the default)";
    std::string where = elsewhere(*set, at);
    return where.empty() ? v : fmt::format("{} ({})", v, where);
}

std::string Show::paren(std::string_view key) const {
    std::string v = config_value_string(st.cfg, key);
    const Source* set = st.given(key);
    if (!set) return "(" + v + ", the default)";
    std::string where = elsewhere(*set, at);
    return where.empty() ? "(" + v + ")" : fmt::format("({}, {})", v, where);
}

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
    for (const KeyRule& rule : kRules) run_rule(st, rule, {});
    for (const ComponentRow& row : components()) {
        // A row with a choice key runs its rules while selected; one without, always (its rules
        // say themselves when they apply).
        bool active =
            row.choice_key.empty() ||
            (!st.bad(row.choice_key) && selected_component(st.cfg, row.choice_key) == &row);
        if (!active) continue;
        for (const KeyRule& rule : row.rules) run_rule(st, rule, row.choice_key);
    }
    check_own_keys(st);
    check_devices(st);
}

std::vector<std::string> cross_key_rules_text() {
    std::vector<std::string> out;
    for (const KeyRule& rule : kRules) out.emplace_back(rule.text);
    // A rule shared by several rows (the dense routers') says so in its text: listed once.
    for (const ComponentRow& row : components())
        if (row.built)
            for (const KeyRule& rule : row.rules)
                if (std::find(out.begin(), out.end(), rule.text) == out.end())
                    out.emplace_back(rule.text);
    // The own sub-sections that have keys.
    for (const ComponentRow& row : components()) {
        std::string section = own_section(row);
        if (row.built && !section.empty() && schema::is_section(section))
            out.push_back(
                fmt::format("`{}.*` only with `{}: {}`: a component's own keys are an "
                            "error while another one is selected",
                            section, row.choice_key, row.name));
    }
    return out;
}

}  // namespace moe::detail
