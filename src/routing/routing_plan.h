// The RoutingPlan: the centre of the house (DESIGN.md). A router turns scores into a plan;
// dispatch, combine, the backward pass, the balancers and the statistics read only the plan.
//
// Dimensions: T tokens, N routed experts, K experts chosen per token (slots per token),
// A processed assignments (A <= T*K after the capacity limit).
//
// Per token slot s = t*K + j (j-th choice of token t, in descending order of score + bias):
//   sel[s]   the expert chosen                               (T*K)
//   gate[s]  its gate weight g[t,i] (METRICS.md)             (T*K)
//   kept[s]  1 if the assignment survived the capacity limit (T*K)
//   pos[s]   the processed assignment a of slot s, or -1 when it was dropped (T*K)
// CSR by expert over the kept slots:
//   offsets[i] .. offsets[i+1]  expert i's processed assignments   (N+1)
//   slot[a]                     the slot of assignment a; its token is slot[a] / K   (A)
// Counts (METRICS.md): routed[i] = A[i] (before capacity), dropped[i] = D[i]; the processed count
// P[i] = routed[i] - dropped[i] = offsets[i+1] - offsets[i].
// What the router's backward needs: probs[t*N + i] = p[t,i] (METRICS.md), computed from the noisy
// logits when gating noise is on, and those noisy logits (equal to the logits without noise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe {

struct RoutingPlan {
    int T = 0, N = 0, K = 0;
    int64_t capacity = 0;        // C = ceil(factor * T * K / N); 0 = no limit
    std::vector<int> sel;        // (T*K)
    std::vector<float> gate;     // (T*K)
    std::vector<uint8_t> kept;   // (T*K)
    std::vector<int> pos;        // (T*K)
    std::vector<int> offsets;    // (N+1)
    std::vector<int> slot;       // (A)
    std::vector<int> routed;     // (N)
    std::vector<int> dropped;    // (N)
    std::vector<float> probs;    // (T*N)
    std::vector<float> noisy;    // (T*N) logits after gating noise

    int token_of(int a) const { return slot[a] / K; }
    int assignments() const { return offsets.empty() ? 0 : offsets[N]; }
    int processed(int i) const { return offsets[i + 1] - offsets[i]; }

    // Sizes every vector for (T, N, K). Vectors keep their capacity, so a plan reused with the
    // same or smaller sizes does not allocate.
    void resize(int T_, int N_, int K_) {
        T = T_; N = N_; K = K_;
        sel.resize(size_t(T) * K);
        gate.resize(size_t(T) * K);
        kept.resize(size_t(T) * K);
        pos.resize(size_t(T) * K);
        offsets.resize(size_t(N) + 1);
        slot.resize(size_t(T) * K);
        routed.resize(N);
        dropped.resize(N);
        probs.resize(size_t(T) * N);
        noisy.resize(size_t(T) * N);
    }
};

}  // namespace moe
