#include <algorithm>
#include <cmath>

#include "backend/routing_host.h"
#include "backend/vec_math.h"
#include "routing/balancer.h"

namespace moe {

double z_loss(const float* logits, int T, int N, float coef, float* d_logits) {
    constexpr int kRows = 64;
    double lse[kRows];
    double total = 0.0;
    for (int t0 = 0; t0 < T; t0 += kRows) {
        const int m = std::min(kRows, T - t0);
        vec_logsumexp_rows(lse, logits + size_t(t0) * N, size_t(m), size_t(N));
        total = host_add_squares(total, lse, m);  // one loop for every caller (routing_host.h)
        if (!d_logits) continue;
        for (int r = 0; r < m; ++r) {
            // the z_loss_grad op's code
            host_z_loss_grad_row(d_logits + size_t(t0 + r) * N, logits + size_t(t0 + r) * N, lse[r],
                                 N, coef, T);
        }
    }
    return total / T;
}

}  // namespace moe
