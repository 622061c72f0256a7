// Token-choice top-k routing (Shazeer et al. 2017; Switch: Fedus et al. 2021 with k = 1;
// GShard / Mixtral with k = 2; DeepSeek-V3 with sigmoid scores and a balancing bias).
//
//   noisy[t,i] = logit[t,i] + noise * eps[t,i]      (training only; eps ~ N(0,1), counter-based)
//              = logit[t,i] + noise * u[t,i]        router.noise_kind: uniform, u ~ U[0, 1)
//                (Chen et al. 2022's r ~ U[0,1)^M with router.noise its scale; training only,
//                u keyed like eps: (seed, kStreamNoise, noise_key, t * N + i))
//              = logit[t,i] + softplus(nlogit[t,i]) * eps[t,i]     router.topk.noise: learned
//                (Shazeer et al. 2017 eq. 4: the router asks for 2N logits per token, the
//                clean logits then the noise logits nlogit; training only, eps keyed as above)
//   s[t,i]     = softmax_i(noisy[t])                 score = softmax
//              = sigmoid(noisy[t,i])                 score = sigmoid (raw, as in DeepSeek-V3)
//   p[t,i]     = s[t,i] / sum_j s[t,j]               (= s for softmax): aux losses, statistics
//   S[t]       = top-k of s[t,i] + b[i]              (ties: the lower expert index wins)
//   g[t,i]     = scale * s[t,i] / sum_{j in S[t]} s[t,j]   normalize (router.normalize
//                resolved), else scale * s[t,i]      (scale = router.scale, DeepSeek-V3's
//                                                    routed scaling factor; default 1)
//
// Clean gates (router.topk.gate_logits: clean; Chen et al. 2022, the gate softmax(h) of the
// clean logits h at the expert that h + r selected): in a training pass with fixed gating noise,
//   q[t,i]     = softmax_i(logit[t])  or  sigmoid(logit[t,i])   (the scores without the noise)
//   g[t,i]     = scale * q[t,i] / sum_{j in S[t]} q[t,j]  or  scale * q[t,i]   (as above)
// while S[t] and p still come from the noisy logits. Backward: the gates' gradient goes through
// q into the logits, the aux losses' through p (d logit = d noisy + the gates' d q-logit).
// Evaluation has no noise, so q = s there and the gates are the usual ones.
//
// Group-limited selection (router.topk.groups = G > 1, router.topk.topk_groups = M; DeepSeek-V3
// §2.1.2 node-limited routing, after DeepSeek-V2's device-limited routing): the N experts form G
// groups of N/G consecutive experts; a group's score is the sum of the top-2 values of s + b
// among its experts (its single value when a group has one expert). This is DeepSeek-V3's rule,
// "the sum of the highest K_r/M affinity scores" of a node with K_r = 8 experts over M = 4 nodes,
// fixed at 2 as in its released inference code; V2 used the maximum. The M groups of highest
// score are kept (ties: the lower group index) and S[t] is the top-k within them.
//
// GShard's random second expert (router.topk.second_expert: random, k = 2; Lepikhin et al. 2020,
// §2.2 "Random routing" and Algorithm 1, lines 15-20): with g2 = s2 / (s1 + s2) the normalised
// weight of the second choice, the token is dispatched to it only if 2 * g2 > u, u ~ U[0, 1):
// with probability min(1, 2 g2) (g2 <= 1/2, so exactly 2 g2). u is counter-based, keyed by
// (seed, kStreamSecondExpert, noise_key, token), and drawn in training and in evaluation alike
// (the paper's rule has no such distinction). A skipped slot is emitted with expert -1: it is not
// routed (it counts in neither A[i] nor D[i] and takes no place in a capacity buffer), and the
// first expert's gate keeps its value (not renormalised to 1).
//
// Backward with learned noise: d nlogit[t,i] = d noisy[t,i] * eps[t,i] * sigmoid(nlogit[t,i])
// (sigmoid = softplus', computed from the std as 1 - exp(-std)); d logit = d noisy.
//
// Slots: token t's j-th choice (descending s + b) is slot t*k + j; every slot not skipped is
// routed, the capacity limit then drops some. Backward differentiates g through s and p into the
// logits; the bias and the selection (groups included) are not differentiable (straight
// selection, as in every top-k MoE).
#include <algorithm>
#include <cmath>
#include <memory>

#include "backend/check.h"
#include "backend/rng.h"
#include "backend/routing_host.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

constexpr int kMaxK = kHostTopkMaxK;  // the schema's limit of router.k

class TopKRouter final : public Router {
public:
    explicit TopKRouter(const RouterConfig& cfg)
        : cfg_(cfg),
          K_(cfg.k),
          G_(cfg.topk.groups),
          KG_(cfg.topk.topk_groups),
          normalize_(gates_normalized(cfg)),
          sigmoid_(cfg.score == ScoreFn::sigmoid),
          random_second_(cfg.topk.second_expert == SecondExpert::random),
          learned_noise_(cfg.topk.noise == TopkNoise::learned),
          uniform_noise_(cfg.noise_kind == NoiseKind::uniform),
          clean_gates_(cfg.topk.gate_logits == GateLogits::clean),
          scale_(float(cfg.scale)) {
        MOESIM_CHECK(K_ >= 1 && K_ <= kMaxK, "router.k outside the schema's range");
        MOESIM_CHECK(!random_second_ || K_ == 2, "a random second expert needs router.k = 2");
        MOESIM_CHECK(G_ >= 1 && KG_ >= 1 && KG_ <= G_, "router.topk.topk_groups > groups");
        MOESIM_CHECK(!uniform_noise_ || !learned_noise_,
                     "router.noise_kind: uniform needs router.topk.noise: fixed");
        MOESIM_CHECK(!clean_gates_ || !learned_noise_,
                     "router.topk.gate_logits: clean needs router.topk.noise: fixed");
    }

    size_t max_assignments(int T, int, double) const override { return size_t(T) * size_t(K_); }
    int logit_width(int N) const override { return learned_noise_ ? 2 * N : N; }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        MOESIM_CHECK(K_ <= N, "router.k larger than experts.count");
        MOESIM_CHECK(N % G_ == 0, "router.topk.groups does not divide experts.count");
        MOESIM_CHECK(K_ <= KG_ * (N / G_), "router.k larger than the experts of the kept groups");
        state.reserve(T_max, N, K_, sigmoid_);
        state.L = logit_width(N);
        state.noise_stds.resize(learned_noise_ ? size_t(T_max) * N : 0);
        state.noise_eps.resize(learned_noise_ ? size_t(T_max) * N : 0);
        state.gate_scores.resize(clean_gates_ ? size_t(T_max) * N : 0);
        state.clean_gates = false;
        state.emitted.resize(random_second_ ? size_t(T_max) * K_ : 0);
        state.fwork.resize(G_ > 1 ? size_t(T_max) * G_ : 0);
        state.work.resize(G_ > 1 ? size_t(T_max) * G_ : 0);
    }

    void route(const float* logits, int T, const float* bias, const Pass& pass, uint64_t seed,
               RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        st.T = T;
        st.R = T * K_;
        const int L = logit_width(N);
        const bool noisy = pass.training && cfg_.noise > 0.0 && !learned_noise_;
        const bool learned = pass.training && learned_noise_;
        // the shazeer loss reads noise_std as a Gaussian std: the config refuses it with
        // uniform noise, and 0 here says "no Gaussian noise" to anything else that reads it
        st.noise_std =
            pass.training && !learned_noise_ && !uniform_noise_ ? float(cfg_.noise) : 0.0f;
        st.noise_learned = learned;
        const bool clean = noisy && clean_gates_;  // gates by q, the scores of the clean logits
        st.clean_gates = clean;
        const Rng rng{seed, kStreamNoise, pass.noise_key};
        const float noise = float(cfg_.noise);
        const Rng second_rng{seed, kStreamSecondExpert, pass.noise_key};
        // Rows in chunks of about 8K scores (a size fixed by N, not by the threads): the
        // exponentials of a whole chunk go through one vectorised call.
        const int rows = std::max(1, 8192 / std::max(N, 1));
        const int chunks = (T + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int c = 0; c < chunks; ++c) {
            const int t0 = c * rows, t1 = std::min(T, t0 + rows);
            // softmax: p = exp(z - max z), then / sum (the softmax_rows op's code);
            // sigmoid: s = 1 / (1 + exp(-z))
            for (int t = t0; t < t1; ++t) {
                const float* l = logits + size_t(t) * L;
                float* z = st.noisy.data() + size_t(t) * N;
                if (noisy && uniform_noise_) {
                    for (int i = 0; i < N; ++i)
                        z[i] = l[i] + noise * rng.uniform(uint64_t(t) * N + i);
                } else if (noisy) {
                    for (int i = 0; i < N; ++i)
                        z[i] = l[i] + noise * rng.normal(uint64_t(t) * N + i);
                } else if (learned) {
                    float* sd = st.noise_stds.data() + size_t(t) * N;
                    float* e = st.noise_eps.data() + size_t(t) * N;
                    for (int i = 0; i < N; ++i) {
                        const float v = l[N + i];  // softplus, without overflow
                        sd[i] = std::max(v, 0.0f) + std::log1p(std::exp(-std::fabs(v)));
                        e[i] = rng.normal(uint64_t(t) * N + i);
                        z[i] = l[i] + sd[i] * e[i];
                    }
                } else
                    std::copy_n(l, N, z);
                if (sigmoid_) {
                    float* p = st.probs.data() + size_t(t) * N;
                    for (int i = 0; i < N; ++i) p[i] = -z[i];
                }
            }
            float* pc = st.probs.data() + size_t(t0) * N;
            if (sigmoid_)
                vec_exp_shifted(pc, pc, 0.0f, size_t(t1 - t0) * N);
            else
                host_softmax_rows(pc, st.noisy.data() + size_t(t0) * N, t1 - t0, N, N);
            if (clean) {
                // q, the scores of the clean logits: softmax (the softmax_rows op's code), or
                // sigmoid = 1 / (1 + exp(-l))
                float* qc = st.gate_scores.data() + size_t(t0) * N;
                if (sigmoid_) {
                    for (int t = t0; t < t1; ++t) {
                        const float* l = logits + size_t(t) * L;
                        float* q = st.gate_scores.data() + size_t(t) * N;
                        for (int i = 0; i < N; ++i) q[i] = -l[i];
                    }
                    vec_exp_shifted(qc, qc, 0.0f, size_t(t1 - t0) * N);
                    for (size_t i = 0; i < size_t(t1 - t0) * N; ++i) qc[i] = 1.0f / (1.0f + qc[i]);
                } else {
                    host_softmax_rows(qc, logits + size_t(t0) * L, t1 - t0, N, L);
                }
            }
            for (int t = t0; t < t1; ++t) {
                float* p = st.probs.data() + size_t(t) * N;
                const float* s = p;
                if (sigmoid_) {
                    float* sr = st.scores.data() + size_t(t) * N;
                    for (int i = 0; i < N; ++i) sr[i] = 1.0f / (1.0f + p[i]);
                    const float sum = vec_sum(sr, size_t(N));
                    for (int i = 0; i < N; ++i) p[i] = sr[i] / sum;
                    s = sr;
                }
                select_top_k(st, t, s, bias, clean ? st.gate_scores.data() + size_t(t) * N : s);
                if (random_second_) {
                    // GShard: dispatch the 2nd choice only if 2 * s2 / (s1 + s2) > u
                    const int* sel = st.sel.data() + size_t(t) * 2;
                    int* em = st.emitted.data() + size_t(t) * 2;
                    const float g2 = s[sel[1]] / (s[sel[0]] + s[sel[1]]);
                    em[0] = sel[0];
                    em[1] = 2.0f * g2 > second_rng.uniform(uint64_t(t)) ? sel[1] : -1;
                }
            }
        }
        plan_from_slots(plan, T, T * K_, random_second_ ? st.emitted.data() : st.sel.data(),
                        st.sel_gate.data(), nullptr, K_);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N, K = K_, L = logit_width(N);
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* p = st.probs.data() + size_t(t) * N;
            const int* sel = st.sel.data() + size_t(t) * K;
            const float* dg = d_slot + size_t(t) * K;
            float* dl = d_logits + size_t(t) * L;
            for (int i = 0; i < N; ++i) dl[i] = d_probs ? d_probs[size_t(t) * N + i] : 0.0f;
            if (st.clean_gates) {
                // the aux losses' gradient through p (as below, without the gates), then the
                // gates' through q, the scores of the clean logits (d logit = d noisy)
                const float* q = st.gate_scores.data() + size_t(t) * N;
                if (!sigmoid_) {
                    softmax_backward_row(dl, p, N);
                } else {
                    const float* s = st.scores.data() + size_t(t) * N;
                    const float dot = vec_dot(dl, p, size_t(N));
                    const float ssum = vec_sum(s, size_t(N));
                    for (int i = 0; i < N; ++i) dl[i] = (dl[i] - dot) / ssum * s[i] * (1.0f - s[i]);
                }
                add_clean_gate_grad(dl, q, sel, dg, N);
            } else if (!sigmoid_) {
                // s = p: dp from d_probs plus the gates' dependence on p, then dz = p (dp - <dp,p>)
                add_gate_grad(dl, p, sel, dg);
                softmax_backward_row(dl, p, N);
            } else {
                // p = s / sum s: ds_i = (dp_i - <dp, p>) / sum s, plus the gates' dependence on
                // s; then dz = ds s (1 - s).
                const float* s = st.scores.data() + size_t(t) * N;
                const float dot = vec_dot(dl, p, size_t(N));
                const float ssum = vec_sum(s, size_t(N));
                for (int i = 0; i < N; ++i) dl[i] = (dl[i] - dot) / ssum;
                add_gate_grad(dl, s, sel, dg);
                for (int i = 0; i < N; ++i) dl[i] *= s[i] * (1.0f - s[i]);
            }
            if (learned_noise_) {
                // dl[0, N) is d noisy = d logit; the noise logits get it times eps * softplus'
                float* dn = dl + N;
                if (st.noise_learned) {
                    const float* sd = st.noise_stds.data() + size_t(t) * N;
                    const float* e = st.noise_eps.data() + size_t(t) * N;
                    for (int i = 0; i < N; ++i) dn[i] = dl[i] * e[i] * -std::expm1(-sd[i]);
                } else {
                    std::fill_n(dn, N, 0.0f);
                }
            }
        }
    }

private:
    // ds[i] += d(sum_j dg_j g_j)/ds_i for the gates of the selected slots (the
    // topk_rows_backward op's code).
    void add_gate_grad(float* ds, const float* s, const int* sel, const float* dg) const {
        host_topk_row_backward(ds, s, sel, dg, K_, normalize_, scale_);
    }

    // Clean gates: dl[i] += d(sum_j dg_j g_j)/d logit_i with g read from q (q = softmax of the
    // clean logits: dz = q (dq - <dq, q>), dq nonzero only at the selected experts; sigmoid:
    // dz = dq q (1 - q)).
    void add_clean_gate_grad(float* dl, const float* q, const int* sel, const float* dg,
                             int N) const {
        float dq[kMaxK];  // dq at sel[j]
        if (normalize_) {
            float zs = 0.0f, dot = 0.0f;
            for (int j = 0; j < K_; ++j) {
                zs += q[sel[j]];
                dot += scale_ * dg[j] * q[sel[j]];
            }
            for (int j = 0; j < K_; ++j) dq[j] = scale_ * dg[j] / zs - dot / (zs * zs);
        } else {
            for (int j = 0; j < K_; ++j) dq[j] = scale_ * dg[j];
        }
        if (sigmoid_) {
            for (int j = 0; j < K_; ++j) dl[sel[j]] += dq[j] * q[sel[j]] * (1.0f - q[sel[j]]);
            return;
        }
        float dot = 0.0f;
        for (int j = 0; j < K_; ++j) dot += dq[j] * q[sel[j]];
        for (int i = 0; i < N; ++i) dl[i] -= q[i] * dot;
        for (int j = 0; j < K_; ++j) dl[sel[j]] += q[sel[j]] * dq[j];
    }

    // Group-limited routing: work[t*G + g] = 1 for the KG_ groups of token t with the highest
    // group score (fwork[t*G + g]: the sum of the top-2 s + b of the group's experts; ties: the
    // lower group index), else 0. A group is kept iff fewer than KG_ groups beat it (G is small).
    void select_groups(RouterState& st, int t, const float* s, const float* bias) const {
        const int M = st.N / G_;
        float* gs = st.fwork.data() + size_t(t) * G_;
        int* kept = st.work.data() + size_t(t) * G_;
        for (int g = 0; g < G_; ++g) {
            float a = -INFINITY, b = -INFINITY;  // the two largest of the group
            for (int i = g * M; i < (g + 1) * M; ++i) {
                const float v = s[i] + (bias ? bias[i] : 0.0f);
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            gs[g] = M >= 2 ? a + b : a;
        }
        for (int g = 0; g < G_; ++g) {
            int better = 0;
            for (int h = 0; h < G_ && better < KG_; ++h)
                if (gs[h] > gs[g] || (gs[h] == gs[g] && h < g)) ++better;
            kept[g] = better < KG_ ? 1 : 0;
        }
    }

    // The K experts of token t with the largest s + b, in descending order (ties: the lower
    // index), then their gates (the topk_rows op's code), read from gs (s, or q with clean
    // gates). With groups, only the experts of the kept groups compete.
    void select_top_k(RouterState& st, int t, const float* s, const float* bias,
                      const float* gs) const {
        const int N = st.N, K = K_;
        int* sel = st.sel.data() + size_t(t) * K;
        float* gate = st.sel_gate.data() + size_t(t) * K;
        const int* kept = nullptr;
        if (G_ > 1) {
            select_groups(st, t, s, bias);
            kept = st.work.data() + size_t(t) * G_;
        }
        host_topk_row(sel, gate, s, bias, N, K, normalize_, scale_, kept, N / G_, gs);
    }

    RouterConfig cfg_;
    int K_, G_, KG_;
    bool normalize_, sigmoid_, random_second_, learned_noise_, uniform_noise_, clean_gates_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_topk(const RouterConfig& cfg) {
    return std::make_unique<TopKRouter>(cfg);
}

}  // namespace moe
