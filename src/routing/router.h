// A router turns router logits into a RoutingPlan (DESIGN.md). What it needs for its own
// backward (probabilities, selected slots, noise) it keeps in a RouterState that the layer
// owns; the plan does not grow with every router.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.h"
#include "routing/routing_plan.h"

namespace moe {

// The one context of a forward pass, from the trainer down to the router.
struct Pass {
    bool training = false;       // gating noise and gradients only in training
    int64_t step = 0;            // the training step (evaluation: the step it follows)
    double capacity_factor = 0;  // this pass's capacity factor; 0 = no limit
    uint64_t noise_key = 0;      // gating noise is keyed (seed, kStreamNoise, noise_key, t*N + i);
                                 // set per layer by the MoE layer (unique per step and layer)
    // The model's input of these tokens, for routers that route by the input itself (hash,
    // random): input (T, input_dim) raw features, token_ids (T) for token tasks; null if absent.
    const float* input = nullptr;
    int input_dim = 0;
    const int* token_ids = nullptr;
    // Token tasks: (T) the sequence of each token (tokens of one sequence adjacent), for the
    // sequence-wise balance loss; null otherwise.
    const int64_t* sequence_ids = nullptr;
};

// What a router keeps between its forward and its backward, and what the auxiliary losses and
// the statistics read: sized once by reserve(). Probabilities p are normalised over the N
// experts (METRICS.md); scores s are the raw scores selection and gates use (softmax: s = p, not
// stored; sigmoid: s = sigmoid(noisy logit)). Token-choice routers keep K slots per token;
// expert choice keeps K = 0 and its R = N*C slots (expert i's r-th choice is slot i*C + r) in
// sel (the expert), sel_gate and sel_token.
struct RouterState {
    int T = 0, N = 0, K = 0;
    int R = 0;                    // slots emitted by the last route (top-k: T*K)
    std::vector<float> probs;     // (T, N) p[t,i]
    std::vector<float> scores;    // (T, N) s[t,i] (sigmoid scores only)
    std::vector<float> noisy;     // (T, N) logits after gating noise (= the logits without)
    std::vector<int> sel;         // (T*K) selected experts per token, best first
    std::vector<float> sel_gate;  // (T*K) their gate weights, before capacity
    std::vector<int> sel_token;   // expert choice only: (R) the token of each slot
    std::vector<int> emitted;     // top-k with a random 2nd expert: (T*K) sel, -1 where skipped
    std::vector<int> work;        // a router's scratch (sized by its reserve)
    std::vector<float> fwork;     // a router's scratch (sized by its reserve)
    float noise_std = 0.0f;       // the gating noise of this pass (0 in evaluation)
    // Learned gating noise (top-k, router.topk.noise: learned): in a training pass the noise
    // std is per token and expert, noise_stds = softplus(noise logit), and noise_eps holds the
    // N(0, 1) draws (noisy = logit + noise_stds * noise_eps); noise_learned says this pass had it.
    bool noise_learned = false;
    std::vector<float> noise_stds;  // (T, N) when the router learns its noise, else empty
    std::vector<float> noise_eps;   // (T, N) likewise
    // Gates by the clean logits (top-k, router.topk.gate_logits: clean): in a training pass with
    // gating noise, clean_gates is set and gate_scores holds the scores of the logits before the
    // noise (softmax or sigmoid, as router.score), which the gates read at the selected experts.
    bool clean_gates = false;
    std::vector<float> gate_scores;  // (T, N) when the router can gate by the clean logits
    // Router logits per token (the router's logit_width(N)): the row stride of the logits that
    // route() reads and the losses read; 0 means N (a state built by hand).
    int L = 0;
    int logit_stride() const { return L > 0 ? L : N; }

    void reserve(int T_max, int N_, int K_, bool keep_scores);
};

class Router {
public:
    virtual ~Router() = default;
    // The largest number of slots the router emits for T tokens and N experts in a pass whose
    // capacity factor is at most max_capacity_factor (0: no limit): sizes the plan once. Top-k:
    // T*k; expert choice, which holds the capacity itself: N * min(T, C).
    virtual size_t max_assignments(int T, int N, double max_capacity_factor) const = 0;
    // Router logits per token that the layer computes for it (logits = x Wr, Wr of (D, width)):
    // N for most routers; a router with more score heads (a hierarchy's branch logits, Soft
    // MoE's slots) asks for more. route() and backward() read and write (T, width).
    virtual int logit_width(int N) const { return N; }
    // The kind of plan route() writes: sparse (token-expert assignments), or dense (Soft MoE's
    // slots: the layer then reserves the plan's dispatch and combine weights and runs its dense
    // path). With dense, state.R = the router's weights that backward takes gradients of.
    virtual PlanKind plan_kind() const { return PlanKind::sparse; }
    // Sizes the state once for up to T_max tokens and N experts (what this router keeps), for
    // passes of capacity factor at most max_capacity_factor (as max_assignments).
    virtual void reserve(RouterState& state, int T_max, int N,
                         double max_capacity_factor) const = 0;
    // logits: (T, logit_width(N)) router logits of this layer; bias: (N) balancing bias b[i] or null. Writes
    // the state and the plan's routed assignments (plan_from_slots); capacity comes after.
    virtual void route(const float* logits, int T, const float* bias, const Pass& pass,
                       uint64_t seed, RouterState& state, RoutingPlan& plan) const = 0;
    // d_slot: the gradient w.r.t. the gate weight of each emitted slot (state.R of them; zero
    // for a slot the capacity dropped, unless an auxiliary loss acts on it); d_probs: (T, N)
    // gradient w.r.t. p, or null. Writes d_logits (T, logit_width(N)), overwriting.
    virtual void backward(const RouterState& state, const float* d_slot, const float* d_probs,
                          float* d_logits) const = 0;
};

// The softmax helpers the routers share (one definition, so each router's arithmetic is the same):
//   softmax_row:          p = softmax(z) over n entries (max-shifted exp, then / sum)
//   softmax_backward_row: d = p * (d - <d, p>) in place: d holds dL/dp on entry, dL/dz on exit
//   softmax_probs:        state.probs = softmax of each logits row (T, state.N), and the logits
//                         copied to state.noisy (routers without gating noise keep them there);
//                         parallel over tokens when T * N is large
void softmax_row(float* p, const float* z, int n);
void softmax_backward_row(float* d, const float* p, int n);
void softmax_probs(const float* logits, int T, RouterState& state);

// The gradient of each plan assignment's gate (d_gate, (A)) moved to the router's slot space:
// d_slot[plan.slot[a]] = d_gate[a], zero for every other slot (R of them). No accumulation:
// each slot has at most one assignment.
void gate_grad_to_slots(const RoutingPlan& plan, const float* d_gate, float* d_slot, size_t R);

// The router of router.type, made by its factory (router_registry.cpp; its words, keys and rules
// are its row in config/components.cpp).
std::unique_ptr<Router> router_create(const RouterConfig& cfg);

}  // namespace moe
