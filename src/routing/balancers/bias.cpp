#include "routing/balancer.h"

namespace moe {

void bias_update(float* bias, const int* routed, int N, float rate) {
    double mean = 0.0;
    for (int i = 0; i < N; ++i) mean += routed[i];
    mean /= N;
    for (int i = 0; i < N; ++i) {
        const double e = mean - routed[i];
        bias[i] += rate * float((e > 0) - (e < 0));
    }
}

}  // namespace moe
