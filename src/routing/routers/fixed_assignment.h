// What the two routers that learn nothing (hash.cpp, random.cpp) share: a token's k distinct
// experts from k hash values, its uniform gates, its statistics distribution and a backward that
// gives the router logits no gradient.
//
//   e_j    = the j-th hash of the token, a value in [0, N), j = 0..k-1 (each router's own hash);
//            a duplicate of an earlier e_{j'} moves to the next expert index, cyclically, that
//            is not taken yet: (e_j + 1) mod N, (e_j + 2) mod N, ... (deterministic; k <= N)
//   g[t,e_j] = scale / k                                   the k experts weigh equally
//   p[t,i] = 1/k for i in {e_j}, else 0                    the statistics' distribution
//
// The layer still computes the router logits x Wr (it declares the weights for every router),
// but nothing reads them: backward writes zero logit gradients, so the router weights get a zero
// gradient (the z-loss, which acts on the logits directly, is refused by a rule).
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/check.h"
#include "routing/router.h"

namespace moe::fixed_assignment {

// The start of a pass of either router: the checks, the state's sizes (K slots per token, no
// noise), and the logits kept as the "noisy" logits the statistics read. missing_input_message is
// the check's message for a pass without the model's input.
inline void begin_pass(RouterState& st, const float* logits, int T, int K, const Pass& pass,
                       const char* missing_input_message) {
    MOESIM_CHECK(size_t(T) * st.N <= st.probs.size(), "more tokens than the state was sized for");
    MOESIM_CHECK(pass.token_ids || (pass.input && pass.input_dim > 0), missing_input_message);
    st.T = T;
    st.R = T * K;
    st.noise_std = 0.0f;
    std::copy_n(logits, size_t(T) * st.N, st.noisy.data());
}

// Token t's K experts from its K draws e[j] in [0, N): duplicates move to the next free index.
inline void distinct_experts(int* sel, const uint64_t* draws, int K, int N) {
    for (int j = 0; j < K; ++j) {
        int e = int(draws[j]);
        for (bool taken = true; taken;) {
            taken = false;
            for (int i = 0; i < j; ++i)
                if (sel[i] == e) taken = true;
            if (taken) e = (e + 1) % N;
        }
        sel[j] = e;
    }
}

// Writes p (1/K on the selected experts) and the gates (scale / K) of token t.
inline void fill_token(RouterState& st, int t, int K, float scale) {
    const int N = st.N;
    float* p = st.probs.data() + size_t(t) * N;
    std::fill_n(p, N, 0.0f);
    const int* sel = st.sel.data() + size_t(t) * K;
    float* gate = st.sel_gate.data() + size_t(t) * K;
    for (int j = 0; j < K; ++j) {
        p[sel[j]] = 1.0f / float(K);
        gate[j] = scale / float(K);
    }
}

// The logits have no influence on the routing: their gradient is zero.
inline void zero_backward(const RouterState& st, float* d_logits) {
    std::fill_n(d_logits, size_t(st.T) * size_t(st.N), 0.0f);
}

}  // namespace moe::fixed_assignment
