#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "routing/balancer.h"

namespace moe {
namespace {

// CV^2 = var / mean^2 of x (N); writes its gradient times coef into g (N).
double cv2(const double* x, int N, double coef, double* g) {
    double m = 0.0;
    for (int i = 0; i < N; ++i) m += x[i];
    m /= N;
    if (m == 0.0) {
        for (int i = 0; i < N; ++i) g[i] = 0.0;
        return 0.0;
    }
    double v = 0.0;
    for (int i = 0; i < N; ++i) v += (x[i] - m) * (x[i] - m);
    v /= N;
    // d(v/m^2)/dx_i = 2 (x_i - m) / (N m^2) - 2 v / (N m^3)
    for (int i = 0; i < N; ++i)
        g[i] = coef * (2.0 * (x[i] - m) / (N * m * m) - 2.0 * v / (N * m * m * m));
    return v / (m * m);
}

}  // namespace

double shazeer_loss(const RoutingPlan& plan, const RouterState& state, const float* logits,
                    float coef, float* d_slot, float* d_logits, std::vector<double>& scratch) {
    const int T = plan.T, N = plan.N, K = state.K, L = state.logit_stride();
    const float noise_std = state.noise_std;
    const bool learned = state.noise_learned;
    // the noise std of (t, i): per element when the router learns it, else one number
    auto std_of = [&](int t, int i) -> double {
        return learned ? double(state.noise_stds[size_t(t) * N + i]) : double(noise_std);
    };
    MOESIM_CHECK(K > 0 && K <= 64, "the shazeer loss needs a token-choice router with k <= 64");
    scratch.assign(size_t(4) * N, 0.0);
    double* imp = scratch.data();
    double* load = imp + N;
    double* g_imp = load + N;
    double* g_load = g_imp + N;
    for (int s = 0; s < T * K; ++s) imp[state.sel[size_t(s)]] += state.sel_gate[size_t(s)];
    const bool smooth = (learned || noise_std > 0.0f) && K < N;
    // kth_excluding(noisy[t], K, i): the K-th largest noisy logit among the others; it is the
    // (K+1)-th largest overall when i is among the top K, else the K-th largest.
    auto kth = [&](int t, int& kth_idx, int& k1_idx) {
        const float* z = state.noisy.data() + size_t(t) * N;
        int top[65];
        int n = 0;
        for (int i = 0; i < N; ++i) {  // top K+1 by value, ties to the lower index
            if (n == K + 1 && !(z[i] > z[top[K]])) continue;
            int j = n < K + 1 ? n++ : K;
            while (j > 0 && z[i] > z[top[j - 1]]) {
                top[j] = top[j - 1];
                --j;
            }
            top[j] = i;
        }
        kth_idx = top[K - 1];
        k1_idx = top[K];
    };
    constexpr double kInvSqrt2 = 0.70710678118654752, kInvSqrt2Pi = 0.39894228040143268;
    if (smooth) {
        for (int t = 0; t < T; ++t) {
            int ki, k1;
            kth(t, ki, k1);
            const float* z = state.noisy.data() + size_t(t) * N;
            for (int i = 0; i < N; ++i) {
                const bool in_top =
                    z[i] > z[ki] || i == ki || (z[i] == z[ki] && i < ki);  // i among the top K
                const int m = in_top ? k1 : ki;
                const double u = (double(logits[size_t(t) * L + i]) - z[m]) / std_of(t, i);
                load[i] += 0.5 * std::erfc(-u * kInvSqrt2);
            }
        }
    } else {
        for (int i = 0; i < N; ++i) load[i] = plan.routed[i];
    }
    const double loss = cv2(imp, N, coef, g_imp) + cv2(load, N, coef, g_load);
    if (d_slot)
        for (int s = 0; s < T * K; ++s) d_slot[s] += float(g_imp[state.sel[size_t(s)]]);
    if (d_logits && smooth) {
        for (int t = 0; t < T; ++t) {
            int ki, k1;
            kth(t, ki, k1);
            const float* z = state.noisy.data() + size_t(t) * N;
            float* dl = d_logits + size_t(t) * L;
            for (int i = 0; i < N; ++i) {
                const bool in_top = z[i] > z[ki] || i == ki || (z[i] == z[ki] && i < ki);
                const int m = in_top ? k1 : ki;
                const double sd = std_of(t, i);
                const double u = (double(logits[size_t(t) * L + i]) - z[m]) / sd;
                // d Phi(u) / d clean_i, with u = (clean_i - noisy_m) / sd_i
                const double dphi = kInvSqrt2Pi * std::exp(-0.5 * u * u) / sd * g_load[i];
                dl[i] += float(dphi);  // through the clean logit
                dl[m] -= float(dphi);  // through the k-th noisy logit (noisy = clean + noise)
                if (learned) {
                    // noisy_m = clean_m + softplus(n_m) eps_m, sd_i = softplus(n_i), and
                    // softplus' = sigmoid = 1 - exp(-softplus)
                    const size_t tm = size_t(t) * N + m;
                    const double sig_m = -std::expm1(-double(state.noise_stds[tm]));
                    const double sig_i = -std::expm1(-sd);
                    dl[N + m] -= float(dphi * state.noise_eps[tm] * sig_m);
                    dl[N + i] -= float(dphi * u * sig_i);  // d u / d sd_i = -u / sd_i
                }
            }
        }
    }
    return loss;
}

}  // namespace moe
