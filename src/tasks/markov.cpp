// The `markov` task: a toy language of `domains` random sparse Markov chains of order k = order
// (1 or 2) over a shared vocabulary of V = vocab tokens; each sequence comes from one domain.
//
// Exactly how the data is generated (D = domains, V = vocab, b = branching, L = seq_len,
// C = context; all draws from the counter-based Rng of backend/rng.h). A context is the last k
// tokens, numbered v (k = 1) or u * V + v (k = 2, u the older one).
//
// Hidden parameters, once, from stream kStreamTask (step = what is drawn), row r = d * V^k + context:
//   * domain frequencies  p(d) = (d + 1)^-imbalance / sum_d' (d' + 1)^-imbalance (domain 0 is the
//     most frequent);
//   * successors of a context in domain d: b distinct tokens by Floyd's sampling, draw j of row r is
//     uniform_int(index = r << 32 | j), step 11; kept in ascending order;
//   * their weights: Dirichlet(concentration, ..., concentration), as normalised Gamma draws
//     (Marsaglia and Tsang 2000; for a shape a < 1, Gamma(a + 1) * U^(1/a), in logs), step 12,
//     index r << 32 | j, attempt m of the rejection loop on lanes 2m (normal) and 2m + 1 (uniform),
//     the U of a < 1 on lane 2^31.
// The first k tokens of every sequence are uniform over the vocabulary, in every domain.
//
// Sequence n of a data stream (train: kStreamData, eval: kStreamEval; step 0):
//   lane 0:       u ~ U(0,1); domain d = the first d with u < cdf(d)
//   lane 1 + t:   token t < k: uniform_int(V); token t >= k: u ~ U(0,1) picks among the successors
//                 of the context of tokens t-k .. t-1 by their cumulative weights
// Examples: each sequence gives the L - 1 examples of positions t = 1 .. L-1; example number q of a
// stream is position t = 1 + q % (L-1) of sequence q / (L-1). Its input is the window of tokens
// t-C .. t-1 as C one-hot slots of V values (slot j = position t - C + j, oldest first; a slot
// before position 0 is all zeros), its label token t, its group the domain, its token (for
// token-id routers) token t-1, its position t. So input_dim = C * V, and the model's input projection is a learned
// token-and-position embedding sum.
// Training batches: the batch of step s is examples s*B .. s*B + B-1 of kStreamData (B =
// train.batch_size examples = tokens per step, whole sequences' positions in order, a sequence may
// straddle two steps). With data.train_size = N > 0 the sequence number is taken mod N (a fixed
// training set of N sequences, read in order, over and over); N = 0: fresh sequences. The eval set
// is examples 0 .. eval_size-1 of kStreamEval.
//
// The ideal loss: the cross-entropy on the eval set of the Bayes-optimal predictor that sees what
// the model sees, the window (C >= k, a config rule). A window with padding reveals its position
// t (< C) and starts at position 0; a full window may sit at any t in C .. L-1 (all equally
// likely). So
//   P(window | d) = A_d(first k tokens) * prod_{j >= k} T_d(context before x_j -> x_j)
// with A_d = 1/V^k for a padded window (its first k tokens are uniform; fewer when it holds fewer)
// and A_d(c) = sum_{s=0}^{L-1-C} P(x_s .. x_{s+k-1} = c | d) for a full one (the uniform start
// propagated through T_d), then the posterior w_d ~ p(d) P(window | d) and the prediction
// P(y | window) = sum_d w_d T_d(last context -> y), or 1/V when y is one of the first k tokens.
// When C = L - 1 every window is padded but the last, and this is the ideal loss of the full
// prefix.
// With model.kind: transformer the model sees the whole prefix, and the ideal loss is that of
// the prefix (prefix_probability): w_d ~ p(d) prod_{k <= j < t} T_d(context before x_j -> x_j),
// in logs, and P(y | prefix) = sum_d w_d T_d(last context -> y), or 1/V for t < k. The
// transformer reads the same examples in sequence form: example q is position t - 1 = q % (L-1)
// of sequence q / (L-1), its token (the model's input) x_{t-1}, its label x_t.
#include "tasks/markov.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "backend/check.h"
#include "backend/rng.h"
#include "tasks/setup_interrupt.h"

namespace moe {

namespace {

constexpr uint64_t kParamSuccessors = 11, kParamWeights = 12;
constexpr uint32_t kLaneGammaPower = 1u << 31;

// log of a Gamma(a, 1) draw for item `index` of rng r.
double log_gamma_draw(const Rng& r, uint64_t index, double a) {
    const double shape = a < 1.0 ? a + 1.0 : a;
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    double log_g = 0.0;
    for (uint32_t m = 0;; ++m) {
        const double x = r.normal_double(index, 2 * m);
        const double v = 1.0 + c * x;
        if (v <= 0.0) continue;
        const double v3 = v * v * v;
        const double u = r.uniform_double(index, 2 * m + 1);
        if (std::log(u) < 0.5 * x * x + d - d * v3 + d * std::log(v3)) {
            log_g = std::log(d * v3);
            break;
        }
    }
    if (a < 1.0) log_g += std::log(r.uniform_double(index, kLaneGammaPower)) / a;
    return log_g;
}

}  // namespace

MarkovTask::MarkovTask(const MarkovConfig& mc, int64_t train_size, int64_t eval_size, uint64_t seed,
                       bool prefix)
    : mc_(mc), train_size_(train_size), seed_(seed) {
    MOESIM_CHECK(mc.domains > 0 && mc.vocab > 1 && mc.branching > 0 && mc.branching <= mc.vocab &&
                     mc.seq_len > 1 && mc.context > 0 && mc.context < mc.seq_len,
                 "markov sizes (config rules)");
    MOESIM_CHECK(train_size >= 0 && eval_size >= 0 && eval_size <= INT_MAX,
                 "data.train_size and data.eval_size within the schema's range");
    MOESIM_CHECK(mc.order >= 1 && mc.order <= 2 && mc.context >= mc.order, "markov order");
    const int D = mc_.domains, V = mc_.vocab, b = mc_.branching;
    contexts_ = mc_.order == 1 ? V : V * V;

    prob_.resize(size_t(D));
    cdf_.resize(size_t(D));
    double total = 0.0;
    for (int d = 0; d < D; ++d) total += prob_[size_t(d)] = std::pow(d + 1.0, -mc_.imbalance);
    double acc = 0.0;
    for (int d = 0; d < D; ++d) {
        prob_[size_t(d)] /= total;
        acc += prob_[size_t(d)];
        cdf_[size_t(d)] = acc;
    }
    cdf_.back() = 1.0;

    const size_t rows = size_t(D) * size_t(contexts_);
    succ_.resize(rows * size_t(b));
    weight_.resize(rows * size_t(b));
    const Rng succ_rng{seed_, kStreamTask, kParamSuccessors};
    const Rng weight_rng{seed_, kStreamTask, kParamWeights};
    for (size_t r = 0; r < rows; ++r) {
        if (r % 4096 == 0) throw_if_setup_stopped();
        int* s = succ_.data() + r * size_t(b);
        // Floyd: for j = V-b .. V-1, draw t in [0, j]; take t, or j if t is taken already.
        for (int i = 0; i < b; ++i) {
            const int j = V - b + i;
            const int t =
                int(succ_rng.uniform_int((uint64_t(r) << 32) | uint64_t(i), uint64_t(j) + 1));
            s[i] = std::find(s, s + i, t) != s + i ? j : t;
        }
        std::sort(s, s + b);
        double* w = weight_.data() + r * size_t(b);
        double top = -HUGE_VAL;
        for (int i = 0; i < b; ++i) {
            w[i] = log_gamma_draw(weight_rng, (uint64_t(r) << 32) | uint64_t(i), mc_.concentration);
            top = std::max(top, w[i]);
        }
        double sum = 0.0;
        for (int i = 0; i < b; ++i) sum += w[i] = std::exp(w[i] - top);
        for (int i = 0; i < b; ++i) w[i] /= sum;
    }

    // A_d(c) of a full window: the marginals of the context at positions 0 .. L-1-C, summed.
    start_sum_.assign(rows, 0.0);
    const int K = contexts_;
    std::vector<double> marg(static_cast<size_t>(K)), next(static_cast<size_t>(K));
    for (int d = 0; d < D; ++d) {
        throw_if_setup_stopped();
        std::fill(marg.begin(), marg.end(), 1.0 / K);
        for (int s = 0; s <= mc_.seq_len - 1 - mc_.context; ++s) {
            for (int c = 0; c < K; ++c) start_sum_[row(d, c)] += marg[size_t(c)];
            std::fill(next.begin(), next.end(), 0.0);
            for (int c = 0; c < K; ++c) {
                const int* sc = successors(d, c);
                const double* wc = weight_.data() + row(d, c) * size_t(b);
                // the next context: the context's newest order-1 tokens, then the successor
                const int shifted = (c * V) % K;
                for (int i = 0; i < b; ++i)
                    next[size_t(shifted + sc[i])] += marg[size_t(c)] * wc[i];
            }
            marg.swap(next);
        }
    }

    const int E = int(eval_size), C = mc_.context;
    eval_.resize_tokens(E, input_dim());
    std::vector<double> nll(static_cast<size_t>(E));
    constexpr int kChunk = 4096;
    for (int first = 0; first < E; first += kChunk) {
        throw_if_setup_stopped();
        const int n = std::min(kChunk, E - first);
#pragma omp parallel for schedule(static)
        for (int i = first; i < first + n; ++i) {
            generate(kStreamEval, uint64_t(i), 0, eval_, i);
            if (prefix) {
                static thread_local std::vector<int> seq;
                const int L = mc_.seq_len, t = 1 + i % (L - 1);
                seq.resize(size_t(L));
                sequence(kStreamEval, uint64_t(i / (L - 1)), t, seq.data());
                nll[size_t(i)] = -std::log(prefix_probability(seq.data(), t, eval_.y[size_t(i)]));
                continue;
            }
            static thread_local std::vector<int> window;
            window.resize(size_t(C));
            const float* x = eval_.row(i);
            for (int j = 0; j < C; ++j) {
                window[size_t(j)] = -1;
                for (int v = 0; v < V; ++v)
                    if (x[size_t(j) * size_t(V) + size_t(v)] != 0.0f) window[size_t(j)] = v;
            }
            nll[size_t(i)] = -std::log(ideal_probability(window.data(), eval_.y[size_t(i)]));
        }
    }
    double sum = 0.0, sumsq = 0.0;
    for (double v : nll) sum += v;
    ideal_loss_ = E > 0 ? sum / E : 0.0;
    for (double v : nll) sumsq += (v - ideal_loss_) * (v - ideal_loss_);
    ideal_stderr_ = E > 1 ? std::sqrt(sumsq / (E - 1) / E) : 0.0;
}

const int* MarkovTask::successors(int d, int from) const {
    return succ_.data() + row(d, from) * size_t(mc_.branching);
}

double MarkovTask::transition(int d, int from, int to) const {
    const int* s = successors(d, from);
    const int* it = std::lower_bound(s, s + mc_.branching, to);
    if (it == s + mc_.branching || *it != to) return 0.0;
    return weight_[row(d, from) * size_t(mc_.branching) + size_t(it - s)];
}

int MarkovTask::sequence(uint64_t stream, uint64_t n, int len, int* tokens) const {
    const Rng r{seed_, stream, 0};
    const double u = r.uniform_double(n, 0);
    int d = int(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    d = std::min(d, mc_.domains - 1);
    const int b = mc_.branching, k = mc_.order;
    for (int t = 0; t < std::min(len, k); ++t)
        tokens[t] = int(r.uniform_int(n, uint64_t(mc_.vocab), uint32_t(1 + t)));
    for (int t = k; t < len; ++t) {
        const size_t base = row(d, context_of(tokens + t - k)) * size_t(b);
        const double v = r.uniform_double(n, uint32_t(1 + t));
        double acc = 0.0;
        int pick = b - 1;  // rounding: the last successor takes what is left
        for (int i = 0; i < b; ++i) {
            acc += weight_[base + size_t(i)];
            if (v < acc) {
                pick = i;
                break;
            }
        }
        tokens[t] = succ_[base + size_t(pick)];
    }
    return d;
}

double MarkovTask::ideal_probability(const int* window, int y) const {
    const int D = mc_.domains, C = mc_.context, V = mc_.vocab, k = mc_.order;
    int first = 0;
    while (first < C && window[first] < 0) ++first;
    MOESIM_CHECK(first < C, "a window holds at least one token");
    // y is one of the first k tokens of its sequence: uniform whatever the domain
    if (first > 0 && C - first < k) return 1.0 / V;
    double num = 0.0, den = 0.0;
    for (int d = 0; d < D; ++d) {
        double w = prob_[size_t(d)] *
                   (first > 0 ? std::pow(1.0 / V, k) : start_sum_[row(d, context_of(window))]);
        for (int j = first + k; j < C && w > 0.0; ++j)
            w *= transition(d, context_of(window + j - k), window[j]);
        den += w;
        num += w * transition(d, context_of(window + C - k), y);
    }
    MOESIM_CHECK(den > 0.0, "the window can occur");
    return num / den;
}

double MarkovTask::prefix_probability(const int* prefix, int t, int y) const {
    const int D = mc_.domains, k = mc_.order;
    MOESIM_CHECK(t >= 1 && t < mc_.seq_len, "a position after the first");
    if (t < k) return 1.0 / mc_.vocab;  // one of the first k tokens: uniform in every domain
    // log p(d) + log P(tokens k .. t-1 | the first k, d); the uniform start is common to all d
    static thread_local std::vector<double> lw;
    lw.assign(size_t(D), 0.0);
    double top = -HUGE_VAL;
    for (int d = 0; d < D; ++d) {
        double w = std::log(prob_[size_t(d)]);
        for (int j = k; j < t && w > -HUGE_VAL; ++j)
            w += std::log(transition(d, context_of(prefix + j - k), prefix[j]));
        lw[size_t(d)] = w;
        top = std::max(top, w);
    }
    MOESIM_CHECK(top > -HUGE_VAL, "the prefix can occur");
    double num = 0.0, den = 0.0;
    for (int d = 0; d < D; ++d) {
        const double w = std::exp(lw[size_t(d)] - top);
        den += w;
        num += w * transition(d, context_of(prefix + t - k), y);
    }
    return num / den;
}

void MarkovTask::generate(uint64_t stream, uint64_t q, uint64_t n_seq, Batch& out, int i) const {
    const int L = mc_.seq_len, C = mc_.context, V = mc_.vocab;
    uint64_t n = q / uint64_t(L - 1);
    if (n_seq > 0) n %= n_seq;
    const int t = 1 + int(q % uint64_t(L - 1));
    static thread_local std::vector<int> tokens;
    tokens.resize(size_t(L));
    const int d = sequence(stream, n, t + 1, tokens.data());
    float* x = out.x.data() + size_t(i) * size_t(C) * size_t(V);
    std::fill(x, x + size_t(C) * size_t(V), 0.0f);
    for (int j = 0; j < C; ++j) {
        const int pos = t - C + j;
        if (pos >= 0) x[size_t(j) * size_t(V) + size_t(tokens[size_t(pos)])] = 1.0f;
    }
    out.y[size_t(i)] = tokens[size_t(t)];
    out.group[size_t(i)] = d;
    out.token[size_t(i)] = tokens[size_t(t - 1)];
    out.sequence[size_t(i)] = int64_t(q / uint64_t(L - 1));  // before the train set's wrap
    out.position[size_t(i)] = t;
}

void MarkovTask::train_batch(int64_t step, int batch_size, Batch& out) const {
    MOESIM_CHECK(step >= 0 && batch_size >= 0, "step and batch size are not negative");
    out.resize_tokens(batch_size, input_dim());
    const uint64_t first = uint64_t(step) * uint64_t(batch_size);
#pragma omp parallel for schedule(static) if (batch_size >= 1024)
    for (int i = 0; i < batch_size; ++i)
        generate(kStreamData, first + uint64_t(i), uint64_t(train_size_), out, i);
}

}  // namespace moe
