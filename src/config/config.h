// The validated configuration: plain data, no yaml-cpp (DESIGN.md). Every key, its default, its
// range and its one line of documentation are declared once, in config/schema.cpp; the defaults
// written here must match that table (a test checks that a default-constructed Config equals the
// config loaded from an empty mapping).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

enum class Device { cpu, cuda };
enum class TaskKind { clusters, markov, modular, patch_clusters };
enum class Teacher { linear, mlp };
enum class Activation { relu, gelu, swiglu };
// model.kind: the residual MLP over one example per token (every task), or the causal transformer
// over whole sequences (token tasks: markov, modular).
enum class ModelKind { residual, transformer, moe_only };  // model.kind
enum class RouterType {
    topk,
    expert_choice,
    soft,
    soft_slots,
    hash,
    random,
    sinkhorn,
    base,
    hierarchical
};
enum class SecondExpert { always, random };  // router.topk.second_expert
enum class Normalize { auto_k, yes, no };    // config spelling: auto | true | false
enum class ScoreFn { softmax, sigmoid };
enum class TopkNoise { fixed, learned };       // router.topk.noise
enum class GateLogits { noisy, clean };        // router.topk.gate_logits: what the gates read
enum class RouterHeadKind { linear, cosine };  // router.head: how the router logits are made
enum class RouterInit { normal, zero };        // router.init: the router weights at step 0
enum class NoiseKind { gaussian, uniform };    // router.noise_kind: the fixed gating noise
enum class DropPolicy { position, score, random, priority };
// config spelling: none | switch | gshard | shazeer
enum class BalanceLoss { none, switch_loss, shazeer, gshard, sequence };
enum class BiasRule { sign, proportional, mean_centred };  // balance.bias_rule
enum class BiasDecay { constant, cosine };                 // balance.bias_decay
enum class SharedGate { none, sigmoid };                   // experts.shared_gate
enum class OptimizerKind { sgd, adam, adamw, ngd };
// train.router_optimizer: same = train.optimizer
enum class RouterOptimizer { same, sgd, adam, adamw, ngd };
enum class Schedule { constant, cosine };
enum class ExpertKind { ffn, patch };          // experts.kind
enum class PatchActivation { cubic, linear };  // experts.patch.activation

struct ClustersConfig {
    int dim = 32;            // input dimension
    int num_clusters = 16;   // mixture components = ground-truth groups
    int num_classes = 8;     // labels
    double spread = 0.35;    // within-cluster std relative to the centres' std (1.0)
    double imbalance = 0.0;  // Zipf exponent of cluster frequencies (0 = uniform)
    Teacher teacher = Teacher::mlp;
    double label_noise = 0.0;  // probability that a label is replaced by a uniform random class

    bool operator==(const ClustersConfig&) const = default;
};

// The markov task's keys (data.markov.*): random sparse Markov chains, one per domain.
struct MarkovConfig {
    int domains = 4;             // chains = ground-truth groups
    int vocab = 32;              // tokens of the shared vocabulary
    int order = 1;               // tokens a transition depends on (1 or 2)
    int branching = 4;           // successors of each token in a domain's chain
    double concentration = 1.0;  // Dirichlet parameter of each row's successor weights
    double imbalance = 0.0;      // Zipf exponent of domain frequencies (0 = uniform)
    int seq_len = 32;            // tokens per sequence
    int context = 8;             // window of previous tokens the model sees

    bool operator==(const MarkovConfig&) const = default;
};

enum class ModularOp { add, sub, mul, div };
// data.modular.ops parsed: the operations in the order written; nullopt unless it is a
// comma-separated list (no spaces) of distinct names among add, sub, mul, div (config/schema.cpp).
std::optional<std::vector<ModularOp>> modular_ops_parse(std::string_view text);
std::string_view to_string(ModularOp op);

// The modular task's keys (data.modular.*): a OP b = c (mod p).
struct ModularConfig {
    int p = 97;                   // the modulus
    std::string ops = "add";      // comma-separated operations: add, sub, mul, div
    double train_fraction = 0.5;  // share of the (op, a, b) triples in the training set

    bool operator==(const ModularConfig&) const = default;
};

// The patch_clusters task's keys (data.patch_clusters.*): Chen et al. 2022, Definition 3.1.
struct PatchClustersConfig {
    int num_clusters = 4;    // K: clusters (the ground-truth groups)
    int patches = 4;         // P: patches per example
    int dim = 50;            // d: dimension of a patch; input = P * d
    double gamma_max = 3.0;  // feature-noise amplitude gamma ~ U(0.5, gamma_max)
    double sigma_p = 1.0;    // Gaussian noise patches ~ N(0, sigma_p^2 / d I)
    double scale = 10.0;     // the whole input is multiplied by this

    bool operator==(const PatchClustersConfig&) const = default;
};

struct DataConfig {
    TaskKind task = TaskKind::clusters;
    int64_t train_size = 65536;  // 0 = fresh samples every step
    int64_t eval_size = 4096;
    ClustersConfig clusters;
    MarkovConfig markov;
    ModularConfig modular;
    PatchClustersConfig patch_clusters;

    bool operator==(const DataConfig&) const = default;
};

// The sequences the transformer (model.kind: transformer) reads from a token task: S positions
// per sequence (row t of a batch is position t % S of sequence t / S; position i's input is
// token i, its target token i + 1), and the positions i >= first_trained whose target the loss
// and the accuracy count. markov: S = seq_len - 1, every position trained; modular: the sequence
// "a OP b =" (S = 4), only the last position's target, the answer c, is trained.
struct SequenceShape {
    int positions = 1;
    int first_trained = 0;
    int trained() const { return positions - first_trained; }  // trained positions per sequence
};
inline SequenceShape sequence_shape(const DataConfig& d) {
    if (d.task == TaskKind::modular) return {4, 3};
    return {d.markov.seq_len - 1, 0};
}

struct ModelConfig {
    // residual: embedding, residual blocks, norm and head; transformer: token and position
    // embeddings, attention and FFN/MoE blocks (markov, modular); moe_only: logits = one MoE layer on the
    // raw input (Chen et al. 2022; needs experts.kind: patch)
    ModelKind kind = ModelKind::residual;
    int d_model = 64;
    int layers = 2;
    int moe_every = 1;
    int heads = 4;                // transformer: attention heads (d_model % heads == 0)
    bool tie_embeddings = false;  // transformer: the LM head is the token embedding's transpose
    // The loss's cross-entropy reads softmax(logits) instead of the logits: a softmax applied twice,
    // as the official code of Chen et al. 2022 does (docs/chen2022.md)
    bool output_softmax = false;

    bool operator==(const ModelConfig&) const = default;
};

// The patch experts' keys (experts.patch.*; Chen et al. 2022's two-layer CNN).
struct PatchExpertConfig {
    PatchActivation activation = PatchActivation::cubic;  // sigma(z) = z^3 or z
    int channels = 8;                                     // J: channels per class (2J in all)
    double init_scale = 0.001;  // the default init's std is multiplied by this

    bool operator==(const PatchExpertConfig&) const = default;
};

struct ExpertsConfig {
    ExpertKind kind = ExpertKind::ffn;  // ffn: act(x W1 + b1) W2 + b2; patch: the patch CNN
    int count = 16;
    int d_ff = 128;
    Activation activation = Activation::gelu;
    int shared = 0;
    SharedGate shared_gate = SharedGate::none;  // sigmoid: the shared output times sigmoid(x.w_g)
    PatchExpertConfig patch;

    bool operator==(const ExpertsConfig&) const = default;
};

// The cosine router head's keys (router.cosine.*; X-MoE, Chi et al. 2022).
struct CosineHeadConfig {
    int dim = 16;               // d_low: the projection's and the expert embeddings' dimension
    double temperature = 0.07;  // the initial temperature tau (learned from there)

    bool operator==(const CosineHeadConfig&) const = default;
};

// The top-k router's own keys (router.topk.*).
struct TopkConfig {
    SecondExpert second_expert = SecondExpert::always;  // k = 2: GShard's random 2nd expert
    int groups = 1;       // expert groups of group-limited routing (DeepSeek-V3); 1 = off
    int topk_groups = 1;  // the groups a token may choose its experts from
    // fixed: router.noise is the std of the gating noise; learned: Shazeer et al. 2017's noise
    // projection, std = softplus(x Wnoise) per token and expert (the router asks for 2N logits)
    TopkNoise noise = TopkNoise::fixed;
    // noisy: the gates are the scores of the noisy logits (those the selection reads); clean:
    // the scores of the logits before the gating noise, at the experts the noisy ones selected
    // (Chen et al. 2022's gate softmax(h) with selection by h + r)
    GateLogits gate_logits = GateLogits::noisy;

    bool operator==(const TopkConfig&) const = default;
};

// The hash router's own keys (router.hash.*).
struct HashConfig {
    int bits = 10;  // clusters task: hyperplanes of the locality-sensitive hash, per hash

    bool operator==(const HashConfig&) const = default;
};

// The Sinkhorn router's own keys (router.sinkhorn.*).
struct SinkhornConfig {
    int iterations = 8;  // Sinkhorn-Knopp iterations (one row + one column scaling each)

    bool operator==(const SinkhornConfig&) const = default;
};

// The hierarchical router's own keys (router.hierarchical.*).
struct HierarchicalConfig {
    int branches = 4;    // B groups of N / B experts
    int k_branches = 1;  // branches a token picks

    bool operator==(const HierarchicalConfig&) const = default;
};

// Soft MoE's own keys (router.soft_slots.*).
struct SoftSlotsConfig {
    int slots = 1;  // S: slots per expert (Puigcerver et al. 2023's p)

    bool operator==(const SoftSlotsConfig&) const = default;
};

struct RouterConfig {
    RouterType type = RouterType::topk;
    int k = 2;
    ScoreFn score = ScoreFn::softmax;
    Normalize normalize = Normalize::auto_k;  // auto: true for k >= 2, false for k = 1
    double noise = 0.0;
    double scale = 1.0;   // multiplies the routed gates (DeepSeek-V3's routed scaling factor)
    double jitter = 0.0;  // training: the router's input is x * u, u ~ U(1 - jitter, 1 + jitter)
    RouterHeadKind head = RouterHeadKind::linear;
    RouterInit init = RouterInit::normal;
    NoiseKind noise_kind = NoiseKind::gaussian;  // uniform: router.noise * U[0, 1) (Chen et al.)
    // the linear head's weight is one (d, L) map shared by the P patches of the input:
    // logits = sum_p x_p Wr (Chen et al. 2022's h_m(x) = sum_p <theta_m, x_p>)
    bool patch_tied = false;
    CosineHeadConfig cosine;
    TopkConfig topk;
    HashConfig hash;
    SinkhornConfig sinkhorn;
    HierarchicalConfig hierarchical;
    SoftSlotsConfig soft_slots;

    bool operator==(const RouterConfig&) const = default;
};

// Whether the k selected gate weights are renormalised to sum to 1 (router.normalize resolved).
inline bool gates_normalized(const RouterConfig& r) {
    return r.normalize == Normalize::yes || (r.normalize == Normalize::auto_k && r.k >= 2);
}

struct CapacityConfig {
    double factor = 1.25;  // 0 = dropless
    DropPolicy drop_policy = DropPolicy::position;
    int min = 0;               // C = max(C, min) when factor > 0
    double eval_factor = 0.0;  // 0 = same as factor

    bool operator==(const CapacityConfig&) const = default;
};

// balance.losses.<name>: auxiliary losses added to balance.loss, each with its own coefficient
// (0 = off).
struct BalanceLossesConfig {
    double switch_loss = 0.0;  // balance.losses.switch
    double gshard = 0.0;
    double shazeer = 0.0;

    bool operator==(const BalanceLossesConfig&) const = default;
};

struct BalanceConfig {
    BalanceLoss loss = BalanceLoss::switch_loss;
    double alpha = 0.01;
    BalanceLossesConfig losses;
    double z_loss = 0.0;
    double bias_rate = 0.0;
    BiasRule bias_rule = BiasRule::sign;
    int64_t bias_warmup = 0;  // steps of linear warmup of the bias rate
    BiasDecay bias_decay = BiasDecay::constant;

    bool operator==(const BalanceConfig&) const = default;
};

// train.early_stop: end a run early on its training loss (each step's, before its update).
struct EarlyStopConfig {
    double loss_rise = 0.0;   // stop when the loss exceeds its running minimum by more; 0 = off
    double loss_floor = 0.0;  // stop when the loss is at or below this; 0 = off
    int64_t after_step = 0;   // the rules are checked only at steps after this one

    bool on() const { return loss_rise > 0.0 || loss_floor > 0.0; }
    bool operator==(const EarlyStopConfig&) const = default;
};

struct TrainConfig {
    int64_t steps = 2000;
    int batch_size = 256;
    OptimizerKind optimizer = OptimizerKind::adam;
    double lr = 0.001;
    double router_lr = 0.0;  // the router group's lr (peak); 0 = train.lr
    RouterOptimizer router_optimizer = RouterOptimizer::same;
    double weight_decay = 0.01;  // decoupled weight decay, adamw only
    double beta1 = 0.9;
    double beta2 = 0.999;
    double momentum = 0.0;   // sgd only
    double grad_clip = 1.0;  // global norm; 0 = off
    int64_t warmup_steps = 0;
    Schedule schedule = Schedule::constant;
    double min_lr = 0.0;  // cosine floor
    int64_t log_every = 10;
    int64_t eval_every = 200;
    int64_t checkpoint_every = -1;  // -1: at every evaluation; 0: never
    EarlyStopConfig early_stop;

    bool operator==(const TrainConfig&) const = default;
};

struct Config {
    std::string name = "quickstart";
    uint64_t seed = 1;
    Device device = Device::cpu;
    int threads = 0;  // 0 = all cores
    DataConfig data;
    ModelConfig model;
    ExpertsConfig experts;
    RouterConfig router;
    CapacityConfig capacity;
    BalanceConfig balance;
    TrainConfig train;

    bool operator==(const Config&) const = default;
};

}  // namespace moe
