// Token-choice top-k routing (Shazeer et al. 2017; Switch: Fedus et al. 2021 with k = 1;
// GShard / Mixtral with k = 2; DeepSeek-V3 with sigmoid scores and a balancing bias).
//
//   noisy[t,i] = logit[t,i] + noise * eps[t,i]      (training only; eps ~ N(0,1), counter-based)
//   p[t,i]     = softmax_i(noisy[t])                 score = softmax
//              = sigmoid(noisy[t,i]) / sum_j sigmoid(noisy[t,j])   score = sigmoid
//   S[t]       = top-k of p[t,i] + b[i]              (ties: the lower expert index wins)
//   g[t,i]     = p[t,i] / sum_{j in S[t]} p[t,j]     normalize, else p[t,i]
//
// The plan: each token appears in exactly K slots (in descending order of p + b); the capacity
// limit then drops some of them. Backward differentiates g through p into the logits; the bias
// and the selection are not differentiable (straight selection, as in every top-k MoE).
#include <algorithm>
#include <cmath>
#include <memory>

#include "backend/rng.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

class TopKRouter final : public Router {
public:
    explicit TopKRouter(const RouterConfig& cfg) : cfg_(cfg) {}

    void route(const float* logits, const RouteContext& ctx, RoutingPlan& plan) const override {
        const int T = plan.T, N = plan.N;
        const bool noisy = ctx.training && cfg_.noise > 0.0;
        const Rng rng{ctx.seed, kStreamNoise, ctx.noise_step};
        const float noise = float(cfg_.noise);
        const bool sigmoid = cfg_.score == ScoreFn::sigmoid;
        // Rows in chunks of about 8K scores (a size fixed by N, not by the threads): the
        // exponentials of a whole chunk go through one vectorised call.
        const int rows = std::max(1, 8192 / std::max(N, 1));
        const int chunks = (T + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int c = 0; c < chunks; ++c) {
            const int t0 = c * rows, t1 = std::min(T, t0 + rows);
            // softmax: p = exp(z - max z), then / sum;  sigmoid: p = 1 / (1 + exp(-z)), then / sum
            for (int t = t0; t < t1; ++t) {
                const float* l = logits + size_t(t) * N;
                float* z = plan.noisy.data() + size_t(t) * N;
                float* p = plan.probs.data() + size_t(t) * N;
                if (noisy)
                    for (int i = 0; i < N; ++i) z[i] = l[i] + noise * rng.normal(uint64_t(t) * N + i);
                else
                    std::copy_n(l, N, z);
                if (sigmoid) {
                    for (int i = 0; i < N; ++i) p[i] = -z[i];
                } else {
                    const float mx = vec_max(z, size_t(N));
                    for (int i = 0; i < N; ++i) p[i] = z[i] - mx;
                }
            }
            float* pc = plan.probs.data() + size_t(t0) * N;
            vec_exp_shifted(pc, pc, 0.0f, size_t(t1 - t0) * N);
            for (int t = t0; t < t1; ++t) {
                float* p = plan.probs.data() + size_t(t) * N;
                if (sigmoid)
                    for (int i = 0; i < N; ++i) p[i] = 1.0f / (1.0f + p[i]);
                const float sum = vec_sum(p, size_t(N));
                for (int i = 0; i < N; ++i) p[i] /= sum;
                select_top_k(plan, t, ctx.bias);
            }
        }
    }

    void backward(const RoutingPlan& plan, const float* d_gate, const float* d_probs,
                  float* d_logits) const override {
        const int T = plan.T, N = plan.N, K = plan.K;
        const bool sigmoid = cfg_.score == ScoreFn::sigmoid;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* p = plan.probs.data() + size_t(t) * N;
            const int* sel = plan.sel.data() + size_t(t) * K;
            const float* dg = d_gate + size_t(t) * K;
            float* dl = d_logits + size_t(t) * N;
            // dp: from d_probs, plus the gates' dependence on p
            for (int i = 0; i < N; ++i) dl[i] = d_probs ? d_probs[size_t(t) * N + i] : 0.0f;
            if (gates_normalized(cfg_)) {
                float zs = 0.0f, dot = 0.0f;
                for (int j = 0; j < K; ++j) {
                    zs += p[sel[j]];
                    dot += dg[j] * p[sel[j]];
                }
                for (int j = 0; j < K; ++j) dl[sel[j]] += dg[j] / zs - dot / (zs * zs);
            } else {
                for (int j = 0; j < K; ++j) dl[sel[j]] += dg[j];
            }
            // dp -> d logits
            const float dot = vec_dot(dl, p, size_t(N));
            if (sigmoid) {
                // p = s / sum s, s = sigmoid(z): ds_i = (dp_i - <dp, p>) / sum s, dz = ds s (1 - s)
                const float* z = plan.noisy.data() + size_t(t) * N;
                float ssum = 0.0f;
                for (int i = 0; i < N; ++i) ssum += 1.0f / (1.0f + std::exp(-z[i]));
                for (int i = 0; i < N; ++i) {
                    const float s = 1.0f / (1.0f + std::exp(-z[i]));
                    dl[i] = (dl[i] - dot) / ssum * s * (1.0f - s);
                }
            } else {
                for (int i = 0; i < N; ++i) dl[i] = p[i] * (dl[i] - dot);
            }
        }
    }

private:
    // The K experts of token t with the largest p + b, in descending order (ties: the lower
    // index), by insertion into a sorted list of K (K is small); then their gates.
    void select_top_k(RoutingPlan& plan, int t, const float* bias) const {
        const int N = plan.N, K = plan.K;
        const float* p = plan.probs.data() + size_t(t) * N;
        int* sel = plan.sel.data() + size_t(t) * K;
        float* gate = plan.gate.data() + size_t(t) * K;
        float best[64];
        int n = 0;
        for (int i = 0; i < N; ++i) {
            const float v = p[i] + (bias ? bias[i] : 0.0f);
            if (n == K && !(v > best[K - 1])) continue;
            int j = n < K ? n++ : K - 1;
            while (j > 0 && v > best[j - 1]) {
                best[j] = best[j - 1];
                sel[j] = sel[j - 1];
                --j;
            }
            best[j] = v;
            sel[j] = i;
        }
        float zsum = 0.0f;
        for (int j = 0; j < K; ++j) zsum += p[sel[j]];
        for (int j = 0; j < K; ++j) gate[j] = gates_normalized(cfg_) ? p[sel[j]] / zsum : p[sel[j]];
    }

    RouterConfig cfg_;
};

}  // namespace

std::unique_ptr<Router> make_topk(const RouterConfig& cfg) {
    return std::make_unique<TopKRouter>(cfg);
}

}  // namespace moe
