#include <algorithm>
#include <cmath>

#include "routing/balancer.h"

namespace moe {

void bias_update(float* bias, const int* routed, int N, float rate, BiasRule rule) {
    double mean = 0.0;
    for (int i = 0; i < N; ++i) mean += routed[i];
    mean /= N;
    if (rule == BiasRule::proportional) {
        if (mean == 0.0) return;
        for (int i = 0; i < N; ++i) bias[i] += float(rate * ((mean - routed[i]) / mean));
        return;
    }
    for (int i = 0; i < N; ++i) {
        const double e = mean - routed[i];
        bias[i] += rate * float((e > 0) - (e < 0));
    }
    if (rule == BiasRule::mean_centred) {
        double bm = 0.0;  // serial, in expert order
        for (int i = 0; i < N; ++i) bm += bias[i];
        bm /= N;
        for (int i = 0; i < N; ++i) bias[i] = float(bias[i] - bm);
    }
}

double bias_rate_at(const BalanceConfig& cfg, int64_t steps, int64_t s) {
    const double u = cfg.bias_rate;
    const int64_t W = cfg.bias_warmup;
    if (W > 0 && s <= W) return u * double(std::max<int64_t>(s, 0)) / double(W);
    if (cfg.bias_decay == BiasDecay::constant) return u;
    const double span = double(steps - W);
    const double progress = span > 0 ? std::min(1.0, double(s - W) / span) : 1.0;
    constexpr double kPi = 3.14159265358979323846;
    return 0.5 * u * (1.0 + std::cos(kPi * progress));
}

}  // namespace moe
