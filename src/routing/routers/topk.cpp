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
#include "routing/router.h"

namespace moe {
namespace {

class TopKRouter final : public Router {
public:
    explicit TopKRouter(const RouterConfig& cfg) : cfg_(cfg) {}

    void route(const float* logits, const RouteContext& ctx, RoutingPlan& plan) const override {
        const int T = plan.T, N = plan.N, K = plan.K;
        const bool noisy = ctx.training && cfg_.noise > 0.0;
        const Rng rng{ctx.seed, kStreamNoise, ctx.noise_step};
        const float noise = float(cfg_.noise);
        const bool sigmoid = cfg_.score == ScoreFn::sigmoid;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* l = logits + size_t(t) * N;
            float* z = plan.noisy.data() + size_t(t) * N;
            float* p = plan.probs.data() + size_t(t) * N;
            for (int i = 0; i < N; ++i)
                z[i] = noisy ? l[i] + noise * rng.normal(uint64_t(t) * N + i) : l[i];
            if (sigmoid) {
                float sum = 0.0f;
                for (int i = 0; i < N; ++i) sum += (p[i] = 1.0f / (1.0f + std::exp(-z[i])));
                for (int i = 0; i < N; ++i) p[i] /= sum;
            } else {
                float mx = z[0];
                for (int i = 1; i < N; ++i) mx = std::max(mx, z[i]);
                float sum = 0.0f;
                for (int i = 0; i < N; ++i) sum += (p[i] = std::exp(z[i] - mx));
                for (int i = 0; i < N; ++i) p[i] /= sum;
            }
            // top-k of p + b by insertion into a sorted list of K (K is small)
            int* sel = plan.sel.data() + size_t(t) * K;
            float* gate = plan.gate.data() + size_t(t) * K;
            float best[64];
            int n = 0;
            for (int i = 0; i < N; ++i) {
                const float v = p[i] + (ctx.bias ? ctx.bias[i] : 0.0f);
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
            for (int j = 0; j < K; ++j) gate[j] = cfg_.normalize ? p[sel[j]] / zsum : p[sel[j]];
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
            if (cfg_.normalize) {
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
            float dot = 0.0f;
            for (int i = 0; i < N; ++i) dot += dl[i] * p[i];
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
    RouterConfig cfg_;
};

}  // namespace

std::unique_ptr<Router> make_topk(const RouterConfig& cfg) {
    return std::make_unique<TopKRouter>(cfg);
}

}  // namespace moe
