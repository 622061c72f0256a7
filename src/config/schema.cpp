// The key table (see schema.h) and the words that describe, parse and check one value.
#include "config/schema.h"

#include "config/components.h"
#include "config/config_load.h"
#include "config/load_internal.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <type_traits>

namespace moe::schema {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- choices: the spelling of every enum value (a config name = a registry key) ----

// The choices of a component's choice key (router.type, balance.loss, data.task), from the
// component rows in their order: a built row is available with its enum value, a row not built
// yet is a known name refused as not available.
std::vector<Choice> component_choices(std::string_view choice_key) {
    std::vector<Choice> out;
    for (const ComponentRow& row : components()) {
        if (row.choice_key != choice_key) continue;
        out.push_back(Choice{row.name, row.built ? row.id : -1, row.built, row.reason});
    }
    return out;
}
const std::vector<Choice>& task_choices() {
    static const std::vector<Choice> c = component_choices("data.task");
    return c;
}
const std::vector<Choice>& router_choices() {
    static const std::vector<Choice> c = component_choices("router.type");
    return c;
}
const std::vector<Choice>& balance_choices() {
    static const std::vector<Choice> c = component_choices("balance.loss");
    return c;
}

constexpr Choice kDevice[] = {
    {"cpu", int(Device::cpu)},
    {"cuda", int(Device::cuda)},
};
constexpr Choice kTeacher[] = {{"linear", int(Teacher::linear)}, {"mlp", int(Teacher::mlp)}};
constexpr Choice kActivation[] = {
    {"relu", int(Activation::relu)},
    {"gelu", int(Activation::gelu)},
    {"swiglu", int(Activation::swiglu)},
};
constexpr Choice kScore[] = {{"softmax", int(ScoreFn::softmax)},
                             {"sigmoid", int(ScoreFn::sigmoid)}};
constexpr Choice kNormalize[] = {
    {"auto", int(Normalize::auto_k)}, {"true", int(Normalize::yes)}, {"false", int(Normalize::no)}};
constexpr Choice kRouterHead[] = {
    {"linear", int(RouterHeadKind::linear)},
    {"cosine", int(RouterHeadKind::cosine)},
};
constexpr Choice kRouterInit[] = {
    {"normal", int(RouterInit::normal)},
    {"zero", int(RouterInit::zero)},
};
constexpr Choice kNoiseKind[] = {
    {"gaussian", int(NoiseKind::gaussian)},
    {"uniform", int(NoiseKind::uniform)},
};
constexpr Choice kTopkNoise[] = {
    {"fixed", int(TopkNoise::fixed)},
    {"learned", int(TopkNoise::learned)},
};
constexpr Choice kGateLogits[] = {
    {"noisy", int(GateLogits::noisy)},
    {"clean", int(GateLogits::clean)},
};
constexpr Choice kSecondExpert[] = {{"always", int(SecondExpert::always)},
                                    {"random", int(SecondExpert::random)}};
constexpr Choice kDrop[] = {{"position", int(DropPolicy::position)},
                            {"score", int(DropPolicy::score)},
                            {"random", int(DropPolicy::random)},
                            {"priority", int(DropPolicy::priority)}};
constexpr Choice kModelKind[] = {{"residual", int(ModelKind::residual)},
                                 {"transformer", int(ModelKind::transformer)},
                                 {"moe_only", int(ModelKind::moe_only)}};
constexpr Choice kSharedGate[] = {{"none", int(SharedGate::none)},
                                  {"sigmoid", int(SharedGate::sigmoid)}};
constexpr Choice kBiasRule[] = {{"sign", int(BiasRule::sign)},
                                {"proportional", int(BiasRule::proportional)},
                                {"mean_centred", int(BiasRule::mean_centred)}};
constexpr Choice kBiasDecay[] = {{"constant", int(BiasDecay::constant)},
                                 {"cosine", int(BiasDecay::cosine)}};
constexpr Choice kOptimizer[] = {
    {"adam", int(OptimizerKind::adam)},
    {"adamw", int(OptimizerKind::adamw)},
    {"sgd", int(OptimizerKind::sgd)},
    {"ngd", int(OptimizerKind::ngd)},
};
constexpr Choice kRouterOptimizer[] = {
    {"same", int(RouterOptimizer::same)},   {"adam", int(RouterOptimizer::adam)},
    {"adamw", int(RouterOptimizer::adamw)}, {"sgd", int(RouterOptimizer::sgd)},
    {"ngd", int(RouterOptimizer::ngd)},
};
constexpr Choice kExpertKind[] = {{"ffn", int(ExpertKind::ffn)}, {"patch", int(ExpertKind::patch)}};
constexpr Choice kPatchActivation[] = {{"cubic", int(PatchActivation::cubic)},
                                       {"linear", int(PatchActivation::linear)}};
constexpr Choice kSchedule[] = {{"constant", int(Schedule::constant)},
                                {"cosine", int(Schedule::cosine)}};

// ---- typed access to a (nested) field through a chain of pointers to members ----

template <auto... Ms>
using FieldT = std::remove_cvref_t<decltype((std::declval<Config&>().*....*Ms))>;

template <auto... Ms>
struct Field {
    using T = FieldT<Ms...>;
    static Value get(const Config& c) {
        const T& x = (c.*....*Ms);
        if constexpr (std::is_enum_v<T>)
            return Value{int64_t(x)};
        else if constexpr (std::is_same_v<T, bool>)
            return Value{x};
        else if constexpr (std::is_same_v<T, uint64_t>)
            return Value{x};
        else if constexpr (std::is_integral_v<T>)
            return Value{int64_t{x}};
        else if constexpr (std::is_floating_point_v<T>)
            return Value{double{x}};
        else
            return Value{std::string(x)};
    }
    static void set(Config& c, const Value& v) {
        T& x = (c.*....*Ms);
        if constexpr (std::is_enum_v<T>)
            x = T(std::get<int64_t>(v));
        else if constexpr (std::is_same_v<T, bool>)
            x = std::get<bool>(v);
        else if constexpr (std::is_same_v<T, uint64_t>)
            x = std::get<uint64_t>(v);
        else if constexpr (std::is_integral_v<T>)
            x = static_cast<T>(std::get<int64_t>(v));
        else if constexpr (std::is_floating_point_v<T>)
            x = std::get<double>(v);
        else
            x = std::get<std::string>(v);
    }
};

template <auto... Ms>
Key make(std::string_view path, Type type, std::string_view doc) {
    Key k;
    k.path = path;
    k.type = type;
    k.doc = doc;
    k.get = &Field<Ms...>::get;
    k.set = &Field<Ms...>::set;
    return k;
}

template <auto... Ms>
Key int_key(std::string_view path, int64_t min, int64_t max, std::string_view doc) {
    using T = FieldT<Ms...>;
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                  !std::is_same_v<T, uint64_t>);
    Key k = make<Ms...>(path, Type::integer, doc);
    // Ranges of narrower fields must fit the field (a test also checks this).
    k.ints = {std::max<int64_t>(min, std::numeric_limits<T>::min()),
              std::min<int64_t>(max, std::numeric_limits<T>::max())};
    return k;
}

template <auto... Ms>
Key uint_key(std::string_view path, std::string_view doc) {
    static_assert(std::is_same_v<FieldT<Ms...>, uint64_t>);
    return make<Ms...>(path, Type::unsigned_integer, doc);
}

template <auto... Ms>
Key num_key(std::string_view path, NumRange range, std::string_view doc) {
    static_assert(std::is_same_v<FieldT<Ms...>, double>);
    Key k = make<Ms...>(path, Type::number, doc);
    k.nums = range;
    return k;
}

template <auto... Ms>
Key bool_key(std::string_view path, std::string_view doc) {
    static_assert(std::is_same_v<FieldT<Ms...>, bool>);
    return make<Ms...>(path, Type::boolean, doc);
}

template <auto... Ms>
Key choice_key(std::string_view path, std::span<const Choice> choices, std::string_view doc) {
    static_assert(std::is_enum_v<FieldT<Ms...>>);
    Key k = make<Ms...>(path, Type::choice, doc);
    k.choices = choices;
    return k;
}

template <auto... Ms>
Key string_key(std::string_view path, std::string_view allowed, bool (*ok)(std::string_view),
               std::string_view doc) {
    static_assert(std::is_same_v<FieldT<Ms...>, std::string>);
    Key k = make<Ms...>(path, Type::string, doc);
    k.allowed_text = allowed;
    k.string_ok = ok;
    return k;
}

constexpr NumRange at_least(double min) {
    return {min, kInf, false, true, false};
}
constexpr NumRange above(double min) {
    return {min, kInf, true, true, false};
}
constexpr NumRange between(double min, double max) {
    return {min, max, false, false, false};
}
constexpr NumRange unit_open() {
    return {0.0, 1.0, false, true, false};
}  // [0, 1)
constexpr NumRange zero_or_between(double min, double max) {
    return {min, max, false, false, true};
}
constexpr int64_t kMaxSize = 1'000'000'000;

// `name` becomes a directory name: keep it filesystem-safe and visible.
bool run_name_ok(std::string_view s) {
    if (s.empty() || s.size() > 100 || s.front() == '.') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

// data.modular.ops: "add,sub", each name at most once.
bool modular_ops_ok(std::string_view s) {
    return modular_ops_parse(s).has_value();
}

using C = Config;

const std::vector<Key>& table() {
    static const std::vector<Key> t = {
        string_key<&C::name>("name",
                             "1 to 100 letters, digits, '.', '_' or '-', not starting with '.'",
                             run_name_ok, "run name; output goes to runs/<name> unless --out"),
        uint_key<&C::seed>("seed", "one seed decides data, init and noise: same seed, same CSV"),
        choice_key<&C::device>("device", kDevice, "where the model runs"),
        int_key<&C::threads>("threads", 0, 1024,
                             "OpenMP threads; 0 = the CPUs this process may run on (its affinity "
                             "mask capped by its cgroup CPU quota), or OMP_NUM_THREADS"),

        choice_key<&C::data, &DataConfig::task>("data.task", task_choices(),
                                                "the task that generates the data"),
        int_key<&C::data, &DataConfig::train_size>(
            "data.train_size", 0, kMaxSize,
            "examples in the training set; 0 = fresh samples every step"),
        int_key<&C::data, &DataConfig::eval_size>("data.eval_size", 1, kMaxSize,
                                                  "examples in the held-out evaluation set"),
        int_key<&C::data, &DataConfig::clusters, &ClustersConfig::dim>("data.clusters.dim", 1,
                                                                       65536, "input dimension"),
        int_key<&C::data, &DataConfig::clusters, &ClustersConfig::num_clusters>(
            "data.clusters.num_clusters", 1, 65536, "mixture components (the ground-truth groups)"),
        int_key<&C::data, &DataConfig::clusters, &ClustersConfig::num_classes>(
            "data.clusters.num_classes", 2, 65536, "labels"),
        num_key<&C::data, &DataConfig::clusters, &ClustersConfig::spread>(
            "data.clusters.spread", {0.0, 100.0, true, false, false},
            "within-cluster std relative to the std of the centres (1.0)"),
        num_key<&C::data, &DataConfig::clusters, &ClustersConfig::imbalance>(
            "data.clusters.imbalance", between(0.0, 10.0),
            "Zipf exponent of the cluster frequencies; 0 = uniform"),
        choice_key<&C::data, &DataConfig::clusters, &ClustersConfig::teacher>(
            "data.clusters.teacher", kTeacher, "the random network that labels the points"),
        num_key<&C::data, &DataConfig::clusters, &ClustersConfig::label_noise>(
            "data.clusters.label_noise", unit_open(),
            "probability that a label is replaced by a uniformly random class"),

        int_key<&C::data, &DataConfig::markov, &MarkovConfig::domains>(
            "data.markov.domains", 1, 1024,
            "Markov chains, one per domain (the ground-truth groups)"),
        int_key<&C::data, &DataConfig::markov, &MarkovConfig::vocab>(
            "data.markov.vocab", 2, 4096, "tokens of the vocabulary shared by all domains"),
        int_key<&C::data, &DataConfig::markov, &MarkovConfig::order>(
            "data.markov.order", 1, 2,
            "order of the chains: the next token depends on the last 1 or 2 tokens"),
        int_key<&C::data, &DataConfig::markov, &MarkovConfig::branching>(
            "data.markov.branching", 1, 4096,
            "successors of each token in a domain's chain (the other transitions have probability "
            "0)"),
        num_key<&C::data, &DataConfig::markov, &MarkovConfig::concentration>(
            "data.markov.concentration", between(0.01, 1000.0),
            "Dirichlet parameter of a token's successor weights (small = peaked, large = even)"),
        num_key<&C::data, &DataConfig::markov, &MarkovConfig::imbalance>(
            "data.markov.imbalance", between(0.0, 10.0),
            "Zipf exponent of domain frequencies (0 = uniform)"),
        int_key<&C::data, &DataConfig::markov, &MarkovConfig::seq_len>(
            "data.markov.seq_len", 2, 4096,
            "tokens per sequence; each gives seq_len - 1 examples (positions 1 .. seq_len - 1)"),
        int_key<&C::data, &DataConfig::markov, &MarkovConfig::context>(
            "data.markov.context", 1, 4096,
            "previous tokens the model sees (input_dim = context * vocab one-hot slots)"),

        int_key<&C::data, &DataConfig::modular, &ModularConfig::p>(
            "data.modular.p", 2, 4096, "the modulus; answers and operands are 0 .. p-1"),
        string_key<&C::data, &DataConfig::modular, &ModularConfig::ops>(
            "data.modular.ops", "a comma-separated list of distinct add, sub, mul, div",
            modular_ops_ok, "the operations (one group each), e.g. add,sub"),
        num_key<&C::data, &DataConfig::modular, &ModularConfig::train_fraction>(
            "data.modular.train_fraction", {0.0, 1.0, true, true, false},
            "share of the (op, a, b) triples in the training set; the rest is held out"),

        int_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::num_clusters>(
            "data.patch_clusters.num_clusters", 2, 1024,
            "K clusters (the ground-truth groups); 2K orthonormal vectors need 2K <= dim"),
        int_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::patches>(
            "data.patch_clusters.patches", 3, 1024,
            "P patches per example: signal, centre, feature noise and P - 3 Gaussian ones"),
        int_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::dim>(
            "data.patch_clusters.dim", 4, 4096, "d, the dimension of a patch; input = P * d"),
        num_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::gamma_max>(
            "data.patch_clusters.gamma_max", between(0.5, 100.0),
            "feature-noise amplitude gamma ~ U(0.5, gamma_max)"),
        num_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::sigma_p>(
            "data.patch_clusters.sigma_p", between(0.0, 100.0),
            "Gaussian noise patches ~ N(0, sigma_p^2 / d I)"),
        num_key<&C::data, &DataConfig::patch_clusters, &PatchClustersConfig::scale>(
            "data.patch_clusters.scale", {0.0, 1.0e6, true, false, false},
            "the whole input is multiplied by this"),

        choice_key<&C::model, &ModelConfig::kind>(
            "model.kind", kModelKind,
            "residual: the MLP of residual blocks over one example per token (every task); "
            "transformer: a causal transformer over whole token sequences (docs/model.md); "
            "moe_only: the logits are one MoE layer's output on the raw input (Chen et al. 2022; "
            "needs experts.kind: patch; model.d_model, layers and moe_every are then not used)"),
        int_key<&C::model, &ModelConfig::d_model>("model.d_model", 1, 65536,
                                                  "width of the residual stream"),
        int_key<&C::model, &ModelConfig::layers>("model.layers", 1, 1024, "residual blocks"),
        int_key<&C::model, &ModelConfig::moe_every>(
            "model.moe_every", 1, 1024,
            "every n-th block's FFN is an MoE layer, the others a dense FFN"),
        int_key<&C::model, &ModelConfig::heads>(
            "model.heads", 1, 1024,
            "model.kind: transformer: attention heads; each has d_model / heads dimensions"),
        bool_key<&C::model, &ModelConfig::tie_embeddings>(
            "model.tie_embeddings",
            "model.kind: transformer: the LM head is the transposed token embedding (no head "
            "matrix of its own)"),
        bool_key<&C::model, &ModelConfig::output_softmax>(
            "model.output_softmax",
            "the loss's cross-entropy reads softmax(logits), a softmax applied twice (the official "
            "code of Chen et al. 2022); for clusters and patch_clusters"),

        choice_key<&C::experts, &ExpertsConfig::kind>(
            "experts.kind", kExpertKind,
            "ffn = act(x W1 + b1) W2 + b2; patch = Chen et al. 2022's two-layer CNN over the "
            "input's patches (output: the 2 class scores; needs model.kind: moe_only)"),
        int_key<&C::experts, &ExpertsConfig::count>("experts.count", 1, 4096,
                                                    "routed experts per MoE layer (N)"),
        int_key<&C::experts, &ExpertsConfig::d_ff>("experts.d_ff", 1, 1048576,
                                                   "hidden width of each expert FFN"),
        choice_key<&C::experts, &ExpertsConfig::activation>("experts.activation", kActivation,
                                                            "activation of the expert FFNs"),
        int_key<&C::experts, &ExpertsConfig::shared>("experts.shared", 0, 64,
                                                     "always-on shared experts (DeepSeekMoE)"),
        choice_key<&C::experts, &ExpertsConfig::shared_gate>(
            "experts.shared_gate", kSharedGate,
            "none = the shared experts' output is added as is (DeepSeekMoE); sigmoid = times "
            "sigmoid(x . w_g), a learned gate per token (Qwen-MoE)"),
        choice_key<&C::experts, &ExpertsConfig::patch, &PatchExpertConfig::activation>(
            "experts.patch.activation", kPatchActivation,
            "experts.kind: patch: sigma of each channel, cubic = z^3 or linear = z"),
        int_key<&C::experts, &ExpertsConfig::patch, &PatchExpertConfig::channels>(
            "experts.patch.channels", 1, 65536,
            "experts.kind: patch: J, the channels per class (2J filters of dimension d, with "
            "bias)"),
        num_key<&C::experts, &ExpertsConfig::patch, &PatchExpertConfig::init_scale>(
            "experts.patch.init_scale", {0.0, 1000.0, true, false, false},
            "experts.kind: patch: the filters and biases are N(0, (init_scale / sqrt(3 d))^2), "
            "the variance of PyTorch's default Conv1d init times init_scale^2"),

        choice_key<&C::router, &RouterConfig::type>("router.type", router_choices(),
                                                    "the routing algorithm"),
        int_key<&C::router, &RouterConfig::k>("router.k", 1, 64, "experts each token is sent to"),
        choice_key<&C::router, &RouterConfig::score>("router.score", kScore,
                                                     "how router logits become probabilities"),
        choice_key<&C::router, &RouterConfig::normalize>(
            "router.normalize", kNormalize,
            "renormalise the k selected gate weights to sum to 1; auto = true for k >= 2, false "
            "for k = 1 (where it would make every gate 1 and leave the router no task gradient)"),
        num_key<&C::router, &RouterConfig::noise>(
            "router.noise", at_least(0.0),
            "scale of the top-k gating noise (training only): "
            "the std for gaussian, u's factor for uniform; "
            "0 = off"),
        choice_key<&C::router, &RouterConfig::noise_kind>(
            "router.noise_kind", kNoiseKind,
            "the fixed gating noise (training only): gaussian = router.noise * N(0, 1); uniform = "
            "router.noise * U[0, 1) per token and expert (Chen et al. 2022's r)"),
        num_key<&C::router, &RouterConfig::scale>(
            "router.scale", between(0.01, 1000.0),
            "multiplies every routed gate weight (DeepSeek-V3's routed scaling factor)"),
        num_key<&C::router, &RouterConfig::jitter>(
            "router.jitter", unit_open(),
            "training only: the router's input is x * u, u ~ U(1 - jitter, 1 + jitter) per "
            "element (Switch Transformer); 0 = off"),
        choice_key<&C::router, &RouterConfig::head>(
            "router.head", kRouterHead,
            "how the router logits are made from x: linear = x Wr, cosine = cos(x Wp, e_i) / tau "
            "(X-MoE)"),
        choice_key<&C::router, &RouterConfig::init>(
            "router.init", kRouterInit,
            "the router weights at step 0: normal = N(0, (0.1 / sqrt(d))^2) (near-uniform "
            "routing), zero = all 0 (Chen et al. 2022; linear head only)"),
        bool_key<&C::router, &RouterConfig::patch_tied>(
            "router.patch_tied",
            "the linear head is one (d, N) map shared by the input's P patches of dimension d: "
            "logits = sum_p x_p Wr (Chen et al. 2022); needs data.task: patch_clusters and "
            "model.kind: moe_only"),
        int_key<&C::router, &RouterConfig::cosine, &CosineHeadConfig::dim>(
            "router.cosine.dim", 1, 65536,
            "router.head: cosine: dimension of the projection x Wp and of the expert embeddings"),
        num_key<&C::router, &RouterConfig::cosine, &CosineHeadConfig::temperature>(
            "router.cosine.temperature", {0.0, 100.0, true, false, false},
            "router.head: cosine: initial temperature tau (learned from there)"),
        choice_key<&C::router, &RouterConfig::topk, &TopkConfig::second_expert>(
            "router.topk.second_expert", kSecondExpert,
            "k = 2: always dispatch the 2nd expert, or random = with probability 2 g2 (GShard)"),
        int_key<&C::router, &RouterConfig::topk, &TopkConfig::groups>(
            "router.topk.groups", 1, 4096,
            "expert groups for group-limited routing (DeepSeek-V3); must divide experts.count; "
            "1 = off"),
        int_key<&C::router, &RouterConfig::topk, &TopkConfig::topk_groups>(
            "router.topk.topk_groups", 1, 4096,
            "groups a token keeps (by the sum of its top-2 s + b in each); its k experts come "
            "from them"),
        choice_key<&C::router, &RouterConfig::topk, &TopkConfig::noise>(
            "router.topk.noise", kTopkNoise,
            "gating noise: fixed = N(0, router.noise^2); learned = softplus(x Wnoise) * N(0, 1), "
            "Shazeer et al.'s learned noise (the router makes 2N logits)"),
        choice_key<&C::router, &RouterConfig::topk, &TopkConfig::gate_logits>(
            "router.topk.gate_logits", kGateLogits,
            "the logits the gates read in training: noisy = those after the gating noise (the "
            "ones the selection reads); clean = those before it, at the experts the noisy ones "
            "selected (Chen et al. 2022's softmax(h)); needs router.noise > 0"),
        int_key<&C::router, &RouterConfig::hash, &HashConfig::bits>(
            "router.hash.bits", 1, 62,
            "clusters task: random hyperplanes per hash; the sign pattern of the input's "
            "projections (2^bits cells) picks the expert"),
        int_key<&C::router, &RouterConfig::sinkhorn, &SinkhornConfig::iterations>(
            "router.sinkhorn.iterations", 1, 1000,
            "Sinkhorn-Knopp iterations in training (each scales the rows, then the columns)"),

        int_key<&C::router, &RouterConfig::hierarchical, &HierarchicalConfig::branches>(
            "router.hierarchical.branches", 1, 4096,
            "branches B: groups of experts.count / B consecutive experts; must divide "
            "experts.count"),
        int_key<&C::router, &RouterConfig::hierarchical, &HierarchicalConfig::k_branches>(
            "router.hierarchical.k_branches", 1, 64,
            "branches a token picks (top by branch softmax); router.k experts within each"),
        int_key<&C::router, &RouterConfig::soft_slots, &SoftSlotsConfig::slots>(
            "router.soft_slots.slots", 1, 4096,
            "slots per expert (S): each slot is a softmax-over-tokens weighted average of the "
            "batch's tokens, and each expert processes its S slots"),

        num_key<&C::capacity, &CapacityConfig::factor>(
            "capacity.factor", zero_or_between(0.01, 1024.0),
            "per-expert buffer = ceil(factor * tokens * k / N); 0 = dropless"),
        choice_key<&C::capacity, &CapacityConfig::drop_policy>(
            "capacity.drop_policy", kDrop,
            "what a full expert drops: position = later tokens first, score = lowest gate weight "
            "first, random = a uniformly random choice (Random Token Selection), priority = "
            "tokens of the lowest top-1 router probability first (Batch-Prioritized Routing)"),
        int_key<&C::capacity, &CapacityConfig::min>(
            "capacity.min", 0, 1 << 30,
            "smallest per-expert buffer when the capacity is on: C = max(C, min); 0 = none"),
        num_key<&C::capacity, &CapacityConfig::eval_factor>(
            "capacity.eval_factor", zero_or_between(0.01, 1024.0),
            "capacity factor at evaluation; 0 = same as factor"),

        choice_key<&C::balance, &BalanceConfig::loss>(
            "balance.loss", balance_choices(),
            "auxiliary load-balancing loss (its value before balance.alpha is layers.csv "
            "aux_loss)"),
        num_key<&C::balance, &BalanceConfig::alpha>("balance.alpha", at_least(0.0),
                                                    "coefficient of balance.loss"),
        num_key<&C::balance, &BalanceConfig::z_loss>("balance.z_loss", at_least(0.0),
                                                     "router z-loss coefficient (ST-MoE); 0 = off"),
        num_key<&C::balance, &BalanceConfig::bias_rate>(
            "balance.bias_rate", at_least(0.0),
            "> 0: auxiliary-loss-free bias balancing (DeepSeek) with this update rate; 0 = off"),
        choice_key<&C::balance, &BalanceConfig::bias_rule>(
            "balance.bias_rule", kBiasRule,
            "the bias update: sign = b += u sign(mean A - A) (Wang et al. 2024), proportional = "
            "b += u (mean A - A) / mean A, mean_centred = sign, then b -= mean b"),
        int_key<&C::balance, &BalanceConfig::bias_warmup>(
            "balance.bias_warmup", 0, INT64_MAX,
            "steps of linear warmup of the bias rate from 0 to bias_rate; 0 = none"),
        choice_key<&C::balance, &BalanceConfig::bias_decay>(
            "balance.bias_decay", kBiasDecay,
            "bias rate after its warmup: constant, or cosine from bias_rate to 0 at train.steps"),
        num_key<&C::balance, &BalanceConfig::losses, &BalanceLossesConfig::switch_loss>(
            "balance.losses.switch", at_least(0.0),
            "coefficient of a switch loss added to balance.loss; 0 = off"),
        num_key<&C::balance, &BalanceConfig::losses, &BalanceLossesConfig::gshard>(
            "balance.losses.gshard", at_least(0.0),
            "coefficient of a gshard loss added to balance.loss; 0 = off"),
        num_key<&C::balance, &BalanceConfig::losses, &BalanceLossesConfig::shazeer>(
            "balance.losses.shazeer", at_least(0.0),
            "coefficient of a shazeer loss added to balance.loss; 0 = off"),

        int_key<&C::train, &TrainConfig::steps>("train.steps", 1, INT64_MAX, "optimizer steps"),
        int_key<&C::train, &TrainConfig::batch_size>(
            "train.batch_size", 1, 1048576,
            "examples per step (tokens per step = batch_size * tokens per example)"),
        choice_key<&C::train, &TrainConfig::optimizer>("train.optimizer", kOptimizer,
                                                       "the optimizer; ngd = normalised gradient "
                                                       "descent, p -= lr g / |g| per routed expert "
                                                       "and per other tensor"),
        num_key<&C::train, &TrainConfig::lr>("train.lr", above(0.0),
                                             "learning rate (the peak, after warmup)"),
        num_key<&C::train, &TrainConfig::router_lr>(
            "train.router_lr", zero_or_between(1e-12, 1e9),
            "the router group's learning rate (the peak; the same schedule); 0 = train.lr"),
        choice_key<&C::train, &TrainConfig::router_optimizer>(
            "train.router_optimizer", kRouterOptimizer,
            "the router group's optimizer; same = train.optimizer"),
        num_key<&C::train, &TrainConfig::weight_decay>("train.weight_decay", at_least(0.0),
                                                       "decoupled weight decay (adamw only)"),
        num_key<&C::train, &TrainConfig::beta1>("train.beta1", unit_open(),
                                                "decay of the first-moment average (adam, adamw)"),
        num_key<&C::train, &TrainConfig::beta2>("train.beta2", unit_open(),
                                                "decay of the second-moment average (adam, adamw)"),
        num_key<&C::train, &TrainConfig::momentum>("train.momentum", unit_open(),
                                                   "momentum (sgd only); 0 = plain SGD"),
        num_key<&C::train, &TrainConfig::grad_clip>(
            "train.grad_clip", at_least(0.0), "clip the global gradient norm to this; 0 = off"),
        int_key<&C::train, &TrainConfig::warmup_steps>("train.warmup_steps", 0, INT64_MAX,
                                                       "steps of linear warmup from 0 to lr"),
        choice_key<&C::train, &TrainConfig::schedule>("train.schedule", kSchedule,
                                                      "learning-rate schedule after warmup"),
        num_key<&C::train, &TrainConfig::min_lr>("train.min_lr", at_least(0.0),
                                                 "floor of the cosine schedule"),
        int_key<&C::train, &TrainConfig::log_every>(
            "train.log_every", 1, INT64_MAX,
            "steps between rows of metrics.csv, layers.csv and experts.csv"),
        int_key<&C::train, &TrainConfig::eval_every>(
            "train.eval_every", 1, INT64_MAX, "steps between evaluations on the held-out set"),
        int_key<&C::train, &TrainConfig::checkpoint_every>(
            "train.checkpoint_every", -1, INT64_MAX,
            "steps between checkpoints of the whole training state in the run directory "
            "(`run --resume` continues from the newest); -1 = at every evaluation, 0 = never"),
        num_key<&C::train, &TrainConfig::early_stop, &EarlyStopConfig::loss_rise>(
            "train.early_stop.loss_rise", at_least(0.0),
            "end the run at the first step whose training loss (the step's own, before its "
            "update) exceeds the smallest loss of the steps before it by more than this; 0 = off"),
        num_key<&C::train, &TrainConfig::early_stop, &EarlyStopConfig::loss_floor>(
            "train.early_stop.loss_floor", at_least(0.0),
            "end the run at the first step whose training loss is at or below this; 0 = off"),
        int_key<&C::train, &TrainConfig::early_stop, &EarlyStopConfig::after_step>(
            "train.early_stop.after_step", 0, INT64_MAX,
            "the early-stop rules are checked only at steps after this one (the running minimum "
            "counts every step)"),
    };
    return t;
}

constexpr Section kSections[] = {
    {"data", "the task and its data set"},
    {"data.clusters",
     "the clusters task: points from a Gaussian mixture, labelled by a random teacher network"},
    {"data.markov",
     "the markov task: a toy language of random sparse Markov chains, one per domain"},
    {"data.modular", "the modular task: a OP b = c (mod p)"},
    {"data.patch_clusters",
     "the patch_clusters task: Chen et al. 2022's patch-clustered binary data (Definition 3.1)"},
    {"model",
     "the network: residual blocks whose FFN is a dense FFN or an MoE layer, or one MoE layer "
     "alone (model.kind: moe_only)"},
    {"experts", "the experts of each MoE layer"},
    {"experts.patch", "the patch experts (experts.kind: patch; Chen et al. 2022's two-layer CNN)"},
    {"router", "how tokens are assigned to experts"},
    {"router.cosine", "the cosine router head (router.head: cosine; X-MoE)"},
    {"router.topk", "options of the top-k router (router.type: topk)"},
    {"router.hash", "options of the hash router (router.type: hash)"},
    {"router.sinkhorn", "options of the Sinkhorn router (router.type: sinkhorn)"},
    {"router.hierarchical", "options of the hierarchical router (router.type: hierarchical)"},
    {"router.soft_slots", "options of Soft MoE (router.type: soft_slots)"},
    {"capacity", "per-expert buffers, and which tokens a full expert drops"},
    {"balance", "load balancing: auxiliary losses and bias"},
    {"balance.losses",
     "auxiliary losses added to balance.loss, each with its own coefficient: {switch: 0.01, "
     "shazeer: 0.001}"},
    {"train", "optimisation, evaluation and logging"},
    {"train.early_stop",
     "end a run before train.steps on its training loss (off unless a rule is set); the stop "
     "step's update is not applied, and the run ends completed with a train row, an evaluation "
     "and summary.csv's stop_reason"},
};

std::string join_available(std::span<const Choice> choices) {
    std::string out;
    for (const Choice& c : choices) {
        if (!c.available) continue;
        if (!out.empty()) out += ", ";
        out += c.name;
    }
    return out;
}

std::string format_number(double x) {
    return fmt::format("{}", x);
}

std::string describe_ints(const IntRange& r) {
    if (r.max == INT64_MAX) return fmt::format(">= {}", r.min);
    return fmt::format("between {} and {}", r.min, r.max);
}

std::string describe_nums(const NumRange& r) {
    std::string s;
    bool lo = std::isfinite(r.min), hi = std::isfinite(r.max);
    if (lo && hi && !r.min_open && !r.max_open) {
        s = fmt::format("between {} and {}", format_number(r.min), format_number(r.max));
    } else {
        if (lo) s = fmt::format("{} {}", r.min_open ? ">" : ">=", format_number(r.min));
        if (hi)
            s += fmt::format("{}{} {}", lo ? " and " : "",
                             r.max_open ? "<" : "<=", format_number(r.max));
        if (!lo && !hi) s = "finite";
    }
    return r.zero_ok ? "0 or " + s : s;
}

bool nums_contain(const NumRange& r, double v) {
    if (!std::isfinite(v)) return false;
    if (r.zero_ok && v == 0.0) return true;
    if (std::isfinite(r.min) && (r.min_open ? !(v > r.min) : !(v >= r.min))) return false;
    if (std::isfinite(r.max) && (r.max_open ? !(v < r.max) : !(v <= r.max))) return false;
    return true;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Decimal integer: -?[0-9]+ (YAML 1.2's core schema also takes a leading '+': refused, so that a
// value has one spelling, the one config_to_yaml writes; a sweep names runs by it).
bool int_syntax(std::string_view s) {
    size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
    if (i == s.size()) return false;
    return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i), s.end(), is_digit);
}

// YAML 1.2 core-schema float without .inf/.nan and without a leading '+' (as for integers):
// -?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool number_syntax(std::string_view s) {
    size_t i = 0, n = s.size();
    if (i < n && s[i] == '-') ++i;
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && is_digit(s[i])) ++i, ++int_digits;
    if (i < n && s[i] == '.') {
        ++i;
        while (i < n && is_digit(s[i])) ++i, ++frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
        size_t exp_digits = 0;
        while (i < n && is_digit(s[i])) ++i, ++exp_digits;
        if (exp_digits == 0) return false;
    }
    return i == n;
}

// For text with number syntax that no double holds (from_chars says out of range): true when it
// is too large, false when it is too close to 0. Judged by the decimal exponent of its first
// nonzero digit, which decides it for any text that overflows or underflows.
bool beyond_largest(std::string_view s) {
    size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    int64_t int_digits = 0, frac_zeros = 0;  // significant integer digits; fraction zeros before
    bool nonzero = false;                    // the first nonzero digit
    for (; i < s.size() && is_digit(s[i]); ++i)
        if (s[i] != '0' || int_digits > 0) ++int_digits, nonzero = true;
    if (i < s.size() && s[i] == '.')
        for (++i; i < s.size() && is_digit(s[i]); ++i) {
            if (s[i] != '0') nonzero = true;
            if (!nonzero) ++frac_zeros;
        }
    if (!nonzero) return false;  // zero: never out of range
    int64_t exp10 = int_digits > 0 ? int_digits - 1 : -(frac_zeros + 1);
    if (i < s.size()) {  // e or E, then [-+]?digits: capped, as only the sign of the total counts
        ++i;
        bool negative = i < s.size() && s[i] == '-';
        if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
        int64_t e = 0;
        for (; i < s.size(); ++i) e = std::min<int64_t>(e * 10 + (s[i] - '0'), 1'000'000'000);
        exp10 += negative ? -e : e;
    }
    return exp10 >= 0;
}

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

// How far off a guess may be and still be suggested, by the length of what was typed.
size_t max_distance(size_t typed_length) {
    if (typed_length <= 3) return 1;
    if (typed_length <= 6) return 2;
    return 3;
}

std::string_view last_component(std::string_view path) {
    size_t dot = path.rfind('.');
    return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

std::string got_text(std::string_view text, ScalarStyle style) {
    switch (style) {
        case ScalarStyle::quoted:
            return fmt::format("the quoted string \"{}\"", detail::shown(text));
        case ScalarStyle::block:
            return fmt::format("the block scalar \"{}\"", detail::shown(text));
        case ScalarStyle::plain:
            break;
    }
    return fmt::format("'{}'", detail::shown(text));
}

}  // namespace

std::span<const Key> keys() {
    return table();
}
std::span<const Section> sections() {
    return kSections;
}

const Key* find_key(std::string_view path) {
    for (const Key& k : table())
        if (k.path == path) return &k;
    return nullptr;
}

bool is_section(std::string_view path) {
    return std::any_of(std::begin(kSections), std::end(kSections),
                       [&](const Section& s) { return s.path == path; });
}

std::string_view parent_of(std::string_view path) {
    size_t dot = path.rfind('.');
    return dot == std::string_view::npos ? std::string_view{} : path.substr(0, dot);
}

std::string_view type_name(Type type) {
    switch (type) {
        case Type::integer:
            return "integer";
        case Type::unsigned_integer:
            return "integer";
        case Type::number:
            return "number";
        case Type::boolean:
            return "boolean";
        case Type::string:
            return "string";
        case Type::choice:
            return "choice";
    }
    return "?";
}

std::string allowed_text(const Key& key) {
    switch (key.type) {
        case Type::integer:
            return describe_ints(key.ints);
        case Type::unsigned_integer:
            return fmt::format("between 0 and {}", UINT64_MAX);
        case Type::number:
            return describe_nums(key.nums);
        case Type::boolean:
            return "true or false";
        case Type::string:
            return std::string(key.allowed_text);
        case Type::choice:
            return join_available(key.choices);
    }
    return {};
}

std::string expected_text(const Key& key) {
    switch (key.type) {
        case Type::integer:
        case Type::unsigned_integer:
            return "an integer " + allowed_text(key);
        case Type::number:
            return "a number " + allowed_text(key);
        case Type::boolean:
            return "true or false";
        case Type::string:
            return "a string of " + allowed_text(key);
        case Type::choice:
            return "one of: " + allowed_text(key);
    }
    return {};
}

std::string_view choice_name(std::span<const Choice> choices, int value) {
    for (const Choice& c : choices)
        if (c.value == value && value >= 0) return c.name;
    return {};
}

std::string value_text(const Key& key, const Value& value) {
    switch (key.type) {
        case Type::integer:
            return std::to_string(std::get<int64_t>(value));
        case Type::unsigned_integer:
            return std::to_string(std::get<uint64_t>(value));
        case Type::number: {
            // Shortest text that reads back to the same double; "1" is written "1.0".
            std::string s = format_number(std::get<double>(value));
            if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
            return s;
        }
        case Type::boolean:
            return std::get<bool>(value) ? "true" : "false";
        case Type::string:
            return std::get<std::string>(value);
        case Type::choice:
            return std::string(choice_name(key.choices, int(std::get<int64_t>(value))));
    }
    return {};
}

static std::string unavailable_message(const Key& key, const Choice& c) {
    if (!c.reason.empty()) return std::string(c.reason);
    return fmt::format("'{}' is not available yet in this version of moe-sim; available: {}",
                       c.name, join_available(key.choices));
}

std::string check_value(const Key& key, const Value& value, std::string_view given) {
    switch (key.type) {
        case Type::integer: {
            int64_t v = std::get<int64_t>(value);
            if (v < key.ints.min || v > key.ints.max)
                return fmt::format("must be {}, got {}", allowed_text(key), detail::shown(given));
            return {};
        }
        case Type::number:
            if (!nums_contain(key.nums, std::get<double>(value)))
                return fmt::format("must be {}, got {}", allowed_text(key), detail::shown(given));
            return {};
        case Type::string:
            if (key.string_ok && !key.string_ok(std::get<std::string>(value)))
                return fmt::format("must be {}, got '{}'", allowed_text(key), detail::shown(given));
            return {};
        case Type::choice: {
            int v = int(std::get<int64_t>(value));
            for (const Choice& c : key.choices) {
                if (c.value != v || v < 0) continue;
                return c.available ? std::string{} : unavailable_message(key, c);
            }
            return fmt::format("must be one of: {}, got the value {}", allowed_text(key), v);
        }
        case Type::unsigned_integer:
        case Type::boolean:
            return {};
    }
    return {};
}

bool parse_value(const Key& key, std::string_view text, ScalarStyle style, Value& out,
                 std::string& error) {
    const bool quoted = style != ScalarStyle::plain;  // a string, whatever its text
    auto type_error = [&] {
        error = fmt::format("expected {}, got {}", expected_text(key), got_text(text, style));
        // The spellings of YAML 1.2 that are refused for one spelling per value: say the one.
        if (quoted) return false;
        std::string_view unsigned_part = text.size() > 1 && text[0] == '+' && text[1] != '-'
                                             ? text.substr(1)
                                             : std::string_view{};
        bool is_int = key.type == Type::integer || key.type == Type::unsigned_integer;
        if (!unsigned_part.empty() &&
            (is_int ? int_syntax(unsigned_part)
                    : key.type == Type::number && number_syntax(unsigned_part)))
            error += fmt::format(" (write it without '+': {})", unsigned_part);
        if (key.type == Type::boolean && (lowered(text) == "true" || lowered(text) == "false"))
            error += fmt::format(" (lower case: {})", lowered(text));
        return false;
    };
    auto range_error = [&] {
        error = fmt::format("must be {}, got {}", allowed_text(key), detail::shown(text));
        return false;
    };
    // Text of the right syntax that the field's type cannot hold: said as such.
    auto unrepresentable = [&](std::string_view why) {
        error = fmt::format("must be {}, got {}, which is {}", allowed_text(key),
                            detail::shown(text), why);
        return false;
    };
    switch (key.type) {
        case Type::integer: {
            if (quoted || !int_syntax(text)) return type_error();
            std::string_view s = text;
            int64_t v = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (ec == std::errc::result_out_of_range)
                return unrepresentable(text[0] == '-' ? "too small for an integer (the smallest is "
                                                        "-9223372036854775808)"
                                                      : "too large for an integer (the largest is "
                                                        "9223372036854775807)");
            if (ec != std::errc{} || end != s.data() + s.size()) return range_error();
            out = v;
            break;
        }
        case Type::unsigned_integer: {
            if (quoted || !int_syntax(text)) return type_error();
            if (text[0] == '-') {
                // "-0" is zero; any other negative number is out of range.
                if (text.find_first_not_of("-0") != std::string_view::npos) return range_error();
                out = uint64_t{0};
                break;
            }
            std::string_view s = text;
            uint64_t v = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (ec == std::errc::result_out_of_range)
                return unrepresentable(
                    "too large for an integer (the largest is 18446744073709551615)");
            if (ec != std::errc{} || end != s.data() + s.size()) return range_error();
            out = v;
            break;
        }
        case Type::number: {
            if (quoted || !number_syntax(text)) return type_error();
            std::string_view s = text;
            double v = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (ec == std::errc::result_out_of_range)
                return unrepresentable(beyond_largest(text)
                                           ? "too large for a number (the largest is about 1.8e308)"
                                           : "too close to 0 for a number (the smallest above 0 is "
                                             "about 4.9e-324)");
            if (ec != std::errc{} || end != s.data() + s.size()) return range_error();
            out = v;
            break;
        }
        case Type::boolean:
            // true or false only: YAML 1.1's yes/no/on/off are refused, and so are YAML 1.2's
            // True/TRUE/False/FALSE (one spelling per value, as a choice key spells "true").
            if (quoted) return type_error();
            if (text == "true")
                out = true;
            else if (text == "false")
                out = false;
            else
                return type_error();
            break;
        case Type::string:
            out = std::string(text);
            break;
        case Type::choice: {
            for (const Choice& c : key.choices) {
                if (c.name != text) continue;
                if (!c.available) {
                    error = unavailable_message(key, c);
                    return false;
                }
                out = int64_t{c.value};
                return true;
            }
            std::vector<std::string_view> names;
            for (const Choice& c : key.choices)
                if (c.available) names.push_back(c.name);
            error =
                fmt::format("must be one of: {}, got '{}'", allowed_text(key), detail::shown(text));
            std::string_view guess = nearest(text, names);
            if (!guess.empty()) error += fmt::format(" (did you mean '{}'?)", guess);
            return false;
        }
    }
    error = check_value(key, out, text);
    return error.empty();
}

size_t edit_distance(std::string_view a, std::string_view b) {
    // Long strings are never "close" to a config name; do not spend quadratic time on them.
    if (a.size() > 64 || b.size() > 64) return std::max(a.size(), b.size());
    const size_t n = a.size(), m = b.size();
    std::vector<size_t> d((n + 1) * (m + 1));
    auto at = [&](size_t i, size_t j) -> size_t& { return d[i * (m + 1) + j]; };
    for (size_t i = 0; i <= n; ++i) at(i, 0) = i;
    for (size_t j = 0; j <= m; ++j) at(0, j) = j;
    for (size_t i = 1; i <= n; ++i) {
        for (size_t j = 1; j <= m; ++j) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                best = std::min(best, at(i - 2, j - 2) + 1);
            at(i, j) = best;
        }
    }
    return at(n, m);
}

std::string_view nearest(std::string_view given, std::span<const std::string_view> candidates) {
    std::string g = lowered(given);
    std::string_view best;
    size_t best_d = max_distance(given.size()) + 1;
    for (std::string_view c : candidates) {
        size_t d = edit_distance(g, lowered(c));
        if (d < best_d && (d < given.size() || d == 0)) best = c, best_d = d;
    }
    return best;
}

std::string_view suggest_key(std::string_view path) {
    std::vector<std::string_view> all;
    for (const Key& k : table()) all.push_back(k.path);
    for (const Section& s : kSections) all.push_back(s.path);

    // The same name in another section: "router.count" -> "experts.count", "lr" -> "train.lr".
    std::string leaf = lowered(last_component(path));
    for (std::string_view c : all)
        if (lowered(last_component(c)) == leaf && c != path) return c;

    // The nearest full path, judged by how long the mistyped last component is.
    std::string p = lowered(path);
    size_t typed = last_component(path).size();
    std::string_view best;
    size_t best_d = max_distance(typed) + 1;
    for (std::string_view c : all) {
        size_t d = edit_distance(p, lowered(c));
        if (d < best_d && d < typed) best = c, best_d = d;
    }
    return best;
}

std::vector<std::string_view> children_of(std::string_view section) {
    std::vector<std::string_view> out;
    for (const Key& k : table()) {
        std::string_view rest;
        if (section.empty())
            rest = k.path;
        else if (k.path.size() > section.size() && k.path.substr(0, section.size()) == section &&
                 k.path[section.size()] == '.')
            rest = k.path.substr(section.size() + 1);
        else
            continue;
        std::string_view child = rest.substr(0, rest.find('.'));
        if (std::find(out.begin(), out.end(), child) == out.end()) out.push_back(child);
    }
    return out;
}

std::string unknown_key_message(std::string_view path) {
    std::string_view guess = suggest_key(path);
    if (!guess.empty()) return fmt::format("unknown key (did you mean '{}'?)", guess);
    std::string_view parent = parent_of(path);
    if (!parent.empty() && !is_section(parent)) return "unknown key";
    std::string names;
    for (std::string_view c : children_of(parent))
        names += (names.empty() ? "" : ", ") + std::string(c);
    return fmt::format("unknown key ({} has: {})", parent.empty() ? "the top level" : parent,
                       names);
}

}  // namespace moe::schema

namespace moe {

namespace {
template <class E>
std::string_view enum_name(std::span<const schema::Choice> choices, E v) {
    return schema::choice_name(choices, int(v));
}
}  // namespace

std::string_view to_string(Device v) {
    return enum_name(schema::kDevice, v);
}
std::string_view to_string(TaskKind v) {
    return enum_name(schema::task_choices(), v);
}
std::string_view to_string(Teacher v) {
    return enum_name(schema::kTeacher, v);
}
std::string_view to_string(Activation v) {
    return enum_name(schema::kActivation, v);
}
std::string_view to_string(RouterType v) {
    return enum_name(schema::router_choices(), v);
}
std::string_view to_string(Normalize v) {
    return enum_name(schema::kNormalize, v);
}
std::string_view to_string(ScoreFn v) {
    return enum_name(schema::kScore, v);
}
std::string_view to_string(DropPolicy v) {
    return enum_name(schema::kDrop, v);
}
std::string_view to_string(BalanceLoss v) {
    return enum_name(schema::balance_choices(), v);
}
std::string_view to_string(OptimizerKind v) {
    return enum_name(schema::kOptimizer, v);
}
std::string_view to_string(Schedule v) {
    return enum_name(schema::kSchedule, v);
}

std::optional<std::vector<ModularOp>> modular_ops_parse(std::string_view text) {
    constexpr ModularOp kAll[] = {ModularOp::add, ModularOp::sub, ModularOp::mul, ModularOp::div};
    std::vector<ModularOp> out;
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        const std::string_view word = text.substr(
            start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        bool found = false;
        for (ModularOp op : kAll)
            if (word == to_string(op)) {
                if (std::find(out.begin(), out.end(), op) != out.end()) return std::nullopt;
                out.push_back(op);
                found = true;
            }
        if (!found) return std::nullopt;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return out;
}

std::string_view to_string(ModularOp op) {
    switch (op) {
        case ModularOp::add:
            return "add";
        case ModularOp::sub:
            return "sub";
        case ModularOp::mul:
            return "mul";
        case ModularOp::div:
            return "div";
    }
    return "?";
}

std::vector<std::string> config_keys() {
    std::vector<std::string> out;
    for (const schema::Key& k : schema::keys()) out.emplace_back(k.path);
    return out;
}

}  // namespace moe
