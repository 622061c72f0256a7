// What `moe-sim bench` counts: the floating-point operations of one training step and the memory
// a step needs, from the config and the routing that actually happened (docs/performance.md).
//
// Counted FLOPs = the matrix products of forward and backward, 2*m*n*k each (one multiply and
// one add per term). A product Y (m,n) = X (m,k) W (k,n) costs 2mnk forward and 2 * 2mnk backward
// (dX = dY Wᵀ and dW = Xᵀ dY), so 3 * 2mnk per step; the embedding's input needs no gradient, so
// it costs 2 * 2mnk. With T tokens, Din input dim, D = model.d_model, H = experts.d_ff,
// H1 = H (relu, gelu) or 2H (swiglu: W1 gives gate and up), N experts, C classes,
// S = experts.shared, A = the processed (kept) assignments summed over the MoE layers (the
// dense routers: soft processes T*N, every token on every expert; soft_slots N*S slot rows):
//
//   embed   = 2 * (2 T Din D)
//   router  = 3 * (2 T D L)                                 per MoE layer, L = the logits per
//                                                           token: N; 2N with learned gating
//                                                           noise; B + N hierarchical; N*S
//                                                           soft_slots (plus its dispatch and
//                                                           combine products 2 * 3 * (2 T N*S D))
//           = 3 * (2 T D d + 2 T d L)                       router.head: cosine, d = its dim
//   experts = 3 * (2 A D H1 + 2 A H D)                      A summed over MoE layers
//   shared  = 3 * (2 T D S H1 + 2 T S H D)                  per MoE layer when S > 0
//   dense   = 3 * (2 T D H1 + 2 T H D)                      per dense (non-MoE) block
//   head    = 3 * (2 T D C)
//
// model.kind: transformer (S positions per sequence, T/S sequences): embed = 0 (the token and
// position lookups are no products), the head has no bias (and costs the same tied), and per
// block
//   attention = 3 * (2 T D 3D + 2 T D D)                    the Q, K, V and O projections
//             + 3 * 2 * (T D (S + 1))                       scores q kᵀ and P v, causal: per
//                                                           sequence and head S(S+1)/2 dots of
//                                                           D/H each; backward: dP, dq, dk, dv
//
// Elementwise work (norms, activations, softmax, gathers, Adam) is not counted: it is O(T D) or
// O(params), not a matrix product. moe-sim computes the router-weight gradient as two products
// (task part and auxiliary part, for the gradient-interference statistics); the count has one.
#pragma once

#include <cstdint>

#include "config/config.h"

namespace moe {

struct BenchFlops {
    double embed = 0, router = 0, experts = 0, shared = 0, dense = 0, head = 0, attention = 0;
    double total() const { return embed + router + experts + shared + dense + head + attention; }
};

// FLOPs of one training step with T tokens; `assignments` = processed assignments summed over the
// MoE layers (may be a mean over steps, hence a double).
BenchFlops bench_flops(const Config& cfg, int input_dim, int num_classes, int T,
                       double assignments);

// The memory one step needs, in bytes of float32 (int32 for indices), as counted from the model:
// parameters, their gradients, optimizer state, and the activations that backward reads
// (input batch; per block the residual stream, normed input and 1/rms; with model.kind:
// transformer also the attention sublayer's stream, normed input, 1/rms, q k v, P (H S per token)
// and output, and the token ids; per MoE layer the router
// logits and probabilities, the routing plan, the dispatched rows, the expert pre-activations,
// activations and outputs for the processed assignments; per dense FFN and shared expert its
// pre-activations and activations; final stream, normed stream and logits).
struct BenchMemory {
    double params = 0, grads = 0, optimizer = 0, activations = 0;
    double total() const { return params + grads + optimizer + activations; }
};
BenchMemory bench_memory(const Config& cfg, int input_dim, int num_classes, int T,
                         double assignments, size_t n_params, size_t optimizer_floats);

}  // namespace moe
