// The top-k of one row and its gate backward, written once for both backends: the CPU's
// host_topk_row / host_topk_row_backward (routing_host.h, used by the top-k router) and the CUDA
// kernels (one thread per row) call these, so the selection and the gates are the same code.
//   select:   the K largest s[i] + bias[i] (bias only selects), best first; a value enters only
//             if it beats the last kept one, so ties go to the lower expert index; experts of
//             groups with kept[i / group_size] == 0 are skipped (kept may be null)
//   gates:    g[j] = scale * s[sel[j]] / sum_j' s[sel[j']] (normalize) or scale * s[sel[j]],
//             with s replaced by gs where gs is not null (clean gates: the selection reads the
//             noisy scores s, the gates the scores of the clean logits)
//   backward: ds[sel[j]] += d(sum_j dg[j] g[j]) / d s[sel[j]] (accumulates into ds)
#pragma once

#include "backend/host_device.h"

namespace moe {

// The largest K the top-k routers take (the schema's limit of router.k).
constexpr int kTopkRowMaxK = 64;

MOESIM_HOST_DEVICE inline void topk_row(int* sel, float* gate, const float* s, const float* bias,
                                        int N, int K, bool normalize, float scale, const int* kept,
                                        int group_size, const float* gs = nullptr) {
    float best[kTopkRowMaxK];  // insertion into a sorted list of K (K is small)
    int n = 0;
    for (int i = 0; i < N; ++i) {
        if (kept && !kept[i / group_size]) continue;
        const float v = s[i] + (bias ? bias[i] : 0.0f);
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
    const float* g = gs ? gs : s;
    float zsum = 0.0f;
    for (int j = 0; j < K; ++j) zsum += g[sel[j]];
    for (int j = 0; j < K; ++j) gate[j] = scale * (normalize ? g[sel[j]] / zsum : g[sel[j]]);
}

MOESIM_HOST_DEVICE inline void topk_row_backward(float* ds, const float* s, const int* sel,
                                                 const float* dg, int K, bool normalize,
                                                 float scale) {
    if (normalize) {  // the scale multiplies dg first
        float zs = 0.0f, dot = 0.0f;
        for (int j = 0; j < K; ++j) {
            zs += s[sel[j]];
            dot += scale * dg[j] * s[sel[j]];
        }
        for (int j = 0; j < K; ++j) ds[sel[j]] += scale * dg[j] / zs - dot / (zs * zs);
    } else {
        for (int j = 0; j < K; ++j) ds[sel[j]] += scale * dg[j];
    }
}

}  // namespace moe
