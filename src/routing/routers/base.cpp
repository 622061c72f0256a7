// BASE routing (Lewis et al. 2021, "BASE Layers: Simplifying Training of Large, Sparse Models"):
// in training, a balanced linear assignment of tokens to experts; k = 1.
//
// Training:
//   cap[i]  = floor(T / N) + (i < T mod N ? 1 : 0)      every expert takes exactly its cap: T/N
//             when N divides T; otherwise the first T mod N experts take one more
//   e(t)    = the assignment with load(i) = cap[i] for every i that maximises sum_t z[t, e(t)]
//             (z = the router logits, the paper's h_t . w_e)
// Evaluation: e(t) = argmax_i z[t,i] (greedy top-1, as the paper does at test time; ties: the
// lower index).
// Both:
//   g[t,e]  = scale * sigmoid(z[t,e])                  the paper's x + sigma(x . w_e) f_e(x)
//   p[t,i]  = softmax_i(z[t])                          for the statistics and the aux losses
// Backward: the gate's sigmoid and p's softmax into the logits; the assignment is not
// differentiable.
//
// The assignment is an exact min-cost flow (source -> token -> expert -> sink, capacities 1 and
// cap[i]) by successive shortest paths, one token at a time (as the Hungarian method takes one row
// at a time): token t0 enters at expert j with distance -z[t0,j]; an expert i may hand one of its
// tokens t' on to expert j at cost z[t',i] - z[t',j]; Dijkstra over the experts on costs reduced
// by potentials (Johnson; the potentials are the previous distances, so every reduced cost is
// >= 0) finds the shortest path to an expert with room, and the tokens along it move. The partial
// assignment stays optimal for the tokens placed so far, so the final one is optimal: exact up to
// rounding (distances in double; a reduced cost that rounding makes negative counts as 0, so the
// shortest-path tree never has a cycle). Cost O(T N) per token (each assigned token is relaxed
// once, from its expert): O(T^2 N) per pass (the paper uses an auction algorithm on GPUs).
// Balance is exact by construction.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

class BaseRouter final : public Router {
public:
    explicit BaseRouter(const RouterConfig& cfg) : scale_(float(cfg.scale)) {
        MOESIM_CHECK(cfg.k == 1, "base routing needs router.k = 1");
    }

    size_t max_assignments(int T, int, double) const override { return size_t(T); }

    // work: assign (T_max), load (N), cap (N), prev_expert (N), prev_token (N); fwork: dist (N).
    void reserve(RouterState& state, int T_max, int N, double) const override {
        // (dwork_ is this router's own scratch: each MoE layer has its own router)
        state.reserve(T_max, N, 1, false);
        state.work.resize(size_t(T_max) + 4 * size_t(N));
        state.fwork.resize(size_t(N));
        dwork_.assign(2 * size_t(N) + size_t(N) / sizeof(double) + 1, 0.0);
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& pass,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        st.T = T;
        st.R = T;
        st.noise_std = 0.0f;
        const bool par = size_t(T) * N > 16384;
        std::copy_n(logits, size_t(T) * N, st.noisy.data());
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t) {
            const float* z = logits + size_t(t) * N;
            float* p = st.probs.data() + size_t(t) * N;
            softmax_row(p, z, N);
            st.sel[size_t(t)] = int(std::max_element(z, z + N) - z);  // greedy top-1
        }
        if (pass.training) assign_balanced(logits, T, N, st);
        for (int t = 0; t < T; ++t) {
            const float z = logits[size_t(t) * N + st.sel[size_t(t)]];
            st.sel_gate[size_t(t)] = scale_ / (1.0f + std::exp(-z));
        }
        plan_from_slots(plan, T, T, st.sel.data(), st.sel_gate.data(), nullptr, 1);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* p = st.probs.data() + size_t(t) * N;
            float* dl = d_logits + size_t(t) * N;
            for (int i = 0; i < N; ++i) dl[i] = d_probs ? d_probs[size_t(t) * N + i] : 0.0f;
            softmax_backward_row(dl, p, N);
            // g = scale * sigmoid(z[t,e]): dg/dz = g (1 - g / scale)
            const int e = st.sel[size_t(t)];
            const float g = st.sel_gate[size_t(t)];
            dl[e] += d_slot[t] * g * (1.0f - g / scale_);
        }
    }

private:
    // The balanced assignment of the T tokens into st.sel (see the header comment): successive
    // shortest paths with Dijkstra on reduced costs (Johnson potentials pi over the experts, in
    // double), so the shortest-path tree has no cycle whatever the rounding: a reduced cost that
    // rounding made slightly negative is taken as 0.
    void assign_balanced(const float* z, int T, int N, RouterState& st) const {
        int* assign = st.sel.data();
        int* load = st.work.data() + size_t(st.work.size()) - 4 * size_t(N);
        int* cap = load + N;
        int* prev_expert = cap + N;
        int* prev_token = prev_expert + N;
        double* pi = dwork_.data();
        double* d = pi + N;
        char* done = reinterpret_cast<char*>(d + N);
        for (int i = 0; i < N; ++i) {
            load[i] = 0;
            cap[i] = T / N + (i < T % N ? 1 : 0);
            pi[i] = 0.0;
        }
        for (int t0 = 0; t0 < T; ++t0) {
            const float* z0 = z + size_t(t0) * N;
            // token t0 enters expert j at cost -z0[j]; reduced: -z0[j] - pi[j], shifted to >= 0
            double lo = INFINITY;
            for (int j = 0; j < N; ++j) lo = std::min(lo, -double(z0[j]) - pi[j]);
            for (int j = 0; j < N; ++j) {
                d[j] = -double(z0[j]) - pi[j] - lo;
                prev_expert[j] = -1;
                prev_token[j] = -1;
                done[j] = 0;
            }
            // Dijkstra over the experts: expert i passes one of its tokens t to j at cost
            // z[t,i] - z[t,j], reduced by pi[i] - pi[j].
            for (int settled = 0; settled < N; ++settled) {
                int i = -1;
                for (int j = 0; j < N; ++j)
                    if (!done[j] && (i < 0 || d[j] < d[i])) i = j;
                done[i] = 1;
                for (int t = 0; t < t0; ++t) {
                    if (assign[t] != i) continue;
                    const float* zt = z + size_t(t) * N;
                    const double base = d[i] + double(zt[i]) + pi[i];
                    for (int j = 0; j < N; ++j) {
                        if (done[j]) continue;
                        const double r = std::max(0.0, base - double(zt[j]) - pi[j] - d[i]);
                        if (d[i] + r < d[j]) {
                            d[j] = d[i] + r;
                            prev_expert[j] = i;
                            prev_token[j] = t;
                        }
                    }
                }
            }
            // the cheapest expert with room: true distance d[j] + pi[j] (up to a constant)
            int best = -1;
            for (int j = 0; j < N; ++j)
                if (load[j] < cap[j] && (best < 0 || d[j] + pi[j] < d[best] + pi[best])) best = j;
            MOESIM_CHECK(best >= 0, "no expert with room: the capacities do not add up to T");
            ++load[best];
            // Move the tokens along the path back to the expert token t0 enters (a Dijkstra tree:
            // at most N - 1 steps).
            int j = best;
            for (int steps = 0; prev_expert[j] >= 0; ++steps) {
                MOESIM_CHECK(steps < N, "a cycle in the shortest-path tree");
                assign[prev_token[j]] = j;
                j = prev_expert[j];
            }
            assign[t0] = j;
            for (int k = 0; k < N; ++k) pi[k] += d[k];
        }
    }

    mutable std::vector<double> dwork_;  // pi (N), d (N), done flags: sized by reserve()
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_base(const RouterConfig& cfg) {
    return std::make_unique<BaseRouter>(cfg);
}

}  // namespace moe
